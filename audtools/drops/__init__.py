"""The one door to the drops: list, open for streaming reads, publish whole, remove."""
