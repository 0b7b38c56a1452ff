"""The schedule curves of the explorer: every source where it applies, theory against the
recurrence, and the corrected decay's level ratio."""

from __future__ import annotations

import numpy as np
import pytest

from scalewise.figures import schedule_curves


def _wide(table, quantity):
    rows = table[table["quantity"] == quantity]
    return rows.pivot(index="step", columns="source", values="value")


@pytest.mark.parametrize("optimizer", ["sgd", "muon"])
def test_sources_and_agreement_under_a_cosine(optimizer: str) -> None:
    table = schedule_curves.schedule_table(optimizer, "cosine", lr=0.05, weight_decay=0.1,
                                           steps=4000)
    assert set(table["source"]) == {"theory (continuous)", "theory (quasi-static)",
                                    "simulation (recurrence)", "simulation (sphere)"}
    norms = _wide(table, "norm_sq")
    np.testing.assert_allclose(norms["theory (continuous)"],
                               norms["simulation (recurrence)"], rtol=0.02)
    middle = norms.index[len(norms) // 2]
    assert norms.loc[middle, "simulation (sphere)"] == pytest.approx(
        norms.loc[middle, "simulation (recurrence)"], rel=0.1)


def test_corrected_decay_keeps_the_ratio_level_and_drops_the_sphere() -> None:
    table = schedule_curves.schedule_table("sgd", "warmup-stable-decay", lr=0.05,
                                           weight_decay=0.1, steps=4000, corrected=True)
    assert "simulation (sphere)" not in set(table["source"])
    ratio = _wide(table, "grad_weight_ratio")["simulation (recurrence)"]
    assert ratio.iloc[-1] == pytest.approx(ratio.iloc[len(ratio) // 2], rel=0.02)
    plain = schedule_curves.schedule_table("sgd", "warmup-stable-decay", lr=0.05,
                                           weight_decay=0.1, steps=4000)
    plain_ratio = _wide(plain, "grad_weight_ratio")["simulation (recurrence)"]
    assert plain_ratio.iloc[-1] > 1.5 * plain_ratio.iloc[len(plain_ratio) // 2]


def test_preconditioned_decays_are_refused() -> None:
    with pytest.raises(ValueError, match="optimizer = 'adam' is invalid"):
        schedule_curves.schedule_table("adam", "cosine", lr=1e-3, weight_decay=0.1, steps=100)
