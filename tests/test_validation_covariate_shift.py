"""validation.ics.covariate_shift: K-FAC's factor A and its outlier eigenvalue against theory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalewise.validation.ics import covariate_shift


@pytest.mark.parametrize("homogeneous", [False, True], ids=["plain", "homogeneous"])
def test_second_moment_matches_a_dense_sum(homogeneous: bool) -> None:
    a = torch.randn(7, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows = torch.cat([a, torch.ones(7, 1, dtype=torch.float64)], 1) if homogeneous else a
    expected = sum(torch.outer(r, r) for r in rows) / 7
    torch.testing.assert_close(covariate_shift.second_moment(a, homogeneous=homogeneous),
                               expected, rtol=1e-14, atol=1e-14)


def test_sampled_mean_has_the_asked_norm() -> None:
    a = covariate_shift.shifted_activations(3.0, dim=16, samples=20_000,
                                            generator=torch.Generator().manual_seed(0))
    assert abs(float(a.mean(0).norm()) - 3.0) < 0.1  # standard error sqrt(16 / 20000) ~ 0.03


@pytest.mark.parametrize("mean_norm", [0.0, 0.7, 5.0])
def test_shifted_factor_is_the_factor_of_the_shifted_samples(mean_norm: float) -> None:
    a = covariate_shift.shifted_activations(0.0, dim=5, samples=300,
                                            generator=torch.Generator().manual_seed(2))
    shifted = covariate_shift.shifted_second_moment(
        covariate_shift.second_moment(a, homogeneous=True), mean_norm)
    direct = covariate_shift.second_moment(a + mean_norm / 5**0.5, homogeneous=True)
    torch.testing.assert_close(shifted, direct, rtol=1e-12, atol=1e-12)


def test_measured_outlier_follows_theory_within_sampling_error() -> None:
    data = covariate_shift.outlier_curves((0.0, 1.0, 2.0, 4.0, 8.0), dim=8, samples=20_000,
                                          seed=0)
    # relative sampling error of the top eigenvalue is O(sqrt(dim / samples)) ~ 0.02
    for measured, theory in (("measured", "theory"),
                             ("measured_homogeneous", "theory_homogeneous")):
        np.testing.assert_allclose(data[measured], data[theory], rtol=0.1)
    assert np.all(np.diff(data["theory"]) > 0)


@pytest.mark.parametrize("kwargs", [{"mean_norm": -1.0, "dim": 4, "samples": 4},
                                    {"mean_norm": 1.0, "dim": 1, "samples": 4}],
                         ids=["negative-mean", "dim-1"])
def test_bad_input_is_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        covariate_shift.shifted_activations(generator=torch.Generator(), **kwargs)
