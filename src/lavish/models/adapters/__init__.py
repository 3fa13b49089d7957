"""lavish.models.adapters."""
