"""The catalogue of weight-norm equilibria: per optimizer, the closed forms that theory derives
(SGD in :mod:`theory.equilibrium`, momentum SGD in :mod:`theory.momentum_sgd`, AdamW in
:mod:`theory.adamw`, Adam with L2 and RMSprop in :mod:`theory.adam_l2`, Nesterov SGD, Muon and
Lion in :mod:`theory.lion_muon_nesterov`), their assumptions and
whether they are exact; the optimizers without an equilibrium and why; and the NumPy form of each
(``Equilibrium.numpy()``), lambdified once, that ``sim.equilibrium`` evaluates.

Which optimizer has an exact, a leading-order or no equilibrium is also stated in
:data:`scalewise.vocabulary.PROPERTIES`; the tests keep the two in agreement.

>>> EQUILIBRIA["sgd"].exact, sorted(NO_EQUILIBRIUM)
(True, ['adagrad'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, partial
from types import MappingProxyType

import numpy as np
import sympy as sp

from scalewise import checks
from scalewise.theory import lion_muon_nesterov as beyond
from scalewise.theory.adam_l2 import (
    ADAM_APPROACH_RATE,
    ADAM_COS_ANGLE,
    ADAM_EFFECTIVE_LR,
    ADAM_NORM_SQ,
)
from scalewise.theory.adamw import (
    ADAMW_COS_ANGLE,
    ADAMW_DET,
    ADAMW_EFFECTIVE_LR,
    ADAMW_NORM_SQ,
    ADAMW_TRACE,
)
from scalewise.theory.equilibrium import (
    WD_APPROACH_RATE,
    WD_EFFECTIVE_LR,
    WD_NORM_SQ,
    alpha,
    g,
    lam,
)
from scalewise.theory.mean_field import beta1, beta2, d, dominant_root, mu
from scalewise.theory.momentum_sgd import (
    SGDM_COS_ANGLE,
    SGDM_EFFECTIVE_LR,
    SGDM_NORM_SQ,
    SGDM_TRACE,
)
from scalewise.vocabulary import Optimizer


@dataclass(frozen=True)
class Equilibrium:
    """Closed forms of one optimizer's equilibrium, as SymPy expressions in ``alpha`` (lr),
    ``lam`` (weight decay), ``g`` (gradient norm at unit weight norm), ``mu`` (momentum),
    ``beta_1``, ``beta_2`` (Lion's buffer) and ``d`` (dimension), in the conventions of :mod:`theory.mean_field`."""

    optimizer: str
    norm_sq: sp.Expr
    effective_lr: sp.Expr
    angular_update: sp.Expr
    approach_rate: sp.Expr | None
    exact: bool
    assumptions: str
    source: str

    def numpy(self) -> Callable[..., dict[str, np.ndarray]]:
        """``f(*, lr, weight_decay, grad_norm=1.0, momentum=0.0, beta1=0.9, beta2=0.999,
        dim=None) -> {"norm_sq", "effective_lr", "angular_update", "approach_rate"}``,
        broadcasting over array arguments (``approach_rate`` is NaN where not derived).
        ``beta2`` enters Lion's forms only; the Adam family's are its ``beta2 -> 1`` limit.
        ``dim`` is required where the forms depend on it (the Adam family, Lion). Lambdified once per equilibrium."""
        return _numpy_form(self)


_SYMBOLS = (alpha, lam, g, mu, beta1, beta2, d)


def _validated(
    optimizer: str, *, lr, weight_decay, grad_norm, momentum, beta1_value, beta2_value, dim,
    needs_dim: bool,
):
    """The arguments of :data:`_SYMBOLS` as float arrays, or a ``ValueError`` naming the culprit."""
    properties = Optimizer(optimizer).properties
    lr_array = checks.positive("lr", lr)
    wd_array = checks.positive("weight_decay", weight_decay)
    checks.broadcast({"lr": lr_array, "weight_decay": wd_array, "grad_norm": grad_norm,
                      "momentum": momentum, "dim": dim})
    if properties.shrinks(properties.decay):
        checks.decay_factor(lr_array, wd_array)
    momentum_array = checks.unit_interval("momentum", momentum)
    if not properties.uses_momentum and np.any(momentum_array != 0):
        checks.fail("momentum", momentum, f"0 for {optimizer!r} (momentum SGD is 'sgdm')")
    beta2_array = checks.unit_interval("beta2", beta2_value)
    dim_array = np.asarray(np.nan)
    if needs_dim:
        if dim is None or np.any(np.asarray(dim) != np.round(dim)):
            checks.fail("dim", dim, f"an integer >= 2 for {optimizer!r}")
        dim_array = checks.in_interval("dim", dim, 2.0)
    return (lr_array, wd_array, checks.positive("grad_norm", grad_norm), momentum_array,
            checks.unit_interval("beta1", beta1_value), beta2_array, dim_array)


@cache
def _numpy_form(equilibrium: Equilibrium) -> Callable[..., dict[str, np.ndarray]]:
    approach = sp.nan if equilibrium.approach_rate is None else equilibrium.approach_rate
    expressions = {
        "norm_sq": equilibrium.norm_sq,
        "effective_lr": equilibrium.effective_lr,
        "angular_update": equilibrium.angular_update,
        "approach_rate": approach,
    }
    functions = {key: sp.lambdify(_SYMBOLS, e, "numpy") for key, e in expressions.items()}
    needs_dim = any(d in sp.sympify(e).free_symbols for e in expressions.values())

    def evaluate(
        *, lr, weight_decay, grad_norm=1.0, momentum=0.0, beta1=0.9, beta2=0.999, dim=None
    ):
        args = _validated(
            equilibrium.optimizer,
            lr=lr,
            weight_decay=weight_decay,
            grad_norm=grad_norm,
            momentum=momentum,
            beta1_value=beta1,
            beta2_value=beta2,
            dim=dim,
            needs_dim=needs_dim,
        )
        shape = np.broadcast_shapes(*(a.shape for a in args))
        return {
            key: np.broadcast_to(np.asarray(f(*args), dtype=float), shape).copy()
            for key, f in functions.items()
        }

    return evaluate


_MEAN_FIELD_ASSUMPTIONS = (
    "scale-invariant w (gradient orthogonal to w, norm g/||w||); gradient direction uniform in "
    "the tangent space and independent across steps; mean field E[g^2/||w||^2] = g^2/E||w||^2"
)
_ADAPTIVE_ASSUMPTIONS = (
    _MEAN_FIELD_ASSUMPTIONS + "; v_hat converged and isotropic, E||grad||^2/d per coordinate "
    "(beta2 -> 1 with 1/(1-beta2) << 1/(alpha lam), so v follows ||w||); eps -> 0; late times "
    "(bias corrections -> 1)"
)

_PER_COORDINATE = (
    "the decay term is divided by the per-coordinate sqrt(v_hat_i), whose true noise part is "
    "(g^2/x)(1 - w_hat_i^2)/(d - 1), not the isotropic g^2/(d x): this and the fluctuations of "
    "v give O(1/d) relative corrections (about 1% at d = 32 on a sphere simulation)"
)

_CLASSIC: Mapping[str, Equilibrium] = MappingProxyType(
    {
        "sgd": Equilibrium(
            optimizer="sgd",
            norm_sq=WD_NORM_SQ,
            effective_lr=WD_EFFECTIVE_LR,
            angular_update=sp.acos(1 - alpha * lam),
            approach_rate=WD_APPROACH_RATE,
            exact=True,
            assumptions="scale-invariant w (gradient orthogonal to w, norm g/||w||); the norm "
            "recurrence is then deterministic and exact for any gradient directions",
            source="001 Eq. (23)-(25), Sec. 5.1; theory.equilibrium",
        ),
        "sgdm": Equilibrium(
            optimizer="sgdm",
            norm_sq=SGDM_NORM_SQ,
            effective_lr=SGDM_EFFECTIVE_LR,
            angular_update=sp.acos(SGDM_COS_ANGLE),
            approach_rate=dominant_root(SGDM_TRACE, mu),
            exact=True,
            assumptions=_MEAN_FIELD_ASSUMPTIONS + "; torch SGD momentum (dampening 0, no "
            "Nesterov), coupled weight decay; exact for the mean-field recurrence",
            source="001 Eq. (23)-(25) with momentum; identities sgdm_*",
        ),
        "adamw": Equilibrium(
            optimizer="adamw",
            norm_sq=ADAMW_NORM_SQ,
            effective_lr=ADAMW_EFFECTIVE_LR,
            angular_update=sp.acos(ADAMW_COS_ANGLE),
            approach_rate=dominant_root(ADAMW_TRACE, ADAMW_DET),
            exact=True,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; decoupled decay w <- (1 - alpha lam) w; exact "
            "for the mean-field recurrence in these limits",
            source="001 Sec. 2 (Adam), Sec. 5 (AdamW); identities adamw_*, adam_update_size",
        ),
        "adam": Equilibrium(
            optimizer="adam",
            norm_sq=ADAM_NORM_SQ,
            effective_lr=ADAM_EFFECTIVE_LR,
            angular_update=sp.acos(ADAM_COS_ANGLE),
            approach_rate=ADAM_APPROACH_RATE,
            exact=False,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; coupled L2 (grad + lam w, also inside v_hat); "
            "leading order in eps = (alpha^2 d lam/(4 g))^(2/3), next term "
            "x* = A(1 + (2r-1) eps/3) with r = (1-beta1)/(1+beta1); the exact mean-field balance "
            "is a quintic in x; the approach rate's next term is relatively O(eps/(1-beta1)^2); "
            + _PER_COORDINATE,
            source="001 Sec. 2 (Adam), Sec. 5 (AdamW paragraph); identities adam_l2_*",
        ),
        "rmsprop": Equilibrium(
            optimizer="rmsprop",
            norm_sq=ADAM_NORM_SQ,
            effective_lr=ADAM_EFFECTIVE_LR,
            angular_update=sp.acos(ADAM_COS_ANGLE.subs(beta1, 0)),
            approach_rate=ADAM_APPROACH_RATE,
            exact=False,
            assumptions=_ADAPTIVE_ASSUMPTIONS + "; torch RMSprop with smoothing constant beta2 "
            "(torch's alpha), no momentum, no bias correction (irrelevant at late times), coupled "
            "L2; leading order in eps = (alpha^2 d lam/(4 g))^(2/3), next term "
            "x* = A(1 + eps/3); beta1 is not used; " + _PER_COORDINATE,
            source="001 Sec. 2 (RMSprop); identities adam_l2_*, "
            "rmsprop_approach_rate_leading_order",
        ),
    }
)


def _beyond(name: str) -> Equilibrium:
    """Nesterov SGD's, Muon's or Lion's closed forms, derived by SymPy."""
    return Equilibrium(
        optimizer=name,
        norm_sq=beyond.norm_sq(name),
        effective_lr=beyond.effective_lr(name),
        angular_update=sp.acos(beyond.cos_angle(name)),
        approach_rate=beyond.approach_rate(name),
        exact=name == "nesterov",
        assumptions=_MEAN_FIELD_ASSUMPTIONS + {
            "nesterov": "; torch SGD(nesterov=True), coupled weight decay; exact for the "
            "mean-field recurrence (the approach rate: the adiabatic slope, buffer relaxed)",
            "muon": "; torch Muon on a 1 x d weight (exact polar factor s/||s||), decoupled "
            "decay; the step's correlations at the stationary ||s||, the buffer relaxed "
            "(1/(1-mu) << 1/(alpha lam))",
            "lion": "; Lion's sign step of size alpha sqrt(d), decoupled decay; its "
            "correlations by Bussgang's gain sqrt(2/pi) at the stationary ||s|| (d large), "
            "the buffer relaxed (1/(1-beta2) << 1/(alpha lam))"}[name],
        source=f"theory.lion_muon_nesterov; identities {name}_*, scale_free_*",
    )


class _BuiltOnUse(Mapping[str, Equilibrium]):
    """A read-only mapping whose values are built at their first use and kept: deriving the
    closed forms of Nesterov SGD, Muon and Lion takes SymPy seconds, which importing this module
    (and every page of the explorer) should not pay."""

    def __init__(self, ready: Mapping[str, Equilibrium],
                 builders: Mapping[str, Callable[[], Equilibrium]]) -> None:
        self._values = {name: (lambda e=e: e) for name, e in ready.items()}
        self._values.update({name: cache(build) for name, build in builders.items()})

    def __getitem__(self, name: str) -> Equilibrium:
        return self._values[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


EQUILIBRIA: Mapping[str, Equilibrium] = _BuiltOnUse(
    _CLASSIC, {name: partial(_beyond, name) for name in beyond.OPTIMIZERS})
"""Equilibrium closed forms by optimizer name (``"sgd"``, ``"sgdm"``, ``"adam"``, ``"adamw"``,
``"rmsprop"``, ``"nesterov"``, ``"muon"``, ``"lion"``)."""

ESTIMATORS: Mapping[str, str] = MappingProxyType({
    "norm_sq": "E_k ||w_k||^2 of one scale-invariant unit (a row of a weight a normalization "
    "follows; a whole layer for layer norm): its time average over the settled steps",
    "effective_lr": "lr / (E ||w||^2)^(p/2), p the optimizer's effective-LR power (2 for SGD "
    "and momentum SGD, 1 for the Adam family), E over the settled steps and a layer's units: "
    "the effective LR at the mean squared norm, not the mean of per-step or per-unit "
    "effective LRs",
    "angular_update": "arccos(E_k <w_k, w_{k+1}> / E_k ||w_k||^2): a ratio of sums over the "
    "settled steps (and a layer's units), not the mean of per-step angles; measured as "
    "arccos(E<w_k, w_{k+1}> / sqrt(E||w_k||^2 E||w_{k+1}||^2)), equal at a stationary norm",
    "grad_norm": "g = sqrt(E_k ||grad J(w_hat_k)||^2) of one unit: the norm balances the mean "
    "of g^2 (001 Eq. 23: each step adds alpha^2 g_k^2 / ||w||^2), not the square of its mean",
})
"""Which expectation of what each closed form of :data:`EQUILIBRIA` is about: the estimators a
measurement must use to be compared with it (:mod:`scalewise.validation.estimators`)."""

NO_EQUILIBRIUM: Mapping[str, str] = MappingProxyType(
    {
        "adagrad": "the accumulator f_k = sum of squared gradients grows at least by 2 g lam / d "
        "per step and coordinate (identity adagrad_accumulator_grows_linearly; without weight "
        "decay the norm itself grows), so the step alpha/sqrt(f_k) decays as O(1/sqrt(k)): the "
        "norm, effective LR and angular update keep drifting and have no stationary value",
    }
)
"""Optimizers without a stationary equilibrium, and why."""
