"""Optional cross-check: the exact K-FAC Gauss-Newton factors of
:func:`models.probes.kfac_gn_factors` (``samples=None``) and :func:`models.probes.kfac_gn_norm`
against curvlinops' ``KFACLinearOperator`` with ``fisher_type="type-2"``, which also takes the
expectation over the output metric exactly, by backpropagating the columns of the loss Hessian's
square root (003, "Pullback Sampling Trick"; 004 Lemma 2). Skipped when curvlinops is not
installed; it must share the project's torch, never bring its own.

Loss conventions. Ours is ``1/2 ||f(x) - t||^2`` per example, averaged over the ``N`` examples,
so ``G = E_x[J^T J]``. ``torch.nn.MSELoss`` sums ``(f - t)^2`` over examples and outputs
(``reduction="sum"``: ``2N`` times ours) or averages over both (``"mean"``: ``2/C`` times ours).
curvlinops' input factor is ``E[a a^T]`` in either case (``a_bar = [a; 1]`` when weight and bias
are treated jointly), so only its gradient factor carries that ratio: ``S = ggT / ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

curvlinops = pytest.importorskip("curvlinops")

from test_models_probes import LINEAR, RELU, Net

from scalewise.models.probes import kfac_gn_factors, kfac_gn_norm

RTOL, ATOL = 1e-10, 1e-12
NETS = LINEAR + RELU


@dataclass(frozen=True)
class Setting:
    """How curvlinops is asked: bias or not, the MSE reduction, the data loader's batch size
    (factors are accumulated over batches) and whether weight and bias get separate factors."""
    bias: bool
    reduction: str
    batch_size: int
    separate: bool = False

    @property
    def id(self) -> str:
        bias = ("separate-bias" if self.separate else "joint-bias") if self.bias else "no-bias"
        return f"{bias}-{self.reduction}-batch{self.batch_size}"

    def loss_ratio(self, examples: int, classes: int) -> float:
        """curvlinops' loss over ours, hence its GGN over ours (see the module docstring)."""
        return {"sum": 2.0 * examples, "mean": 2.0 / classes}[self.reduction]


SETTINGS = [
    Setting(bias=False, reduction="mean", batch_size=64),
    Setting(bias=False, reduction="sum", batch_size=7),
    Setting(bias=True, reduction="mean", batch_size=4),
    Setting(bias=True, reduction="sum", batch_size=64),
    Setting(bias=True, reduction="mean", batch_size=5, separate=True),
]


def _net_id(net: Net) -> str:
    return f"{net.activation.__name__}-{'x'.join(map(str, net.widths))}"


def curvlinops_kfac(model: nn.Sequential, inputs: torch.Tensor, setting: Setting):
    """Type-2 ``KFACLinearOperator`` of ``model`` on ``inputs`` (N, d), factors computed.

    The targets are zero: the MSE Hessian does not depend on them."""
    targets = model(inputs).detach().zero_()  # (N, C)
    data = list(zip(inputs.split(setting.batch_size), targets.split(setting.batch_size)))
    operator = curvlinops.KFACLinearOperator(
        model,
        nn.MSELoss(reduction=setting.reduction),
        list(model.parameters()),
        data,
        fisher_type="type-2",
        separate_weight_and_bias=setting.separate,
        # its determinism check already computes the factors, and a second
        # compute_kronecker_factors() adds to them instead of replacing them
        check_deterministic=False,
    )
    operator.compute_kronecker_factors()
    return operator


def curvlinops_norm(operator, model: nn.Sequential) -> torch.Tensor:
    """``theta^T K theta`` through curvlinops' public matrix-vector product."""
    theta = [p.detach() for p in model.parameters()]
    product = operator @ theta  # list, shapes as theta
    return sum((t * g).sum() for t, g in zip(theta, product))


def assert_factor_close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(
        ours, theirs, rtol=RTOL, atol=ATOL,
        msg=lambda message: f"{what}: ours vs curvlinops\n{message}\n"
                            f"ours =\n{ours}\ncurvlinops =\n{theirs}")


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.id for s in SETTINGS])
@pytest.mark.parametrize("net", NETS, ids=[_net_id(n) for n in NETS])
def test_kfac_factors_match_curvlinops_type2(net: Net, setting: Setting) -> None:
    """Layer by layer: ``A`` equals curvlinops' input covariance (its leading ``d x d`` block
    when curvlinops keeps the bias separate) and ``S`` its gradient covariance over the loss
    ratio. curvlinops keeps its factors in the dicts ``_input_covariances`` and
    ``_gradient_covariances`` (keyed by module name; checked against curvlinops 3.0.1)."""
    model, x = net.build(bias=setting.bias), net.raw_inputs()
    operator = curvlinops_kfac(model, x, setting)
    ratio = setting.loss_ratio(*model(x).shape)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, (a, s) in zip(names, kfac_gn_factors(model, x), strict=True):
        if setting.separate:
            a = a[:-1, :-1]  # drop the homogeneous coordinate: curvlinops' weight-only A
        assert_factor_close(a, operator._input_covariances[name], f"layer {name}: A")
        assert_factor_close(s, operator._gradient_covariances[name] / ratio, f"layer {name}: S")


JOINT = [s for s in SETTINGS if not s.separate]


@pytest.mark.parametrize("setting", JOINT, ids=[s.id for s in JOINT])
@pytest.mark.parametrize("net", NETS, ids=[_net_id(n) for n in NETS])
def test_kfac_gn_norm_matches_curvlinops_type2(net: Net, setting: Setting) -> None:
    """``theta^T G_hat theta`` from curvlinops' matrix-vector product, over the loss ratio;
    with a bias only the joint ``[W | b]`` treatment is the same approximation as ours."""
    model, x = net.build(bias=setting.bias), net.raw_inputs()
    operator = curvlinops_kfac(model, x, setting)
    theirs = curvlinops_norm(operator, model) / setting.loss_ratio(*model(x).shape)
    assert_factor_close(kfac_gn_norm(model, x), theirs, "theta^T G_hat theta")


@pytest.mark.parametrize("net", NETS, ids=[_net_id(n) for n in NETS])
def test_separate_bias_kfac_is_another_approximation(net: Net) -> None:
    """Negative control: curvlinops' separate weight and bias factors drop the weight-bias
    blocks and use ``E[a a^T]`` without the homogeneous coordinate, so its norm is not ours."""
    setting = next(s for s in SETTINGS if s.separate)
    model, x = net.build(bias=True), net.raw_inputs()
    operator = curvlinops_kfac(model, x, setting)
    theirs = curvlinops_norm(operator, model) / setting.loss_ratio(*model(x).shape)
    assert not torch.isclose(kfac_gn_norm(model, x), theirs, rtol=1e-3)
