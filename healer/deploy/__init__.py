"""Deployment helpers: what a host needs besides the package."""
