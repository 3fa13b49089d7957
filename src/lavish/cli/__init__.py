"""lavish.cli."""
