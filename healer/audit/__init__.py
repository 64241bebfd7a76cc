"""The audit log: what healer saw, decided and did, one JSON record per line."""
