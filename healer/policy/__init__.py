"""Policies: YAML rules that map a finding to a ladder of remediation steps."""
