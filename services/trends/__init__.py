"""Sentiment trends: per-minute/per-hour counters in Redis, rolled up into 5 m / 1 h / 24 h views."""
