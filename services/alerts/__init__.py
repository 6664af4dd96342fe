"""Negative-volume spike detection: pure rules, the Redis-backed detector and its agent."""
