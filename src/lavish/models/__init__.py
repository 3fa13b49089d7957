"""lavish.models."""
