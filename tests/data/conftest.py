"""Shared fixtures for lavish.data tests: the real reference annotation files in tests/fixtures/."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """tests/fixtures: ``ave/``, ``music-avqa/`` and ``llp/`` hold real annotation files (each folder's README: source)."""
    return FIXTURES
