"""Cheap evaluators for discrete search: zero-cost proxies and rank correlations."""
