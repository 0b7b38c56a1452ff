"""The run store: one SQLite file holding every run and its metrics in long form.

Three tables::

    runs       (id, name, config JSON, status, created, updated, code_version, log,
                owner_pid, owner_host, owner_started, owner_token, heartbeat,
                metrics_digest, units_digest)
    metrics    (run, step, layer, name, value)
    unit_stats (run, step, layer, names, dtype, units, data)

``unit_stats`` holds the per-unit statistics of a layer at a step as one row of arrays, not a
row per unit: ``names`` the statistics (comma-separated, the rows of ``data``), ``units`` the
int32 indices of the units recorded, ``data`` a ``(len(names), len(units))`` array of
``dtype`` (``<f4`` or ``<f8``, the run's precision) in C order: 4 or 8 bytes per unit and
statistic, plus the row's few dozen bytes. :meth:`RunStore.unit_stats` reads them back as
:class:`UnitStats`.

The file is ``runs/scalewise.sqlite`` under the current folder unless the environment variable
``SCALEWISE_STORE`` or the ``path`` argument says otherwise; checkpoints live beside it in
``checkpoints/``. Several processes may write to one store at once: the file is in WAL mode,
each write is one ``BEGIN IMMEDIATE`` transaction (a batch of metrics, not a commit per row),
and a writer waits up to ``timeout`` seconds for another to finish. Metric values are stored as
SQLite REALs, which turn NaN into NULL; they load back as NaN.

Nothing written is lost, doubled or silently corrupt:

- *Opening* (:mod:`models.store_file`) refuses, in one line and before reading or writing
  anything, a folder, a path that cannot be created, a 0-byte file, a damaged header, another
  kind of file, and damage inside the data pages (SQLite's ``quick_check``); a store of the
  older schema is migrated in place. Every SQLite error met later (locked past ``timeout``, a
  full disk or file-size limit, damage) is a :class:`StoreFault` saying so; a transaction that
  fails is rolled back whole, so what was committed before stays.
- *A lease per run* (:mod:`models.lease`): a process training a run first takes its lease
  (:meth:`RunStore.acquire`): owner pid, host, process start time and a token in the run's row,
  and a heartbeat refreshed every few seconds. While another live process holds it, a second
  process training the same run *waits* for it to finish and then *joins*: a completed run is
  returned as stored (nothing is trained or written twice); one left interrupted or failed is
  taken over and resumed. ``wait=False`` refuses at once instead (:class:`RunBusy`). Every
  write about a leased run checks the token in its transaction, so a process whose lease
  lapsed and was taken over writes nothing more (:class:`LeaseLost`). A run whose status says
  ``running`` but whose owner died (its process gone, or its heartbeat stale) is *shown* as
  ``interrupted`` (:meth:`RunStore.runs`, :meth:`RunStore.get`, :meth:`RunStore.status`).
- *Digests*: when a run ends (any status but ``running``) the digests of its metrics and
  per-unit rows are recorded; reading the run checks them, so damage that leaves SQLite's page
  structure intact (a changed value) is reported, not returned.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from scalewise.models.config import TrainConfig
from scalewise.models.lease import Heartbeat, Owner
from scalewise.models.probes import UNIT_STATISTICS, UnitRecord
from scalewise.models.store_file import StoreError, StoreFault, connect, fault
from scalewise.models.store_records import (
    METRIC_COLUMNS,
    LayerUnitStats,
    UnitStats,
    metric_frame,
    metrics_digest,
    record,
    unit_rows,
    unit_stats_from_rows,
    units_digest,
    write_frame,
)

STORE_ENV = "SCALEWISE_STORE"
DEFAULT_STORE = Path("runs") / "scalewise.sqlite"
EXPORT_FORMATS = (".csv", ".parquet")
_OWNER_COLUMNS = "owner_pid, owner_host, owner_started, owner_token, heartbeat"
_NO_OWNER = "owner_pid = NULL, owner_host = NULL, owner_started = NULL, owner_token = NULL"
_NO_DIGESTS = "metrics_digest = NULL, units_digest = NULL"

Metric = tuple[int, str, str, float]  # (step, layer, name, value)

__all__ = ["DEFAULT_STORE", "EXPORT_FORMATS", "METRIC_COLUMNS", "STORE_ENV", "Claim",
           "LayerUnitStats", "LeaseLost", "Run", "RunBusy", "RunStatus", "RunStore",
           "StoreError", "StoreFault", "UnitStats", "code_version", "default_store_path",
           "store_or_reason"]


class RunStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class RunBusy(StoreFault):
    """The run is being trained by another live process (``holder``)."""

    def __init__(self, run_id: str, path: Path, holder: Owner) -> None:
        super().__init__(f"run {run_id} in {path} is being trained by {holder.describe()}; "
                         "wait for it to finish (the run is shown then), or train a copy under "
                         "another run id")
        self.run_id, self.holder = run_id, holder


class LeaseLost(StoreFault):
    """This process was about to write to a run another process holds."""


@dataclass(frozen=True, eq=False)
class Run:
    """A stored run: its config, status, log, and metrics as a long-form DataFrame with columns
    ``step`` (int), ``layer`` and ``name`` (str) and ``value`` (float). ``holder`` describes
    the live process training it (empty when none)."""

    id: str
    name: str
    config: TrainConfig
    status: RunStatus
    created: str
    updated: str
    code_version: str
    log: str
    metrics: pd.DataFrame
    holder: str = ""


@dataclass(frozen=True)
class Claim:
    """What :meth:`RunStore.acquire` found: the run's status before (``None``: no such run),
    whether this process now holds its lease, and the owner that had left it running."""

    found: RunStatus | None
    held: bool
    abandoned_by: Owner | None = None


def default_store_path() -> Path:
    """``$SCALEWISE_STORE`` if set, else ``runs/scalewise.sqlite`` under the current folder."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def store_or_reason(path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0,
                    create: bool = True) -> RunStore | str:
    """The open store at ``path`` (default: :func:`default_store_path`), or the one line that
    says why it cannot be used: for pages that show a message instead of raising."""
    try:
        return RunStore(path, timeout=timeout, create=create)
    except StoreError as error:
        return str(error)


