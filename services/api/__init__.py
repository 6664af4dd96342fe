"""The HTTP API (``yuqing api``): subscriptions, trends, alerts, documents, feedback, health."""
