"""lavish.tasks."""
