"""What every validation suite shares: its :class:`Settings`, the run store its runs are trained
into, and :func:`train_runs`, which trains them through the trial runner of the sweeps
(:class:`scalewise.sweep.Workers`): on an in-process Ray by default (one run per core at once),
on a Ray cluster with ``address``, or one after another in this process with ``workers=1``.

A suite is a package whose ``build(settings) -> Report`` runs its experiments, one module each
(registered in :data:`validation.SUITES`). ``size`` (:class:`validation.Size`) picks its
scale: every experiment declares what it trains at each size as
``SCALES = {Size.SMOKE: Scale(...), Size.REFERENCE: Scale(...)}`` and reads its entry with
:meth:`Settings.scale`. Runs are stored under their config hash, so a suite interrupted and
started again reuses the finished runs and trains the others from step 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from scalewise import checks, models
from scalewise.models.store import Run, RunStatus, RunStore
from scalewise.sweep import Trial, TrialResult, Workers, ray_installed
from scalewise.validation import Size

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
T = TypeVar("T")


@dataclass(frozen=True)
class StepsAndSeeds:
    """The size of an experiment set by its runs' length alone: ``steps`` per run and
    ``seeds`` per setting (an experiment's ``SCALES`` maps each :class:`Size` to one)."""

    steps: int
    seeds: int


@dataclass(frozen=True)
class Settings:
    """How a suite runs: ``size``, the torch ``device`` of its runs (auto, cpu, cuda...), the
    ``store`` file its runs go to, an optional ``data_root`` holding CIFAR-10 (adds the GPU-scale
    experiments where a suite has them; on a cluster, a folder every node holds at that path),
    ``seed`` and ``progress`` bars. Where the runs train: the Ray cluster at ``address``
    (``HOST:PORT`` of its head node), else ``workers`` at once on an in-process Ray (default: one
    per core), or one after another in this process, without Ray, with ``workers=1`` (also the
    default when Ray is not installed). On Ray, ``device="cuda"`` gives each run one GPU of
    Ray's choosing."""

    size: Size = Size.REFERENCE
    device: str = "cpu"
    store: str | None = None
    data_root: str | None = None
    seed: int = 0
    progress: bool = True
    address: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "size", Size(self.size))
        except ValueError:
            raise ValueError(f"size = {self.size!r}; allowed: "
                             f"{', '.join(s.value for s in Size)}") from None
        if isinstance(self.store, os.PathLike):
            object.__setattr__(self, "store", os.fspath(self.store))
        if isinstance(self.data_root, os.PathLike):
            object.__setattr__(self, "data_root", os.fspath(self.data_root))
        checks.integer("workers", self.workers, minimum=1, optional=True)
        Workers(**self._where())  # the address and workers, checked now
        if not self.sequential and self.device.startswith("cuda:"):
            checks.fail("device", self.device, "cpu, cuda or auto when Ray places the runs (it "
                        f"gives each its GPU); {self.device} with workers=1")

    @property
    def sequential(self) -> bool:
        """Whether the runs train one after another in this process, without Ray."""
        return self.workers == 1 or (self.address is None and not ray_installed())

    def _where(self) -> dict[str, object]:
        if self.sequential:
            return {"sequential": True}
        return {"address": self.address, "num_cpus": self.workers}

    @property
    def smoke(self) -> bool:
        return self.size is Size.SMOKE

    def scale(self, scales: Mapping[Size, T]) -> T:
        """The entry of ``scales`` (an experiment's ``SCALES``) for this size."""
        if self.size not in scales:
            raise ValueError(f"size = {self.size.value!r} has no scale; allowed: "
                             + ", ".join(s.value for s in scales))
        return scales[self.size]

    def describe(self) -> dict[str, object]:
        """What a report records of how it was made (no paths of this machine): its settings,
        the code version and the commit of the source tree, and whether that tree had
        uncommitted changes."""
        commit, dirty = source_tree()
        return {"size": self.size.value, "device": self.device, "seed": self.seed,
                "cifar10": self.data_root is not None, "code_version": models.store.code_version(),
                "commit": commit, "dirty": dirty}


