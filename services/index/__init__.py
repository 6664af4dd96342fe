"""Elasticsearch indexing: templates, daily indices behind an alias, bulk sink, retention."""
