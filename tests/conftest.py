"""Fixtures shared by every test file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

# Every Ray process a test starts stays on loopback: Ray on Linux swaps 127.0.0.1 for the
# machine's interface address unless this is "0" when it is imported (the runner sets it too).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


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


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """One in-process Ray of 2 CPUs for the test session (of each xdist worker), started by the
    trial runner's own code; the runners of the tests use it as it is."""
    pytest.importorskip("ray")
    from scalewise.sweep import Workers

    with Workers(num_cpus=2) as workers:
        yield workers.ray()


@pytest.fixture
def suite_ray(request: pytest.FixtureRequest) -> None:
    """The suites' runs train on the session's in-process Ray (:func:`ray_local`) where Ray is
    installed, rather than each call starting one; without Ray they train one after another."""
    from scalewise.sweep import ray_installed

    if ray_installed():
        request.getfixturevalue("ray_local")
