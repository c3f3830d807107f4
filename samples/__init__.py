"""Sample actors built on bayou's public API only."""
