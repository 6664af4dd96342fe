"""Ingest: decode and validate raw input, normalise, link entities, tag topics, drop syndicated copies."""
