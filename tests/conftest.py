"""Fixtures shared by every test file."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for torch in every test that has imported it: tiny models gain
    nothing from more, whose synchronization dominates on a busy machine. The caller's setting
    is restored after each test; tests that never import torch do not load it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