@cache
def code_version() -> str:
    """The installed package version, plus ``+g<commit>`` when the source is a git checkout."""
    version = importlib.metadata.version("scalewise")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" if commit else version


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _owner(row: Sequence[object]) -> Owner | None:
    """The owner in ``row`` (pid, host, started, token, heartbeat), ``None`` when none."""
    pid, host, started, token, heartbeat = row
    if token is None:
        return None
    return Owner(int(pid), str(host), str(started or ""), str(token), float(heartbeat or 0.0))


def _shown(status: str, owner: Owner | None, run_id: str, path: Path) -> RunStatus:
    """The status to show: ``running`` only while a live owner holds the run."""
    try:
        status = RunStatus(status)
    except ValueError:
        raise StoreFault(f"run {run_id} in {path} has a damaged status record: "
                         f"{status!r}") from None
    if status is RunStatus.RUNNING and not (owner is not None and owner.holds()):
        return RunStatus.INTERRUPTED
    return status


class RunStore:
    """A connection to one store file (created on first use unless ``create`` is false). Use
    as a context manager or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0,
                 create: bool = True):
        self.path = (Path(path) if path is not None else default_store_path()).absolute()
        self.timeout = timeout
        self._connection = connect(self.path, timeout=timeout, create=create)
        self._owner = Owner.this_process()
        self._held: dict[str, Heartbeat] = {}

    @property
    def checkpoint_dir(self) -> Path:
        return self.path.parent / "checkpoints"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.checkpoint_dir / f"{run_id}.pt"

    def close(self) -> None:
        for run_id in list(self._held):
            try:
                self.release(run_id)
            except StoreFault:
                pass  # the heartbeat has stopped: the lease lapses by itself
        self._connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, with any SQLite error met while ``doing`` as a :class:`StoreFault`."""
        try:
            yield self._connection
        except sqlite3.Error as error:
            raise fault(error, self.path, doing, self.timeout) from None

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taking the write lock up front so that concurrent writers
        queue on the busy timeout instead of failing on a lock upgrade; rolled back whole on
        any error."""
        with self._reading(doing):
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    try:
                        cursor.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the transaction is gone with the error that ended it
                raise

    def _check_owner(self, cursor: sqlite3.Cursor, run_id: str) -> None:
        """Refuse a write about ``run_id`` unless this store holds its lease, or no live
        process does (and this store never held it)."""
        row = cursor.execute(f"SELECT {_OWNER_COLUMNS} FROM runs WHERE id = ?",
                             (run_id,)).fetchone()
        owner = None if row is None else _owner(row)
        mine = owner is not None and owner.token == self._owner.token
        if run_id in self._held and not mine:
            raise LeaseLost(f"run {run_id} in {self.path} was taken over by "
                            f"{owner.describe() if owner else 'another process'} after this "
                            "process's lease lapsed; this process writes nothing more to it")
        if not mine and owner is not None and owner.holds():
            raise LeaseLost(f"run {run_id} in {self.path} is being trained by "
                            f"{owner.describe()}; nothing was written to it")

    # -------------------------------------------------------------------------- the lease

    def acquire(self, run_id: str, config: TrainConfig, *, resume: bool) -> Claim:
        """Take the lease of ``run_id`` to train ``config`` into it (see the module docstring).

        With ``resume``, a stored run of another config is refused (:class:`StoreError`) and a
        completed one is left as it is (``held`` false). Raises :class:`RunBusy` while another
        live process holds it."""
        with self._write(f"taking run {run_id}") as cursor:
            row = cursor.execute(f"SELECT config, status, {_OWNER_COLUMNS} FROM runs "
                                 "WHERE id = ?", (run_id,)).fetchone()
            found, abandoned = None, None
            if row is not None:
                owner = _owner(row[2:])
                if owner is not None and owner.token != self._owner.token and owner.holds():
                    raise RunBusy(run_id, self.path, owner)
                found = RunStatus(row[1])
                if resume and TrainConfig.from_json(row[0]) != config:
                    raise StoreError(f"run {run_id} in {self.path} holds another config; pass "
                                     "another run_id, or resume=False to overwrite it")
                if resume and found is RunStatus.COMPLETED:
                    return Claim(found, held=False)
                abandoned = owner if found is RunStatus.RUNNING else None
            now = _now()
            cursor.execute(
                "INSERT OR IGNORE INTO runs (id, name, config, status, created, updated,"
                " code_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, config.name, config.to_json(), RunStatus.RUNNING.value, now, now,
                 code_version()))
            self._take(cursor, run_id)
        self._hold(run_id)
        return Claim(found, held=True, abandoned_by=abandoned)

    def _take(self, cursor: sqlite3.Cursor, run_id: str) -> None:
        me = self._owner
        cursor.execute("UPDATE runs SET owner_pid = ?, owner_host = ?, owner_started = ?, "
                       "owner_token = ?, heartbeat = ? WHERE id = ?",
                       (me.pid, me.host, me.started, me.token, time.time(), run_id))

    def _hold(self, run_id: str) -> None:
        if run_id not in self._held:
            self._held[run_id] = Heartbeat(self.path, run_id, self._owner.token)

    def release(self, run_id: str) -> None:
        """Give up the lease of ``run_id`` if this store holds it (the status is left as it
        is: a run left ``running`` is then shown as ``interrupted``)."""
        heartbeat = self._held.pop(run_id, None)
        if heartbeat is None:
            return
        heartbeat.stop()
        with self._write(f"releasing run {run_id}") as cursor:
            cursor.execute(f"UPDATE runs SET {_NO_OWNER} WHERE id = ? AND owner_token = ?",
                           (run_id, self._owner.token))

    # -------------------------------------------------------------------------- writing

    def begin(self, run_id: str, config: TrainConfig, *, fresh: bool, message: str) -> None:
        """Mark ``run_id`` running with ``config``, taking its lease if this store does not
        hold it yet; ``fresh`` forgets any earlier metrics and log of that id. ``message``
        starts (or continues) the run's log."""
        now = _now()
        line = f"{now} {message}\n"
        with self._write(f"starting run {run_id}") as cursor:
            self._check_owner(cursor, run_id)
            cursor.execute(
                "INSERT OR IGNORE INTO runs (id, name, config, status, created, updated,"
                " code_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, config.name, config.to_json(), RunStatus.RUNNING.value, now, now,
                 code_version()))
            if fresh:
                for table in ("metrics", "unit_stats"):
                    cursor.execute(f"DELETE FROM {table} WHERE run = ?", (run_id,))
                cursor.execute(f"UPDATE runs SET name = ?, config = ?, status = ?, created = ?,"
                               f" updated = ?, code_version = ?, log = ?, {_NO_DIGESTS}"
                               " WHERE id = ?",
                               (config.name, config.to_json(), RunStatus.RUNNING.value, now,
                                now, code_version(), line, run_id))
            else:
                cursor.execute(f"UPDATE runs SET status = ?, updated = ?, code_version = ?,"
                               f" log = log || ?, {_NO_DIGESTS} WHERE id = ?",
                               (RunStatus.RUNNING.value, now, code_version(), line, run_id))
            self._take(cursor, run_id)
        self._hold(run_id)

    def set_status(self, run_id: str, status: RunStatus, message: str) -> None:
        """Set the status of ``run_id`` and append ``message`` to its log. Any status but
        ``running`` ends the run: its digests are recorded and its lease given up."""
        status = RunStatus(status)
        with self._write(f"setting the status of run {run_id}") as cursor:
            self._check_owner(cursor, run_id)
            cursor.execute("UPDATE runs SET status = ?, updated = ?, log = log || ? WHERE id = ?",
                           (status.value, _now(), f"{_now()} {message}\n", run_id))
            if status is not RunStatus.RUNNING:
                cursor.execute(f"UPDATE runs SET metrics_digest = ?, units_digest = ?, "
                               f"{_NO_OWNER} WHERE id = ?",
                               (metrics_digest(record(cursor, run_id),
                                               metric_frame(cursor, run_id)),
                                units_digest(unit_rows(cursor, run_id)), run_id))
        if status is not RunStatus.RUNNING and run_id in self._held:
            self._held.pop(run_id).stop()

    def add_metrics(self, run_id: str, rows: Iterable[Metric],
                    units: Iterable[tuple[int, str, UnitRecord]] = ()) -> None:
        """Append ``(step, layer, name, value)`` rows and ``(step, layer, record)`` per-unit
        records in one transaction."""
        with self._write(f"writing metrics of run {run_id}") as cursor:
            self._check_owner(cursor, run_id)
            cursor.executemany(
                "INSERT INTO metrics (run, step, layer, name, value) VALUES (?, ?, ?, ?, ?)",
                ((run_id, int(step), layer, name, float(value))
                 for step, layer, name, value in rows))
            cursor.executemany(
                "INSERT INTO unit_stats (run, step, layer, names, dtype, units, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((run_id, int(step), layer, ",".join(UNIT_STATISTICS), record.values.dtype.str,
                  np.asarray(record.units, dtype="<i4").tobytes(),
                  np.ascontiguousarray(record.values).tobytes())
                 for step, layer, record in units))
            cursor.execute(f"UPDATE runs SET {_NO_DIGESTS} WHERE id = ?", (run_id,))

    def delete_metrics(self, run_id: str, *, from_step: int) -> None:
        """Forget the metrics and per-unit records of ``run_id`` logged at ``step >= from_step``."""
        with self._write(f"deleting metrics of run {run_id}") as cursor:
            self._check_owner(cursor, run_id)
            for table in ("metrics", "unit_stats"):
                cursor.execute(f"DELETE FROM {table} WHERE run = ? AND step >= ?",
                               (run_id, from_step))
            cursor.execute(f"UPDATE runs SET {_NO_DIGESTS} WHERE id = ?", (run_id,))

    # -------------------------------------------------------------------------- reading

    def status(self, run_id: str) -> tuple[TrainConfig, RunStatus] | None:
        """The config and shown status of ``run_id`` (without loading its metrics), or
        ``None``."""
        with self._reading(f"reading run {run_id}") as connection:
            row = connection.execute(f"SELECT config, status, {_OWNER_COLUMNS} FROM runs "
                                     "WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return _config(row[0], run_id, self.path), _shown(row[1], _owner(row[2:]), run_id, self.path)

    def get(self, run_id: str) -> Run | None:
        """The run ``run_id`` with its metrics, or ``None`` if the store has no such run."""
        with self._reading(f"reading run {run_id}") as connection:
            row = connection.execute(
                "SELECT id, name, config, status, created, updated, code_version, log, "
                f"{_OWNER_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        id_, name, config, status, created, updated, version, log = row[:8]
        owner = _owner(row[8:])
        shown = _shown(status, owner, run_id, self.path)
        holder = owner.describe() if owner is not None and shown is RunStatus.RUNNING else ""
        return Run(id_, name, _config(config, run_id, self.path), shown, created, updated,
                   version, log, self.metrics(run_id), holder)

    def __getitem__(self, run_id: str) -> Run:
        """The run ``run_id`` (or the one a unique prefix of its id names) with its metrics."""
        run = self.get(self.resolve(run_id))
        if run is None:
            raise StoreError(f"run {run_id!r} was removed from {self.path} while being read")
        return run

    def resolve(self, prefix: str) -> str:
        """The stored run id equal to ``prefix``, else the one starting with it (ids are hex
        digests; a few leading digits usually suffice)."""
        with self._reading(f"looking up run {prefix!r}") as connection:
            ids = [row[0] for row in connection.execute(
                "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id",
                (len(prefix), prefix))]
        if prefix in ids:
            return prefix
        if len(ids) != 1:
            found = "no run" if not ids else f"{len(ids)} runs ({', '.join(ids)})"
            raise StoreError(f"run id {prefix!r}: {found} in {self.path} start with it")
        return ids[0]

    def metrics(self, run_id: str) -> pd.DataFrame:
        """Long-form metrics of ``run_id`` ordered by step (then as logged), checked against
        the digest recorded when the run ended."""
        with self._reading(f"reading the metrics of run {run_id}") as connection:
            frame = metric_frame(connection, run_id)
            self._check_digest(connection, run_id, "metrics_digest",
                               metrics_digest(record(connection, run_id), frame))
        return frame

    def unit_stats(self, run_id: str) -> UnitStats:
        """The per-unit statistics of ``run_id`` (empty when it recorded none), checked against
        the digest recorded when the run ended."""
        with self._reading(f"reading the per-unit statistics of run {run_id}") as connection:
            rows = unit_rows(connection, run_id)
            self._check_digest(connection, run_id, "units_digest", units_digest(rows))
        return unit_stats_from_rows(rows)

    def _check_digest(self, connection: sqlite3.Connection, run_id: str, column: str,
                      digest: str) -> None:
        row = connection.execute(f"SELECT {column} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is not None and row[0] is not None and row[0] != digest:
            what = {"metrics_digest": "record and metrics",
                    "units_digest": "per-unit statistics"}[column]
            raise StoreFault(f"run {run_id} in {self.path} is damaged: its stored {what} no "
                             "longer match the digest recorded when it ended; retrain it "
                             "(--restart) or restore the store from a copy")

    def runs(self) -> pd.DataFrame:
        """One row per run (newest first): id, name, shown status, created, updated,
        code_version and the last step with metrics."""
        with self._reading("listing its runs") as connection:
            rows = connection.execute(
                "SELECT id, name, status, created, updated, code_version,"
                " (SELECT MAX(step) FROM metrics WHERE metrics.run = runs.id) AS last_step,"
                f" {_OWNER_COLUMNS} FROM runs ORDER BY created DESC, id").fetchall()
        columns = ["id", "name", "status", "created", "updated", "code_version", "last_step"]
        frame = pd.DataFrame([(*row[:2], self._listed(row), *row[3:7]) for row in rows],
                             columns=columns)
        return frame.assign(last_step=pd.to_numeric(frame["last_step"]))

    def _listed(self, row: Sequence[object]) -> str:
        """The shown status of a row of :meth:`runs`; ``damaged`` for a damaged record."""
        try:
            return _shown(str(row[2]), _owner(row[7:]), str(row[0]), self.path).value
        except (StoreFault, ValueError, TypeError):
            return "damaged"

    def export(self, path: str | os.PathLike[str], run_ids: Sequence[str]) -> Path:
        """Write the metrics of ``run_ids`` (long form plus a ``run`` column) to ``path``, as
        CSV or Parquet by its suffix: into a temporary file beside it, renamed over ``path``
        once whole, so a failed export leaves no partial file."""
        path = Path(path)
        if path.suffix not in EXPORT_FORMATS:
            raise ValueError(f"path = {str(path)!r} is invalid; allowed: a file name ending in "
                             f"{' or '.join(EXPORT_FORMATS)}")
        ids = [self.resolve(run_id) for run_id in run_ids]
        frames = [self.metrics(run_id).assign(run=run_id) for run_id in ids]
        columns = ["run", *METRIC_COLUMNS]
        frame = (pd.concat(frames, ignore_index=True) if frames
                 else pd.DataFrame(columns=columns))[columns]
        write_frame(frame, path)
        return path


def _config(text: str, run_id: str, path: Path) -> TrainConfig:
    try:
        return _parsed_config(text)
    except ValueError as error:
        raise StoreFault(f"run {run_id} in {path} has a damaged config record: {error}") from None


@functools.lru_cache(maxsize=256)
def _parsed_config(text: str) -> TrainConfig:
    """A stored config parsed and validated once per text (a frozen value; parsing takes
    milliseconds and the explorer reads the same runs over and over)."""
    return TrainConfig.from_json(text)
