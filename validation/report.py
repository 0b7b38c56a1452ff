"""A validation report: theory's predictions beside measurements, written as a folder.

A :class:`Report` collects

- :class:`Record` s, one per comparison ``{"experiment", "optimizer", "layer", "quantity",
  "predicted", "measured", "rel_error"}``, with ``rel_error = |predicted - measured| / |measured|``;
- :class:`Bound` s, the agreement a suite promises (a statistic of ``rel_error`` over matching
  records at most a limit), checked on the records when the report is written;
- sections of Markdown text, each with figures (matplotlib ``Figure`` s, predicted beside measured);
- long-form curves ``(experiment, optimizer, layer, quantity, source, step, value)``, thinned to a
  few hundred steps per curve, for the explorer to redraw;
- the configs of the runs measured.

:meth:`Report.write` writes the folder::

    report.md        the text, the agreement table and the figures
    report.json      the records, a JSON list
    index.json       title, sections, figure files, agreement, run configs (the explorer reads it)
    curves.csv.gz    the curves
    figures/*.png

Every file is written to a temporary name and renamed over the old one, so an interrupted write
leaves the previous report readable. :func:`load` reads a folder back.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scalewise import checks
from scalewise.validation.markdown import markdown_table

RECORD_FIELDS = ("experiment", "optimizer", "layer", "quantity", "predicted", "measured",
                 "rel_error")
CURVE_COLUMNS = ("experiment", "optimizer", "layer", "quantity", "source", "step", "value")
CURVE_POINTS = 300  # steps kept per curve: the first, the last and evenly spaced ones between
STATISTICS = ("max", "median", "mean")
SIDES = ("both", "at least", "at most")
"""How a :class:`Bound` counts a record's error: ``both`` ways (``rel_error``); for a claim that
the measured value is ``at least`` (or ``at most``) the predicted one, only a shortfall (an
excess): ``rel_error`` where the claim fails, 0 where it holds."""
AGREEMENT_COLUMNS = ("experiment", "optimizer", "quantity", "statistic of rel. error", "value",
                     "limit", "records", "holds", "what")
FIGURE_DPI = 110


def relative_error(predicted: float, measured: float) -> float:
    """``|predicted - measured| / |measured|``; 0 when both are 0, inf when only ``measured``
    is, NaN when either is not a number."""
    predicted, measured = float(predicted), float(measured)
    if math.isnan(predicted) or math.isnan(measured):
        return math.nan
    if measured == 0:
        return 0.0 if predicted == 0 else math.inf
    return abs(predicted - measured) / abs(measured)


@dataclass(frozen=True)
class Record:
    """One comparison of a prediction with a measurement (see :func:`record`)."""

    experiment: str
    optimizer: str
    layer: str
    quantity: str
    predicted: float
    measured: float
    rel_error: float


def record(experiment: str, optimizer: str, layer: str, quantity: str, *, predicted: float,
           measured: float) -> Record:
    """A :class:`Record` with its ``rel_error`` computed (:func:`relative_error`). ``layer`` is
    ``""`` for a comparison about the whole network."""
    return Record(experiment, optimizer, layer, quantity, float(predicted), float(measured),
                  relative_error(predicted, measured))


def spread_steps(first: int, last: int, count: int) -> list[int]:
    """About ``count`` steps spread evenly over ``first..last``, both included (the points of
    ``"<q>@<k>"`` records), rounded down; fewer when the range holds fewer integers. Every
    suite picks its record steps with it.

    >>> spread_steps(0, 99, 5)
    [0, 24, 49, 74, 99]
    """
    return sorted({int(k) for k in np.linspace(first, last, count)})


def curve_frame(experiment: str, optimizer: object, layer: object, quantity: object,
                source: object, step: object, value: object) -> pd.DataFrame:
    """Curve points in the long form of :data:`CURVE_COLUMNS`, the one builder of the suites'
    curves: each argument one value for every point or a sequence (array, Series) with one
    per point; ``step`` is one per point. Values are floats.

    >>> curve_frame("e", "sgd", "", "loss", "measured", [0, 1], [2.0, 1.0]).shape
    (2, 7)
    """
    columns = dict(zip(CURVE_COLUMNS, (experiment, optimizer, layer, quantity, source)))
    points = {name: np.asarray(v) if np.ndim(v) else v for name, v in columns.items()}
    return pd.DataFrame({**points, "step": np.asarray(step),
                         "value": np.asarray(value, dtype=float)})


def base_quantity(quantity: str) -> str:
    """``quantity`` without its step: a comparison along a curve is recorded at chosen steps
    ``k`` as ``"<quantity>@<k>"`` (``"norm_sq@1000"``)."""
    return quantity.split("@", 1)[0]


@dataclass(frozen=True)
class Bound:
    """Agreement a suite promises: over the records of ``experiment`` whose quantity is
    ``quantity`` (with or without an ``@k`` step, :func:`base_quantity`) and, unless None, of
    ``optimizer`` and of a layer matching the shell pattern ``layer``, the ``statistic`` (max,
    median or mean) of ``rel_error`` is at most ``limit``. With ``per_layer`` the statistic is
    taken per (optimizer, layer) and the worst one counts, so "median error per layer <= 1%" is
    ``Bound(..., statistic="median", per_layer=True)``. A ``side`` of :data:`SIDES` other than
    ``both`` bounds a one-sided claim: "measured >= predicted for every record" is
    ``Bound(..., side="at least")`` with any limit below 1 where the predicted value is 0 (a
    shortfall against 0 is a relative error of 1)."""

    experiment: str
    quantity: str
    limit: float
    optimizer: str | None = None
    statistic: str = "max"
    per_layer: bool = False
    description: str = ""
    layer: str = "*"
    side: str = "both"

    def __post_init__(self) -> None:
        checks.one_of("statistic", self.statistic, STATISTICS)
        checks.one_of("side", self.side, SIDES)
        checks.number("limit", self.limit, 0.0, low_open=True)

    def matches(self, rec: Record) -> bool:
        return (rec.experiment == self.experiment and base_quantity(rec.quantity) == self.quantity
                and self.optimizer in (None, rec.optimizer)
                and fnmatch.fnmatchcase(rec.layer, self.layer))

    def check(self, records: Iterable[Record]) -> BoundResult:
        """The statistic over the matching records (the worst group's with ``per_layer``); a
        bound that matches no record, or whose statistic is NaN, does not hold."""
        groups: dict[tuple[str, str], list[float]] = {}
        for r in records:
            if self.matches(r):
                key = (r.optimizer, r.layer) if self.per_layer else ("", "")
                groups.setdefault(key, []).append(self.error(r))
        statistic = getattr(np, self.statistic)
        values = [float(statistic(np.array(errors))) for errors in groups.values()]
        value = max(values, key=lambda v: math.inf if math.isnan(v) else v, default=math.nan)
        count = sum(len(errors) for errors in groups.values())
        return BoundResult(self, value, count, bool(count and value <= self.limit))

    def error(self, rec: Record) -> float:
        """``rec``'s error as this bound counts it (:data:`SIDES`).

        >>> r = record("e", "o", "", "q", predicted=1.0, measured=2.0)
        >>> [Bound("e", "q", 0.1, side=side).error(r) for side in SIDES]
        [0.5, 0.0, 0.5]
        """
        if self.side == "both" or math.isnan(rec.rel_error):
            return rec.rel_error
        short = rec.measured < rec.predicted if self.side == "at least" else (
            rec.measured > rec.predicted)
        return rec.rel_error if short else 0.0

    @property
    def statistic_label(self) -> str:
        """The statistic as the agreement tables name it: ``max``, ``median per layer, worst``,
        ``max, one-sided: measured at least predicted``."""
        return statistic_label(self.statistic, self.per_layer, self.side)


def statistic_label(statistic: str, per_layer: bool = False, side: str = "both") -> str:
    """:attr:`Bound.statistic_label` from a bound's fields (as ``index.json`` stores them)."""
    label = f"{statistic} per layer, worst" if per_layer else statistic
    return label if side == "both" else f"{label}, one-sided: measured {side} predicted"


@dataclass(frozen=True)
class BoundResult:
    bound: Bound
    value: float  # the statistic of rel_error; NaN when no record matched
    count: int  # records that matched
    holds: bool


@dataclass
class FigureEntry:
    name: str  # file stem under figures/
    figure: Figure | None  # None once written (or read back)
    caption: str


@dataclass
class Section:
    title: str
    text: str
    figures: list[FigureEntry] = field(default_factory=list)

    def figure(self, name: str, figure: Figure, caption: str) -> None:
        """Add ``figure`` as ``figures/<name>.png`` with ``caption``."""
        self.figures.append(FigureEntry(name, figure, caption))


@dataclass
class Report:
    suite: str
    title: str
    intro: str = ""
    records: list[Record] = field(default_factory=list)
    bounds: list[Bound] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    curves: list[pd.DataFrame] = field(default_factory=list)
    runs: dict[str, Any] = field(default_factory=dict)  # run id -> its config, as plain data
    settings: dict[str, Any] = field(default_factory=dict)  # how the report was made

    def section(self, title: str, text: str) -> Section:
        """A new section of Markdown ``text``, appended and returned (add figures to it)."""
        new = Section(title, text)
        self.sections.append(new)
        return new

    def add(self, *records: Record) -> None:
        self.records.extend(records)

    def add_runs(self, runs: Iterable[Any]) -> None:
        """Keep the config of each stored run (a :class:`models.store.Run`) under its id."""
        self.runs.update({run.id: json.loads(run.config.to_json()) for run in runs})

    def add_curves(self, curves: pd.DataFrame) -> None:
        """Long-form curves with the columns :data:`CURVE_COLUMNS`, thinned by :func:`thin`."""
        missing = sorted(set(CURVE_COLUMNS) - set(curves.columns))
        if missing:
            raise ValueError(f"curves lack the columns {missing}; needed: {CURVE_COLUMNS}")
        self.curves.append(thin(curves[list(CURVE_COLUMNS)]))

    def agreement(self) -> list[BoundResult]:
        return [bound.check(self.records) for bound in self.bounds]

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write the report folder (see the module docstring) and return its path."""
        folder = Path(folder)
        (folder / "figures").mkdir(parents=True, exist_ok=True)
        for section in self.sections:
            for entry in section.figures:
                if entry.figure is not None:
                    _atomic(folder / "figures" / f"{entry.name}.png",
                            lambda path, fig=entry.figure: fig.savefig(path, dpi=FIGURE_DPI,
                                                                       format="png"))
        curves = (pd.concat(self.curves, ignore_index=True) if self.curves
                  else pd.DataFrame(columns=list(CURVE_COLUMNS)))
        _atomic(folder / "curves.csv.gz",
                lambda path: curves.to_csv(path, index=False, compression="gzip"))
        records = [dataclasses.asdict(r) for r in self.records]
        _write_text(folder / "report.json", json.dumps(records, indent=1, allow_nan=True))
        _write_text(folder / "index.json", json.dumps(self._index(), indent=1, allow_nan=True))
        _write_text(folder / "report.md", self.markdown())
        return folder

    def _index(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "title": self.title, "intro": self.intro,
            "settings": self.settings, "runs": self.runs,
            "agreement": [_result_dict(result) for result in self.agreement()],
            "sections": [{"title": s.title, "text": s.text,
                          "figures": [{"file": f"figures/{f.name}.png", "caption": f.caption}
                                      for f in s.figures]}
                         for s in self.sections],
        }

    def markdown(self) -> str:
        """The report as Markdown: intro, agreement table, sections with their figures."""
        lines = [f"# {self.title}", "", self.intro, "", "## Agreement", "",
                 agreement_table(self.agreement()), ""]
        for s in self.sections:
            lines += [f"## {s.title}", "", s.text, ""]
            for f in s.figures:
                lines += [f"![{f.name}](figures/{f.name}.png)", "", f"*{f.caption}*", ""]
        if self.settings:
            lines += ["## How this report was made", "", "```json",
                      json.dumps(self.settings, indent=1), "```", ""]
        return "\n".join(lines)


def agreement_table(results: Sequence[BoundResult]) -> str:
    """Markdown table: bound, statistic, measured value, limit, records, holds, what."""
    rows = [{"experiment": r.bound.experiment, "optimizer": r.bound.optimizer or "all",
             "quantity": r.bound.quantity,
             "statistic of rel. error": r.bound.statistic_label,
             "value": f"{r.value:.3g}", "limit": f"{r.bound.limit:g}", "records": r.count,
             "holds": "yes" if r.holds else "no", "what": r.bound.description}
            for r in results]
    return markdown_table(pd.DataFrame(rows, columns=AGREEMENT_COLUMNS), index=False)


def _result_dict(result: BoundResult) -> dict[str, Any]:
    return {**dataclasses.asdict(result.bound), "value": result.value, "count": result.count,
            "holds": result.holds}


def thin(curves: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Keep at most ``points`` steps of each curve (grouped by every column but ``step`` and
    ``value``): the first, the last and evenly spaced ones between."""
    keys = [c for c in CURVE_COLUMNS if c not in ("step", "value")]
    parts = []
    for _, curve in curves.groupby(keys, sort=False, dropna=False):
        curve = curve.sort_values("step")
        if len(curve) > points:
            kept = np.linspace(0, len(curve) - 1, points).round().astype(int)
            curve = curve.iloc[np.unique(kept)]
        parts.append(curve)
    return pd.concat(parts, ignore_index=True) if parts else curves


def _atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class LoadedReport:
    """A report folder read back: ``index`` as in ``index.json``, ``records`` and ``curves`` as
    DataFrames, ``folder`` to resolve figure files against."""

    folder: Path
    index: dict[str, Any]
    records: pd.DataFrame
    curves: pd.DataFrame


def load(folder: str | os.PathLike[str]) -> LoadedReport:
    """Read a report folder written by :meth:`Report.write`; ValueError naming the folder and
    the file when one is missing or unreadable."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        records = _records(json.loads((folder / "report.json").read_text(encoding="utf-8")))
        curves = pd.read_csv(folder / "curves.csv.gz", keep_default_na=False,
                             dtype={"layer": str, "optimizer": str})
    except (OSError, ValueError) as error:
        raise ValueError(f"folder = {str(folder)!r} is not a readable validation report "
                         f"({error})") from error
    return LoadedReport(folder, index, records, curves)


def _records(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The records of ``report.json``: the :data:`RECORD_FIELDS` first, then any field a suite
    adds (an interval over seeds, the seeds counted), kept for the readers that show them."""
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in RECORD_FIELDS]
    return frame.reindex(columns=[*RECORD_FIELDS, *extra])
