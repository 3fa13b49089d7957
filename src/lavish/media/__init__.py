"""lavish.media."""
