"""Escalation: telling a human, through a webhook."""
