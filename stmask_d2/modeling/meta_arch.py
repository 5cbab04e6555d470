"""Placeholder module: being written; see docs/ARCHITECTURE.md for its contract."""
