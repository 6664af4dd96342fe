"""Classify stage: the agent (agent.py) and the inference worker it calls (docs/inference.md)."""
