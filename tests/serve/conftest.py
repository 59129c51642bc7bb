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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny matmuls run faster on one thread than on two contended ones (test speed only)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
