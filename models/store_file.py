"""The run store's file: opening it, refusing one that is not sound, migrating older schemas,
and every SQLite error as one line.

:func:`connect` answers every way a path can fail before anything is read or written:

- a folder, or a path whose folder cannot be created or written: :class:`StoreFault`;
- a new path: the store is built in a temporary file beside it and linked into place whole, so
  no process ever sees a half-made store, and a 0-byte file is never a store this module made;
- an existing 0-byte file: refused (a truncated store, or not one), never taken for a new one;
- a damaged header, another kind of file, another SQLite database: refused;
- damage inside the data pages: SQLite's ``quick_check`` (every page's structure, about 0.3 s
  per 50 MB, run once per state of the file in a process) must pass before the store is used;
- a store of an older schema (``PRAGMA user_version`` below :data:`SCHEMA_VERSION`) gains the
  missing tables and columns in place, in one transaction; a newer one is refused.

:func:`fault` turns an ``sqlite3.Error`` raised while using the store (locked past the
timeout, disk full or a file-size limit, damage found while reading, a read-only file) into
the :class:`StoreFault` that says so in one line.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2  # 0: the tables before leases and digests (migrated in place); 2: these

TABLES = """
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

# columns of schema 2 that older stores lack: the lease and the digests of a finished run
ADDED_COLUMNS = (("runs", "owner_pid", "INTEGER"), ("runs", "owner_host", "TEXT"),
                 ("runs", "owner_started", "TEXT"), ("runs", "owner_token", "TEXT"),
                 ("runs", "heartbeat", "REAL"), ("runs", "metrics_digest", "TEXT"),
                 ("runs", "units_digest", "TEXT"))
BASE_COLUMNS = {"runs": {"id", "name", "config", "status", "created", "updated",
                         "code_version", "log"},
                "metrics": {"run", "step", "layer", "name", "value"},
                "unit_stats": {"run", "step", "layer", "names", "dtype", "units", "data"}}
SALVAGE = "restore it from a copy, or salvage what is readable with `sqlite3 {path} .recover`"

_checked: set[tuple[object, ...]] = set()  # file states that passed quick_check in this process


class StoreError(ValueError):
    """A request the store cannot serve: no such run, another config under a run's id."""


class StoreFault(StoreError):
    """The store file cannot be used as it is: it cannot be opened, created or written, it is
    damaged or not a run store, it stayed locked, or a run is held by another process."""


