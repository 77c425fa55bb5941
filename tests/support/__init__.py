"""Test and benchmark infrastructure shared by tests/ and bench/ (not product code)."""
