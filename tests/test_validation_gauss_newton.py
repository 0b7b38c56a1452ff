"""validation.kfac.gauss_newton: 004 Theorem 1 measured on deep linear networks, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from scalewise.models.data import whitened_inputs
from scalewise.validation.kfac import gauss_newton as gnn


def test_inputs_are_exactly_whitened() -> None:
    x = whitened_inputs(32, 5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.T @ x / 32, torch.eye(5, dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_linear_networks_meet_theorem_1() -> None:
    data = gnn.network_family_norms((0, 1, 2), ("linear",), width=3, samples=16, seed=2)
    np.testing.assert_allclose(data["gn_ratio"], data["theory_gn_ratio"], rtol=1e-10)
    np.testing.assert_allclose(data["kfac_ratio"], data["theory_kfac_ratio"], rtol=1e-10)
    np.testing.assert_array_equal(data["theory_gn_ratio"], [1.0, 4.0, 9.0])


def test_stored_norms_reads_network_rows_only() -> None:
    metrics = pd.DataFrame({"step": [0, 0, 0, 5], "layer": ["", "", "h", ""],
                            "name": ["jacobian_sq_norm", "gn_norm", "gn_norm", "gn_norm"],
                            "value": [1.0, 4.0, 9.0, 8.0]})
    out = gnn.stored_norms(metrics)
    assert list(out["step"]) == [0, 5] and list(out["gn_norm"]) == [4.0, 8.0]
    assert gnn.stored_norms(metrics[metrics["layer"] == "h"]).empty


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        gnn.deep_network(1, 2, "tanh", torch.Generator())
