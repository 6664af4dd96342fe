"""Sentiment trends: minute/hour counters in Redis, rolled up into 5 m / 1 h / 24 h views."""
