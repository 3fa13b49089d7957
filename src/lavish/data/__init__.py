"""lavish.data."""
