"""Mechanism I of weight decay (004 Sec. 4.1): the smoke experiments (placement, norm grafting,
renormalization) train into a temporary store, reuse each other's runs, and write a report whose
records have the schema and whose bounds hold; grafted runs read the norms of the stored decayed
runs; renormalized effective LR is the LR at every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from scalewise.models.store import RunStatus, RunStore
from scalewise.validation.comparison import normalized_layers, wide
from scalewise.validation.effective_lr import mechanism_one as m1
from scalewise.validation.report import RECORD_FIELDS, Report, load
from scalewise.validation.suite import Settings

EXPERIMENTS = (m1.weight_decay_placement, m1.norm_grafting, m1.renormalization)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Report, Settings, Path]]:
    """The three smoke experiments into one report and store. Module scope sets up before the
    per-test one-thread fixture, so it keeps torch at one thread itself."""
    folder = tmp_path_factory.mktemp("mechanism_one")
    settings = Settings(size="smoke", store=folder / "runs.sqlite", progress=False)
    report = Report("effective-lr", "mechanism I")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for experiment in EXPERIMENTS:
            experiment(report, settings)
    finally:
        torch.set_num_threads(threads)
    yield report, settings, folder


def test_smoke_report_meets_its_bounds(smoke) -> None:
    report, _, _ = smoke
    results = report.agreement()
    assert {(r.bound.experiment, r.bound.optimizer) for r in results} == {
        ("wd_placement", "sgd:wd-output"), ("norm_grafting", "graft:wd-normalized>sgd"),
        ("norm_grafting", "graft:wd-all>sgd"), ("renormalization", "sgd:renormalized")}
    assert all(r.holds and r.count > 0 for r in results), results
    assert [s.title for s in report.sections] == [
        "Mechanism I: where weight decay is applied", "Mechanism I: norm grafting",
        "Mechanism I: explicit renormalization"]


def test_written_report_has_the_record_schema_and_figures(smoke) -> None:
    report, _, folder = smoke
    loaded = load(report.write(folder / "report"))
    assert tuple(loaded.records.columns) == RECORD_FIELDS
    assert set(loaded.records["experiment"]) == {"wd_placement", "norm_grafting",
                                                 "renormalization"}
    assert np.isfinite(loaded.records[["predicted", "measured", "rel_error"]].to_numpy()).all()
    names = {Path(f["file"]).stem for s in loaded.index["sections"] for f in s["figures"]}
    assert names == {"wd-placement", "norm-grafting-effective-lr",
                     "renormalization-effective-lr"}
    assert all((folder / "report" / "figures" / f"{name}.png").exists() for name in names)


def test_runs_are_shared_and_grafted_from_the_stored_decayed_runs(smoke) -> None:
    _, settings, _ = smoke
    with RunStore(settings.store) as store:
        runs = store.runs()
        decayed = {label: m1.placement_config(settings, settings.seed, m1.PLACEMENTS[label])
                   for label in m1.GRAFT_SOURCES}
        # 4 placements, 2 grafted, 1 renormalized: no run trained twice
        assert len(runs) == 7
        sources = {store[run_id].config.optimizer.graft_norms_from for run_id in runs["id"]}
        assert sources - {None} == {c.run_id() for c in decayed.values()}
        assert all(store[run_id].status is RunStatus.COMPLETED for run_id in runs["id"])


def test_renormalized_effective_lr_is_the_lr_at_every_step(smoke) -> None:
    _, settings, _ = smoke
    config = m1.base_config(settings, settings.seed)
    with RunStore(settings.store) as store:
        run = store[m1.models.override(config, {"optimizer.renormalize": True}).run_id()]
    table = wide(run.metrics, "effective_lr")[normalized_layers(run.metrics)]
    np.testing.assert_allclose(table.loc[1:].to_numpy(), m1.LR, rtol=1e-6)
    assert np.abs(table.loc[0].to_numpy() / m1.LR - 1).min() > 0.1  # initial norms are not 1


def test_checkpoints_lie_on_probed_steps(smoke) -> None:
    _, settings, _ = smoke
    with RunStore(settings.store) as store:
        run = store[m1.base_config(settings, settings.seed).run_id()]
    steps = m1.checkpoints(run)
    assert steps[0] == 1 and steps[-1] == run.config.steps - 1 and np.all(np.diff(steps) > 0)
    probed = set(wide(run.metrics, "effective_lr").index)
    assert set(steps) <= probed and len(steps) == m1.CHECKPOINTS
