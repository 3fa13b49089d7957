"""A toy task for lavish, defined entirely outside the lavish package (docs/tasks.md)."""
