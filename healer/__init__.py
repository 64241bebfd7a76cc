"""healer: a self-healing remediation controller for Celery deployments run by systemd."""

__version__ = "0.1.0"
