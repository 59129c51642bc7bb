"""Fixtures of the serve tests (helpers live in serve_helpers.py, imported by name from the test modules)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import Served, scripted_server


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """A scripted-model server shared by the tests of one module."""
    with scripted_server() as server:
        yield server
