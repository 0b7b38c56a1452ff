"""A run's records as the run store reads them: the long-form metric frame, the per-unit
statistics (:class:`UnitStats`), the digests that tell whether either changed since the run
ended (see :mod:`models.store`), and the export of a frame to a file."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scalewise import checks
from scalewise.models.probes import UNIT_STATISTICS, UnitRecord
from scalewise.models.store_file import StoreFault

METRIC_COLUMNS = ("step", "layer", "name", "value")
RECORD_COLUMNS = "id, name, config, status, created, updated, code_version, log"
UnitRow = tuple[int, str, str, str, bytes, bytes]  # (step, layer, names, dtype, units, data)


def metric_frame(connection: sqlite3.Connection | sqlite3.Cursor, run_id: str) -> pd.DataFrame:
    rows = connection.execute("SELECT step, layer, name, value FROM metrics WHERE run = ? "
                              "ORDER BY step, rowid", (run_id,)).fetchall()
    # a column at a time: zip(*rows) would be several times slower on long runs
    step, layer, name, value = ([row[i] for row in rows] for i in range(4))
    return pd.DataFrame({"step": np.array(step, np.int64), "layer": pd.array(layer, dtype=str),
                         "name": pd.array(name, dtype=str), "value": np.array(value, np.float64)})


def unit_rows(connection: sqlite3.Connection | sqlite3.Cursor, run_id: str) -> list[UnitRow]:
    return connection.execute(
        "SELECT step, layer, names, dtype, units, data FROM unit_stats WHERE run = ? "
        "ORDER BY layer, step", (run_id,)).fetchall()


def record(connection: sqlite3.Connection | sqlite3.Cursor, run_id: str) -> tuple | None:
    """The run's record as its digest covers it (the lease and the digests left out)."""
    return connection.execute(f"SELECT {RECORD_COLUMNS} FROM runs WHERE id = ?",
                              (run_id,)).fetchone()


def metrics_digest(record: tuple | None, frame: pd.DataFrame) -> str:
    """The row count and a BLAKE2 hash of the run's record and its metrics in the order they
    are read (step, then as logged)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\x1e".join(map(str, record or ())).encode())
    digest.update(frame["step"].to_numpy(np.int64).tobytes())
    digest.update(frame["value"].to_numpy(np.float64).tobytes())
    for column in ("layer", "name"):
        digest.update("\x1f".join(frame[column].tolist()).encode())
    return f"{len(frame)}:{digest.hexdigest()}"


def units_digest(rows: list[UnitRow]) -> str:
    """The record count and a BLAKE2 hash of every field of the per-unit records."""
    digest = hashlib.blake2b(digest_size=16)
    for step, layer, names, dtype, units, data in rows:
        digest.update(f"{step}\x1f{layer}\x1f{names}\x1f{dtype}\x1f".encode())
        digest.update(len(units).to_bytes(8, "little") + units)
        digest.update(len(data).to_bytes(8, "little") + data)
    return f"{len(rows)}:{digest.hexdigest()}"


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV or Parquet by the suffix of ``path``: into a temporary file beside
    it, renamed over ``path`` once whole, so a failed write leaves no partial file; ``OSError``
    saying which file could not be written."""
    if path.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ModuleNotFoundError("exporting Parquet needs pyarrow (`pip install pyarrow`); "
                                  "export to a .csv file instead")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # a folder that cannot be used holds no file
            temporary.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None


def unit_stats_from_rows(rows: list[UnitRow]) -> UnitStats:
    """:class:`UnitStats` of a run's rows of the table ``unit_stats``, ordered by layer and
    step."""
    layers: dict[str, list[UnitRow]] = {}
    for row in rows:
        layers.setdefault(row[1], []).append(row)
    return UnitStats({layer: _layer_stats(layer, entries) for layer, entries in layers.items()})


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


def _layer_stats(layer: str, rows: list[UnitRow]) -> LayerUnitStats:
    """Stack one layer's records, which must share their statistics, dtype and units: their
    data blobs joined and read at once, ``(records, names, units)``."""
    _, _, names, dtype, units, data = rows[0]
    if any((n, d, u, len(x)) != (names, dtype, units, len(data)) for _, _, n, d, u, x in rows):
        raise StoreFault(f"the per-unit records of layer {layer!r} change their statistics, "
                         "dtype or units between steps")
    names = names.split(",")
    values = np.frombuffer(b"".join(row[5] for row in rows), np.dtype(dtype)).reshape(
        len(rows), len(names), -1)
    stacked = np.ascontiguousarray(values.transpose(1, 0, 2))  # (names, records, units)
    return LayerUnitStats(np.array([row[0] for row in rows]), np.frombuffer(units, "<i4").copy(),
                          dict(zip(names, stacked)))
