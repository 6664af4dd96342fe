"""Ingest: validate raw input, normalise, link entities, tag topics, drop syndicated copies."""
