"""The run store: one SQLite file holding every run and its metrics in long form.

Three tables::

    runs       (id, name, config JSON, status, created, updated, code_version, log)
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
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from scalewise import checks
from scalewise.models.config import TrainConfig
from scalewise.models.probes import UNIT_STATISTICS, UnitRecord

STORE_ENV = "SCALEWISE_STORE"
DEFAULT_STORE = Path("runs") / "scalewise.sqlite"
METRIC_COLUMNS = ("step", "layer", "name", "value")
EXPORT_FORMATS = (".csv", ".parquet")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    code_version TEXT NOT NULL,
    log TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS metrics (
    run TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    layer TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run_step ON metrics (run, step);
CREATE TABLE IF NOT EXISTS unit_stats (
    run TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    layer TEXT NOT NULL,
    names TEXT NOT NULL,
    dtype TEXT NOT NULL,
    units BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS unit_stats_run_step ON unit_stats (run, step);
"""

Metric = tuple[int, str, str, float]  # (step, layer, name, value)


class RunStatus(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class StoreError(ValueError):
    """The store file is corrupt, not a run store, or lacks the run asked for."""


@dataclass(frozen=True, eq=False)
class Run:
    """A stored run: its config, status, log, and metrics as a long-form DataFrame with columns
    ``step`` (int), ``layer`` and ``name`` (str) and ``value`` (float)."""

    id: str
    name: str
    config: TrainConfig
    status: RunStatus
    created: str
    updated: str
    code_version: str
    log: str
    metrics: pd.DataFrame


def default_store_path() -> Path:
    """``$SCALEWISE_STORE`` if set, else ``runs/scalewise.sqlite`` under the current folder."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


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


class RunStore:
    """A connection to one store file (created on first use). Use as a context manager or
    call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 60.0):
        self.path = (Path(path) if path is not None else default_store_path()).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._connection.execute("PRAGMA journal_mode=WAL")
            with self._write() as cursor:
                for statement in _SCHEMA.split(";"):
                    cursor.execute(statement)
            self._connection.execute("SELECT id, name, config, status, created, updated, "
                                     "code_version, log FROM runs LIMIT 0")
            self._connection.execute("SELECT run, step, layer, name, value FROM metrics LIMIT 0")
        except sqlite3.DatabaseError as error:
            self._connection.close()
            if "locked" in str(error):
                raise StoreError(f"{self.path} stayed locked by another process for longer "
                                 f"than timeout = {timeout} s") from error
            raise StoreError(f"{self.path} is not a readable scalewise run store (corrupt, or "
                             f"another kind of file): {error}") from error

    @property
    def checkpoint_dir(self) -> Path:
        return self.path.parent / "checkpoints"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.checkpoint_dir / f"{run_id}.pt"

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taking the write lock up front so that concurrent writers
        queue on the busy timeout instead of failing on a lock upgrade."""
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    # -------------------------------------------------------------------------- writing

    def begin(self, run_id: str, config: TrainConfig, *, fresh: bool, message: str) -> None:
        """Mark ``run_id`` running with ``config``; ``fresh`` forgets any earlier metrics and
        log of that id. ``message`` starts (or continues) the run's log."""
        now = _now()
        line = f"{now} {message}\n"
        with self._write() as cursor:
            if fresh:
                for table in ("metrics", "unit_stats"):
                    cursor.execute(f"DELETE FROM {table} WHERE run = ?", (run_id,))
                cursor.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            cursor.execute(
                "INSERT INTO runs (id, name, config, status, created, updated, code_version, log)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " status = excluded.status, updated = excluded.updated,"
                " code_version = excluded.code_version, log = runs.log || excluded.log",
                (run_id, config.name, config.to_json(), RunStatus.RUNNING.value, now, now,
                 code_version(), line))

    def set_status(self, run_id: str, status: RunStatus, message: str) -> None:
        """Set the status of ``run_id`` and append ``message`` to its log."""
        with self._write() as cursor:
            cursor.execute("UPDATE runs SET status = ?, updated = ?, log = log || ? WHERE id = ?",
                           (RunStatus(status).value, _now(), f"{_now()} {message}\n", run_id))

    def add_metrics(self, run_id: str, rows: Iterable[Metric],
                    units: Iterable[tuple[int, str, UnitRecord]] = ()) -> None:
        """Append ``(step, layer, name, value)`` rows and ``(step, layer, record)`` per-unit
        records in one transaction."""
        with self._write() as cursor:
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

    def delete_metrics(self, run_id: str, *, from_step: int) -> None:
        """Forget the metrics and per-unit records of ``run_id`` logged at ``step >= from_step``."""
        with self._write() as cursor:
            for table in ("metrics", "unit_stats"):
                cursor.execute(f"DELETE FROM {table} WHERE run = ? AND step >= ?",
                               (run_id, from_step))

    # -------------------------------------------------------------------------- reading

    def status(self, run_id: str) -> tuple[TrainConfig, RunStatus] | None:
        """The config and status of ``run_id`` (without loading its metrics), or ``None``."""
        row = self._connection.execute("SELECT config, status FROM runs WHERE id = ?",
                                       (run_id,)).fetchone()
        return None if row is None else (TrainConfig.from_json(row[0]), RunStatus(row[1]))

    def get(self, run_id: str) -> Run | None:
        """The run ``run_id`` with its metrics, or ``None`` if the store has no such run."""
        row = self._connection.execute(
            "SELECT id, name, config, status, created, updated, code_version, log FROM runs"
            " WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        id_, name, config, status, created, updated, version, log = row
        return Run(id_, name, TrainConfig.from_json(config), RunStatus(status), created, updated,
                   version, log, self.metrics(run_id))

    def __getitem__(self, run_id: str) -> Run:
        """The run ``run_id`` (or the one a unique prefix of its id names) with its metrics."""
        run = self.get(self.resolve(run_id))
        if run is None:
            raise StoreError(f"run {run_id!r} was removed from {self.path} while being read")
        return run

    def resolve(self, prefix: str) -> str:
        """The stored run id equal to ``prefix``, else the one starting with it (ids are hex
        digests; a few leading digits usually suffice)."""
        ids = [row[0] for row in self._connection.execute(
            "SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id", (len(prefix), prefix))]
        if prefix in ids:
            return prefix
        if len(ids) != 1:
            found = "no run" if not ids else f"{len(ids)} runs ({', '.join(ids)})"
            raise StoreError(f"run id {prefix!r}: {found} in {self.path} start with it")
        return ids[0]

    def metrics(self, run_id: str) -> pd.DataFrame:
        """Long-form metrics of ``run_id`` ordered by step (then as logged)."""
        frame = pd.read_sql_query(
            "SELECT step, layer, name, value FROM metrics WHERE run = ? ORDER BY step, rowid",
            self._connection, params=(run_id,))
        return frame.astype({"step": "int64", "layer": str, "name": str, "value": "float64"})

    def unit_stats(self, run_id: str) -> UnitStats:
        """The per-unit statistics of ``run_id`` (empty when it recorded none)."""
        rows = self._connection.execute(
            "SELECT step, layer, names, dtype, units, data FROM unit_stats WHERE run = ? "
            "ORDER BY layer, step", (run_id,)).fetchall()
        layers: dict[str, list] = {}
        for step, layer, names, dtype, units, data in rows:
            names = tuple(names.split(","))
            values = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(len(names), -1)
            layers.setdefault(layer, []).append((step, names, np.frombuffer(units, "<i4"), values))
        return UnitStats({layer: _layer_stats(layer, entries) for layer, entries in layers.items()})

    def runs(self) -> pd.DataFrame:
        """One row per run (newest first): id, name, status, created, updated, code_version and
        the last step with metrics."""
        return pd.read_sql_query(
            "SELECT id, name, status, created, updated, code_version,"
            " (SELECT MAX(step) FROM metrics WHERE metrics.run = runs.id) AS last_step"
            " FROM runs ORDER BY created DESC, id", self._connection)

    def export(self, path: str | os.PathLike[str], run_ids: Sequence[str]) -> Path:
        """Write the metrics of ``run_ids`` (long form plus a ``run`` column) to ``path``, as
        CSV or Parquet by its suffix."""
        path = Path(path)
        if path.suffix not in EXPORT_FORMATS:
            raise ValueError(f"path = {str(path)!r} is invalid; allowed: a file name ending in "
                             f"{' or '.join(EXPORT_FORMATS)}")
        ids = [self.resolve(run_id) for run_id in run_ids]
        frames = [self.metrics(run_id).assign(run=run_id) for run_id in ids]
        columns = ["run", *METRIC_COLUMNS]
        frame = (pd.concat(frames, ignore_index=True) if frames
                 else pd.DataFrame(columns=columns))[columns]
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            _require_pyarrow()
            frame.to_parquet(path, index=False)
        return path


@dataclass(frozen=True)
class LayerUnitStats:
    """One layer's per-unit records: ``steps`` (records,), ``units`` (units,) the unit indices,
    and ``values[name]`` of shape ``(records, units)`` per statistic."""

    steps: np.ndarray
    units: np.ndarray
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class UnitStats:
    """Per-unit statistics of a run, by layer (:data:`~scalewise.models.probes.UNIT_STATISTICS`,
    recorded every ``unit_probe_every`` steps).

    >>> stats = UnitStats({})
    >>> stats.frame().columns.tolist()
    ['step', 'layer', 'unit', 'name', 'value']
    """

    layers: dict[str, LayerUnitStats]

    def array(self, layer: str, name: str) -> np.ndarray:
        """``(records, units)`` values of statistic ``name`` of ``layer``."""
        checks.one_of("layer", layer, self.layers)
        return self.layers[layer].values[checks.one_of("name", name,
                                                        self.layers[layer].values)]

    def frame(self) -> pd.DataFrame:
        """Long form: one row per step, layer, unit and statistic."""
        frames = [pd.DataFrame({
            "step": np.repeat(stats.steps, len(stats.units)),
            "layer": layer,
            "unit": np.tile(stats.units, len(stats.steps)),
            "name": name,
            "value": values.ravel().astype(np.float64)})
            for layer, stats in self.layers.items() for name, values in stats.values.items()]
        columns = ["step", "layer", "unit", "name", "value"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def records(self) -> list[tuple[int, str, UnitRecord]]:
        """The ``(step, layer, record)`` triples that :meth:`RunStore.add_metrics` writes, so
        that these statistics can be written into another store."""
        return [(int(step), layer, UnitRecord(stats.units, np.stack(
                    [stats.values[name][i] for name in UNIT_STATISTICS])))
                for layer, stats in self.layers.items() for i, step in enumerate(stats.steps)]


def _layer_stats(layer: str, entries: list) -> LayerUnitStats:
    """Stack one layer's records, which must share their statistics and units."""
    steps, names, units, first = entries[0]
    if any(n != names or not np.array_equal(u, units) for _, n, u, _ in entries):
        raise StoreError(f"the per-unit records of layer {layer!r} change their statistics or "
                         "units between steps")
    stacked = np.stack([values for *_, values in entries], axis=1)  # (names, records, units)
    return LayerUnitStats(np.array([e[0] for e in entries]), units.copy(),
                          dict(zip(names, stacked)))


def _require_pyarrow() -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise ModuleNotFoundError("exporting Parquet needs pyarrow (`pip install pyarrow`); "
                                  "export to a .csv file instead")
