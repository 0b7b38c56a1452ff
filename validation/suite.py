"""What every validation suite shares: its :class:`Settings`, the run store its runs are trained
into, and :func:`train_runs`.

A suite is a package whose ``build(settings) -> Report`` runs its experiments, one module each
(registered in :data:`validation.SUITES`). ``size`` (:class:`validation.Size`) picks its
scale: every experiment declares what it trains at each size as
``SCALES = {Size.SMOKE: Scale(...), Size.REFERENCE: Scale(...)}`` and reads its entry with
:meth:`Settings.scale`. Runs are stored under their config hash, so a suite interrupted and
started again resumes its runs and reuses the finished ones.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from scalewise import models
from scalewise.models.store import Run, RunStore
from scalewise.validation import Size

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """How a suite runs: ``size``, the torch ``device`` of its runs (auto, cpu, cuda...), the
    ``store`` file its runs go to, an optional ``data_root`` holding CIFAR-10 (adds the GPU-scale
    experiments where a suite has them), ``seed`` and ``progress`` bars."""

    size: Size = Size.REFERENCE
    device: str = "cpu"
    store: str | None = None
    data_root: str | None = None
    seed: int = 0
    progress: bool = True

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


def train_runs(configs: Sequence[models.TrainConfig], settings: Settings, *,
               desc: str) -> list[Run]:
    """Train ``configs`` in order (each on ``settings.device``) into the store of ``settings``,
    with one progress bar over them; finished runs are reused. A diverged run comes back with
    status ``failed`` and whatever it measured; the caller decides what that means."""
    configs = [models.override(c, {"device": settings.device}) for c in configs]
    with open_store(settings) as store:
        bar = tqdm(configs, desc=desc, unit="run", disable=not settings.progress)
        return [models.train(config, store=store, progress=False) for config in bar]