def connect(path: Path, *, timeout: float, create: bool) -> sqlite3.Connection:
    """An open, checked connection in autocommit mode to the store at ``path`` (built there
    when absent and ``create``), migrated to :data:`SCHEMA_VERSION`."""
    if path.is_dir():
        raise StoreFault(f"the run store {path} is a folder; allowed: a store file in it, such as "
                         f"{path / 'scalewise.sqlite'}")
    if not path.exists():
        if not create:
            raise StoreError(f"no run store at {path}")
        _create(path, timeout)
    elif path.stat().st_size == 0:
        raise StoreFault(f"the run store {path} is an empty (0-byte) file, which no store ever "
                         "is: a truncated store or not one; move it away (a new store is made "
                         "where no file is)")
    _check_access(path)
    connection = _open(path, timeout)
    try:
        _verify(connection, path)
        _migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def fault(error: sqlite3.Error, path: Path, doing: str, timeout: float) -> StoreFault:
    """The :class:`StoreFault` saying in one line what ``error`` (raised while ``doing``) means."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreFault(f"the run store {path} stayed locked by another process for longer "
                          f"than timeout = {timeout:g} s while {doing}")
    if "full" in lowered or "disk i/o" in lowered:
        return StoreFault(f"the run store {path} could not be written while {doing}: {text} "
                          "(a full disk or a file-size limit); what was committed before is "
                          "kept")
    if "readonly" in lowered or "read-only" in lowered:
        return StoreFault(f"the run store {path} cannot be written while {doing}: {text} "
                          "(file permissions or a read-only mount)")
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return StoreFault(f"the run store {path} is damaged ({text}, found while {doing}); "
                          + SALVAGE.format(path=path))
    if "unable to open" in lowered:
        return StoreFault(f"the run store {path} cannot be opened while {doing}: {text}")
    return StoreFault(f"the run store {path} failed while {doing}: {text}")


def _create(path: Path, timeout: float) -> None:
    """Build an empty store of the current schema beside ``path`` and link it into place; a
    store another process linked there first is kept."""
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise StoreFault(f"the run store {path} cannot be created: {blocking} is a file, not a "
                         "folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
        open(temporary, "wb").close()  # the file system's reason, if it refuses
    except OSError as error:
        raise StoreFault(f"the run store {path} cannot be created: {_reason(error)}") from None
    try:
        connection = sqlite3.connect(temporary, timeout=timeout, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            _migrate(connection, path)
        finally:
            connection.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(temporary, path)
    except (OSError, sqlite3.Error) as error:
        reason = _reason(error) if isinstance(error, OSError) else str(error)
        raise StoreFault(f"the run store {path} cannot be created: {reason}") from None
    finally:
        for leftover in (temporary, *(temporary.with_name(temporary.name + suffix)
                                      for suffix in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def _check_access(path: Path) -> None:
    """Refuse a store this process cannot open for reading and writing, saying why."""
    try:
        with open(path, "r+b"):
            pass
    except OSError as error:
        raise StoreFault(f"the run store {path} cannot be opened: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    return f"{error.strerror or error} ({error.filename})" if error.filename else str(error)


def _open(path: Path, timeout: float) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    except sqlite3.Error as error:
        raise fault(error, path, "opening it", timeout) from None
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as error:
        connection.close()
        raise _not_a_store(error, path, timeout) from None
    return connection


def _not_a_store(error: sqlite3.Error, path: Path, timeout: float) -> StoreFault:
    if isinstance(error, sqlite3.OperationalError):  # locked, full, read-only: not damage
        return fault(error, path, "opening it", timeout)
    return StoreFault(f"the run store {path} is not a readable scalewise run store (corrupt, or "
                      f"another kind of file): {error}")


def _state(path: Path) -> tuple[object, ...]:
    """What changes whenever the file does: the store's stat and, when it holds anything, its
    write-ahead log's. An empty log holds no page, and SQLite makes a new one at every first
    open and removes it at the last close: its stat would change at every read."""
    wal = path.with_name(path.name + "-wal")
    stats = [path.stat(), wal.stat() if wal.exists() else None]
    if stats[1] is not None and stats[1].st_size == 0:
        stats[1] = None
    return (str(path), *((s.st_ino, s.st_size, s.st_mtime_ns) if s else None for s in stats))


def _verify(connection: sqlite3.Connection, path: Path) -> None:
    """SQLite's ``quick_check`` of every page, unless this state of the file passed it."""
    state = _state(path)
    if state in _checked:
        return
    try:
        problems = [row[0] for row in connection.execute("PRAGMA quick_check(1)")]
    except sqlite3.Error as error:
        raise fault(error, path, "checking its pages", connection_timeout(connection)) from None
    if problems != ["ok"]:
        first = " ".join(problems[0].replace("*** in database main ***", "").split())[:160]
        raise StoreFault(f"the run store {path} is damaged inside its data pages (SQLite's "
                         f"quick_check: {first}); nothing was read or written; "
                         + SALVAGE.format(path=path))
    _checked.add(state)


def connection_timeout(connection: sqlite3.Connection) -> float:
    return connection.execute("PRAGMA busy_timeout").fetchone()[0] / 1000


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction (nothing to do, and
    nothing written, when it is there already)."""
    timeout = connection_timeout(connection)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            _check_columns(connection, path, all_columns=True)
            return
        if version > SCHEMA_VERSION:
            raise StoreFault(f"the run store {path} has schema {version}, written by a newer "
                             f"scalewise than this one (schema {SCHEMA_VERSION}); upgrade "
                             "scalewise to use it")
        connection.execute("BEGIN IMMEDIATE")
        try:
            _check_columns(connection, path, all_columns=False)
            for statement in TABLES.split(";"):
                connection.execute(statement)
            present = _columns(connection)
            for table, column, kind in ADDED_COLUMNS:
                if column not in present[table]:
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        raise fault(error, path, f"bringing its schema to version {SCHEMA_VERSION}",
                    timeout) from None


def _columns(connection: sqlite3.Connection) -> dict[str, set[str]]:
    return {table: {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            for table in BASE_COLUMNS}


def _check_columns(connection: sqlite3.Connection, path: Path, *, all_columns: bool) -> None:
    """Refuse a database whose tables of our names lack our columns (another program's file),
    before anything is added to them."""
    present = _columns(connection)
    for table, columns in BASE_COLUMNS.items():
        needed = columns | ({c for t, c, _ in ADDED_COLUMNS if t == table} if all_columns
                            else set())
        if present[table] and not needed <= present[table]:
            missing = ", ".join(sorted(needed - present[table]))
            raise StoreFault(f"the run store {path} is not a readable scalewise run store: its "
                             f"table {table} lacks the columns {missing}")
        if all_columns and not present[table]:
            raise StoreFault(f"the run store {path} is not a readable scalewise run store: it "
                             f"has no table {table}")
