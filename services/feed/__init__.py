"""The project's own synthetic feed (news and comments for a dozen companies) and JSONL replay."""
