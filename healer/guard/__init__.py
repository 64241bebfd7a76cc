"""The guard: whether a planned step may run now (allowlist, rate limits)."""
