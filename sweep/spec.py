"""Sweep specs: a grid of :func:`scalewise.models.train` runs, read from YAML or TOML.

A spec (YAML, or TOML by the file's suffix) names a base config, the axes of the grid and the
seeds; every point of the product of the axes is trained once per seed::

    # wd-grid.yaml: 2 optimizers x 2 weight decays x 2 seeds = 8 trials
    name: wd-grid                  # each trial's config.name (default: the file's stem)
    preset: teacher-mlp-sgd        # optional starting config (default: TrainConfig())
    base:                          # dotted overrides of the preset, as models.override takes
      steps: 200
      model.width: 16
      optimizer.wd_mode: l2
      device: cpu
    axes:                          # dotted field -> values; the grid is their product
      optimizer.name: [sgd, adam]
      optimizer.weight_decay: [0.0, 1.0e-3]   # YAML reads 1e-3 as a string: write 1.0e-3
    seeds: [0, 1]                  # the field ``seed`` of each trial
    resources: {num_cpus: 1, num_gpus: 0}   # what Ray reserves per trial
    metric: test_accuracy          # summary: the final value of this metric ...
    goal: max                      # ... and whether larger (max) or smaller (min) is better

A trial's run id is its config's :meth:`~models.config.TrainConfig.run_id`, so re-running a
sweep skips the trials completed in the store and trains the others (failed, interrupted, or
never started) from step 0.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalewise import checks
from scalewise.models.config import TrainConfig, override
from scalewise.models.presets import preset

SPEC_KEYS = ("name", "preset", "base", "axes", "seeds", "resources", "metric", "goal")
RESOURCE_KEYS = ("num_cpus", "num_gpus")
GOALS = ("max", "min")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: ``base`` already has the preset and the base overrides applied."""

    name: str
    base: TrainConfig
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    metric: str = "test_accuracy"
    goal: str = "max"


@dataclass(frozen=True)
class Trial:
    """One point of the grid and one seed; ``point`` maps each axis to its value here."""

    config: TrainConfig
    point: tuple[tuple[str, Any], ...]

    @property
    def run_id(self) -> str:
        return self.config.run_id()



def load_spec(path: str | Path) -> SweepSpec:
    """Read a spec from a ``.yaml``/``.yml`` or ``.toml`` file (see the module docstring)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml", ".toml"):
        checks.fail("spec", str(path), "a file ending in .yaml, .yml or .toml")
    if not path.is_file():
        checks.fail("spec", str(path), "an existing spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        checks.fail("spec", str(path), f"a UTF-8 text file (byte {error.start} is not UTF-8)")
    except OSError as error:
        checks.fail("spec", str(path), f"a readable file ({error.strerror or error})")
    data = _parse_toml(text, path) if path.suffix == ".toml" else _parse_yaml(text, path)
    if not isinstance(data, Mapping):
        checks.fail("spec", str(path), "a file holding a mapping (name, preset, base, axes, seeds, ...)")
    return parse_spec({"name": path.stem, **data})


def _parse_yaml(text: str, path: Path) -> Any:
    """The YAML document; a syntax error names the file, line and column in one line."""
    import yaml  # declared by the sweep extra; the core does not need it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        hint = "; YAML indents with spaces, not tabs" if "'\\t'" in problem else ""
        checks.fail("spec", str(path), f"a valid YAML file ({where}{problem}{hint})")


def _parse_toml(text: str, path: Path) -> Any:
    """The TOML document; a syntax error names the file, line and column in one line."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # the sweep extra installs it on Python 3.10
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        checks.fail("spec", str(path), f"a valid TOML file ({error})")


def parse_spec(data: Mapping[str, Any]) -> SweepSpec:
    """A :class:`SweepSpec` from plain data, validated: unknown keys, a bad preset, override,
    axis or resource raise ``ValueError`` naming it. Every trial's config is validated too."""
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        checks.fail(unknown[0], data[unknown[0]], "the spec keys " + ", ".join(SPEC_KEYS))
    name = data.get("name", "")
    if not isinstance(name, str) or not name:
        checks.fail("name", name, "a non-empty string")
    start = preset(data["preset"]) if "preset" in data else TrainConfig()
    base = override(start, {"name": name, **_mapping("base", data.get("base", {}))})
    resources = _mapping("resources", data.get("resources", {}))
    spec = SweepSpec(name=name, base=base, axes=_axes(data.get("axes", {})),
                     seeds=_seeds(data.get("seeds", [base.seed])),
                     **_resources(resources), metric=_metric(data.get("metric", "test_accuracy")),
                     goal=_goal(data.get("goal", "max")))
    expand(spec)
    return spec


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        checks.fail(key, value, "a mapping from dotted field names to values")
    return value


def _axes(value: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    axes = _mapping("axes", value)
    for field, values in axes.items():
        if field == "seed":
            checks.fail("axes.seed", values, "no seed axis (list the seeds under 'seeds')")
        if not isinstance(values, Sequence) or isinstance(values, str) or not values:
            checks.fail(f"axes.{field}", values, "a non-empty list of values")
    # lists inside an axis (betas, milestones) become the tuples the configs hold
    return tuple((field, tuple(tuple(v) if isinstance(v, list) else v for v in values))
                 for field, values in axes.items())


def _seeds(value: Any) -> tuple[int, ...]:
    ok = (isinstance(value, Sequence) and not isinstance(value, str) and value
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
          and len(set(value)) == len(value))
    return tuple(value) if ok else checks.fail("seeds", value, "a non-empty list of distinct "
                                         "integers >= 0")


def _resources(value: Mapping[str, Any]) -> dict[str, float]:
    unknown = sorted(set(value) - set(RESOURCE_KEYS))
    if unknown:
        checks.fail(f"resources.{unknown[0]}", value[unknown[0]], "the keys " + ", ".join(RESOURCE_KEYS))
    for key in RESOURCE_KEYS:
        amount = value.get(key, 0)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not (
                math.isfinite(amount) and amount >= 0):
            checks.fail(f"resources.{key}", amount, "a finite number >= 0")
    return {"num_cpus": float(value.get("num_cpus", 1)), "num_gpus": float(value.get("num_gpus", 0))}


def _metric(value: Any) -> str:
    return value if isinstance(value, str) and value else checks.fail(
        "metric", value, "the name of a whole-network metric, e.g. test_accuracy or train_loss")


def _goal(value: Any) -> str:
    return value if value in GOALS else checks.fail("goal", value, " or ".join(GOALS))


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of the grid: the product of the axes (in spec order, the last fastest), each
    point once per seed. Raises ``ValueError`` naming the point whose config is invalid."""
    fields = [field for field, _ in spec.axes]
    trials = []
    for values in itertools.product(*(values for _, values in spec.axes)):
        point = tuple(zip(fields, values))
        for seed in spec.seeds:
            try:
                config = override(spec.base, {**dict(point), "seed": seed})
            except ValueError as error:
                raise ValueError(f"the grid point {_describe(point)} (seed {seed}): "
                                 f"{error}") from None
            trials.append(Trial(config, point))
    counts = Counter(t.run_id for t in trials)
    repeated = next((t for t in trials if counts[t.run_id] > 1), None)
    if repeated is not None:
        checks.fail("axes", dict(spec.axes), f"axes whose points differ (the point "
              f"{_describe(repeated.point)} gives a config that another point gives too)")
    return trials


def _describe(point: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{field}={value}" for field, value in point) or "(no axes)"


