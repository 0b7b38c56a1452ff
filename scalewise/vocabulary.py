"""The optimizer names every layer shares, and one table of their properties.

:class:`Optimizer` names the update rules of ``torch.optim`` that theory, the simulators, the
training code and the explorer speak about, plus the project's own K-FAC and the quasi-diagonal
and diagonal preconditioners of 001 Sec. 3.1 (trained by :mod:`scalewise.models` only). :data:`PROPERTIES` says, once, what each one is: which
preconditioner divides its step, whether its own weight decay is coupled (an L2 term in the
gradient) or decoupled, which hyperparameters it reads and their defaults, its effective
learning rate's form, whether theory has its equilibrium in closed form and whether the
simulators run it.

>>> Optimizer.parse("adamw").properties.decay
<Decay.DECOUPLED: 'decoupled'>
>>> [o.value for o in Optimizer if o.properties.simulated]
['sgd', 'sgdm', 'adam', 'adamw', 'rmsprop', 'adagrad']
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from scalewise import checks


class Preconditioner(str, Enum):
    """What divides the gradient in the step: nothing (SGD), a per-coordinate second moment
    of the gradient (Adam, RMSprop, Adagrad: 001 Sec. 2), K-FAC's Kronecker factors (003), or
    running statistics of each layer's inputs (the quasi-diagonal and diagonal preconditioners
    of 001 Sec. 3.1, Eq. 10)."""

    IDENTITY = "identity"
    DIAGONAL = "diagonal"
    KRONECKER = "kronecker"
    INPUT_STATISTICS = "input statistics"


class Decay(str, Enum):
    """How an optimizer's own weight decay enters: ``coupled``, an L2 term ``lambda w`` in the
    gradient (torch's ``weight_decay`` of SGD, Adam, RMSprop, Adagrad), or ``decoupled``, the
    shrink ``w <- (1 - alpha lambda) w`` of 001 Eq. (22) (AdamW)."""

    COUPLED = "coupled"
    DECOUPLED = "decoupled"


class Equilibrium(str, Enum):
    """What theory derives of an optimizer's weight-decay equilibrium
    (:mod:`scalewise.theory.equilibria`)."""

    EXACT = "exact"
    LEADING_ORDER = "leading order"
    NONE = "none"


@dataclass(frozen=True)
class Properties:
    """One optimizer's row of :data:`PROPERTIES`.

    ``effective_lr_power`` is ``p`` in the effective learning rate ``lr / ||w||^p`` of a
    scale-invariant weight: 2 where the step scales with the gradient (SGD, 001 Sec. 4.3; also
    the input-statistics preconditioners, whose statistics do not scale with the weight), 1
    where a diagonal preconditioner removes the gradient's scale (the Adam family, whose step
    size does not depend on ``||w||``), 0 for K-FAC, whose step is invariant to the weight's
    scale up to damping (001 Sec. 5.2)."""

    label: str
    torch_class: str
    preconditioner: Preconditioner
    decay: Decay
    hyperparameters: frozenset[str]
    default_momentum: float
    equilibrium: Equilibrium
    simulated: bool

    @property
    def adaptive(self) -> bool:
        """Divides each coordinate by a running second moment (001 Sec. 2)."""
        return self.preconditioner is Preconditioner.DIAGONAL

    @property
    def effective_lr_power(self) -> int:
        return {Preconditioner.IDENTITY: 2, Preconditioner.DIAGONAL: 1,
                Preconditioner.KRONECKER: 0,
                Preconditioner.INPUT_STATISTICS: 2}[self.preconditioner]

    @property
    def uses_momentum(self) -> bool:
        return "momentum" in self.hyperparameters

    def shrinks(self, decay: Decay) -> bool:
        """Does a step with weight decay of form ``decay`` multiply ``w`` by
        ``1 - lr weight_decay``? Always when decoupled; when coupled, only where nothing
        preconditions the L2 term (SGD, momentum SGD). Then :func:`checks.decay_factor`
        applies."""
        return decay is Decay.DECOUPLED or self.preconditioner is Preconditioner.IDENTITY


class Optimizer(str, Enum):
    """The optimizers, by the names ``torch.optim``'s users know them by."""

    SGD = "sgd"
    SGDM = "sgdm"
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"
    ADAGRAD = "adagrad"
    KFAC = "kfac"
    QUASI_DIAGONAL = "quasi-diagonal"
    DIAGONAL = "diagonal"

    @classmethod
    def parse(cls, name: Any, *, field: str = "optimizer",
              simulated: bool = False) -> Optimizer:
        """The member named ``name`` (a member or its value); with ``simulated``, only those
        the simulators run. ``field`` names the argument in the error."""
        allowed = [o for o in cls if o.properties.simulated or not simulated]
        by_value = {o.value: o for o in allowed}
        checks.one_of(field, name, [*by_value, *allowed])
        return by_value.get(name, name) if isinstance(name, str) else name

    @property
    def properties(self) -> Properties:
        return PROPERTIES[self]

    @property
    def label(self) -> str:
        return PROPERTIES[self].label


