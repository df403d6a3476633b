"""Fixtures of the hpo tests."""

import pytest


@pytest.fixture
def storage(tmp_path) -> str:
    """A fresh SQLite study storage of the test's own."""
    return f"sqlite:///{tmp_path / 'optuna.db'}"
