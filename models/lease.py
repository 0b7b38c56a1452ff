"""Who trains a run: the lease a process holds on it in the run store.

A process training a run records itself in the run's row (``owner_pid``, ``owner_host``,
``owner_started``: the process's start time where the system tells it, ``owner_token``: a random
token of this lease) and keeps ``heartbeat`` (Unix time) fresh from a background thread every
:data:`HEARTBEAT_SECONDS`. The lease is *held* while

- the heartbeat is younger than :data:`LEASE_SECONDS`, and
- on the same host, the owner process still exists (the same pid and start time): a killed
  owner frees its run at once, not after the heartbeat lapses.

A run whose status says ``running`` but whose lease is not held lost its owner without a word
(``kill -9``, a power cut, a stopped heartbeat): it is shown as ``interrupted``, and the next
process to train it takes it over and resumes from its checkpoint.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = 5.0


@dataclass(frozen=True)
class Owner:
    """A process that holds (or held) a run's lease; ``heartbeat`` is Unix time."""

    pid: int
    host: str
    started: str
    token: str
    heartbeat: float = 0.0

    @classmethod
    def this_process(cls) -> Owner:
        """This process, with a fresh token."""
        return cls(os.getpid(), socket.gethostname(), process_started(os.getpid()),
                   uuid.uuid4().hex, time.time())

    def holds(self, now: float | None = None) -> bool:
        """Whether the lease is held (see the module docstring)."""
        now = time.time() if now is None else now
        if now - self.heartbeat > LEASE_SECONDS:
            return False
        if self.host != socket.gethostname():
            return True
        return process_started(self.pid) == self.started and _exists(self.pid)

    def describe(self, now: float | None = None) -> str:
        """``process 1234 on host, heartbeat 3 s ago``."""
        age = (time.time() if now is None else now) - self.heartbeat
        return f"process {self.pid} on {self.host}, heartbeat {age:.0f} s ago"


def process_started(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux), which tells a pid
    reused by another process from the owner; empty where the system does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), after "pid (comm)"


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Heartbeat:
    """A daemon thread that refreshes the heartbeat of ``run_id`` held with ``token`` every
    :data:`HEARTBEAT_SECONDS` through its own connection, until :meth:`stop`. A beat that
    cannot be written (a lock, a full disk) is skipped; the owner's own writes report faults."""

    def __init__(self, path: Path, run_id: str, token: str) -> None:
        self._uri = path.absolute().as_uri() + "?mode=rw"  # never creates a file
        self._run_id, self._token = run_id, token
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                connection = sqlite3.connect(self._uri, uri=True, timeout=HEARTBEAT_SECONDS,
                                             isolation_level=None)
                try:
                    connection.execute("UPDATE runs SET heartbeat = ? WHERE id = ? AND "
                                       "owner_token = ?", (time.time(), self._run_id,
                                                           self._token))
                finally:
                    connection.close()
            except sqlite3.Error:
                continue

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