_ADAM_HYPER = frozenset({"betas", "eps"})

PROPERTIES: MappingProxyType[Optimizer, Properties] = MappingProxyType({
    Optimizer.SGD: Properties(
        "SGD", "torch.optim.SGD", Preconditioner.IDENTITY, Decay.COUPLED, frozenset(), 0.0,
        Equilibrium.EXACT, simulated=True),
    Optimizer.SGDM: Properties(
        "momentum SGD", "torch.optim.SGD", Preconditioner.IDENTITY, Decay.COUPLED,
        frozenset({"momentum"}), 0.9, Equilibrium.EXACT, simulated=True),
    Optimizer.ADAM: Properties(
        "Adam (L2)", "torch.optim.Adam", Preconditioner.DIAGONAL, Decay.COUPLED, _ADAM_HYPER,
        0.0, Equilibrium.LEADING_ORDER, simulated=True),
    Optimizer.ADAMW: Properties(
        "AdamW", "torch.optim.AdamW", Preconditioner.DIAGONAL, Decay.DECOUPLED, _ADAM_HYPER,
        0.0, Equilibrium.EXACT, simulated=True),
    # theory's and the simulators' RMSprop has no momentum, so neither has a run's
    Optimizer.RMSPROP: Properties(
        "RMSprop", "torch.optim.RMSprop", Preconditioner.DIAGONAL, Decay.COUPLED,
        frozenset({"rmsprop_alpha", "eps"}), 0.0, Equilibrium.LEADING_ORDER, simulated=True),
    Optimizer.ADAGRAD: Properties(
        "Adagrad", "torch.optim.Adagrad", Preconditioner.DIAGONAL, Decay.COUPLED,
        frozenset({"eps"}), 0.0, Equilibrium.NONE, simulated=True),
    # K-FAC's damped step (003; 001 Sec. 5.2), without momentum by default as theory states it
    Optimizer.KFAC: Properties(
        "K-FAC", "scalewise.models.kfac.KFAC", Preconditioner.KRONECKER, Decay.COUPLED,
        frozenset({"momentum"}), 0.0, Equilibrium.NONE, simulated=False),
    # 001 Eq. (9)-(10): gradient descent in the reparameterized coordinates, and the diagonal
    # of the same curvature; their hyperparameters are optimizer.statistics
    Optimizer.QUASI_DIAGONAL: Properties(
        "quasi-diagonal", "scalewise.models.quasi_diagonal.QuasiDiagonal",
        Preconditioner.INPUT_STATISTICS, Decay.COUPLED, frozenset(), 0.0, Equilibrium.NONE,
        simulated=False),
    Optimizer.DIAGONAL: Properties(
        "diagonal second moment", "scalewise.models.quasi_diagonal.DiagonalSecondMoment",
        Preconditioner.INPUT_STATISTICS, Decay.COUPLED, frozenset(), 0.0, Equilibrium.NONE,
        simulated=False),
})
"""The properties of every :class:`Optimizer`."""
