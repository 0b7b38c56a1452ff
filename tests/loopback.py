"""Helpers of the tests that start servers on loopback (127.0.0.1): a free port, waiting for a
condition, and the Streamlit explorer's health check."""

from __future__ import annotations

import socket
import time
import urllib.request

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port free on loopback now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_until(ready, timeout: float, what: str):
    """``ready()``'s first truthy value, polled every 50 ms; AssertionError naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def healthy(url: str) -> bool:
    """Whether the Streamlit server at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
