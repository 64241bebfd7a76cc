"""Benchmarks: each prints healer's figures beside a baseline measured in the same run."""