def source_tree() -> tuple[str | None, bool]:
    """The commit of the git checkout holding this source and whether its tracked files have
    uncommitted changes; ``(None, False)`` outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, False


def check_reference_output(out: str | os.PathLike[str], size: Size) -> None:
    """Refuse (ValueError) to write a reference report into :data:`REFERENCE_DIR` from a source
    tree with uncommitted changes: a committed reference names the commit that made it, so
    its bounds are provably declared before its data."""
    inside = Path(out).resolve().is_relative_to(REFERENCE_DIR.resolve())
    if inside and Size(size) is Size.REFERENCE and source_tree()[1]:
        raise ValueError(f"out = {os.fspath(out)!r} is a committed reference report and the source "
                         "tree has uncommitted changes; allowed: a clean tree (commit first)")


def open_store(settings: Settings) -> RunStore:
    """The run store of ``settings.store`` (default: the user's, see
    :func:`models.store.default_store_path`)."""
    return RunStore(settings.store)


_ACTIVE: ContextVar[Workers | None] = ContextVar("suite_workers", default=None)


@contextmanager
def suite_workers(settings: Settings) -> Iterator[Workers]:
    """The workers of ``settings`` for every :func:`train_runs` inside the block, so that a
    suite starts Ray once (when its first run needs it; a cluster at ``settings.address`` is
    joined at once) and stops it at the end; inside an enclosing block, that block's workers."""
    active = _ACTIVE.get()
    if active is not None:
        yield active
        return
    with Workers(**settings._where()) as workers:
        if settings.address is not None:
            workers.ray()  # a cluster that cannot be used is said at once, not after a section
        token = _ACTIVE.set(workers)
        try:
            yield workers
        finally:
            _ACTIVE.reset(token)


def train_groups(groups: Mapping[T, Sequence[models.TrainConfig]], settings: Settings, *,
                 desc: str) -> dict[T, list[Run]]:
    """:func:`train_runs` over every config of every group at once (one progress bar), the
    runs returned grouped as given: an experiment's grid of settings, each over its seeds."""
    runs = iter(train_runs([c for group in groups.values() for c in group], settings,
                           desc=desc))
    return {key: [next(runs) for _ in group] for key, group in groups.items()}


def train_runs(configs: Sequence[models.TrainConfig], settings: Settings, *,
               desc: str) -> list[Run]:
    """Train ``configs`` (each on ``settings.device``) into the store of ``settings`` through
    the trial runner, with one progress bar over them, and return their runs in order; finished
    runs are reused. A run that fails in training comes back with status ``failed`` and whatever
    it measured (its reason is printed; the caller decides what it means); one that cannot start
    (missing data, unusable device) raises ``ValueError`` once the others have finished."""
    configs = [models.override(c, {"device": settings.device}) for c in configs]
    trials = list({c.run_id(): Trial(c, ()) for c in configs}.values())
    unstarted: list[TrialResult] = []
    with (open_store(settings) as store, suite_workers(settings) as workers,
          tqdm(total=len(trials), desc=desc, unit="run", disable=not settings.progress) as bar):
        def report(trial: Trial, result: TrialResult) -> None:
            bar.update()
            if result.status is not RunStatus.COMPLETED:
                bar.write(f"{desc}: run {trial.run_id} {result.status.value}: {result.reason}",
                          file=sys.stderr)
            if not result.started:
                unstarted.append(result)

        done = workers.run(trials, store, num_gpus=float(settings.device.startswith("cuda")),
                           on_result=report)
        bar.update(len(done.skipped))
        if unstarted:
            raise ValueError("; ".join(f"run {r.run_id} {r.reason}" for r in unstarted))
        return [store[c.run_id()] for c in configs]
