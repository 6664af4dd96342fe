"""Elasticsearch indexing: composable templates, daily indices behind an alias, bulk sink, retention."""
