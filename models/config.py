"""Typed, frozen configuration of a training run: model, data, optimizer, probes, schedule.

A run is reproducible from its :class:`TrainConfig` alone (stored as JSON with the run). Every
choice is a ``str`` enum so that configs round-trip through JSON and the CLI unchanged; plain
strings are accepted and converted (``OptimizerConfig(name="adam")``).

Every config validates itself on construction: a bad value raises ``ValueError`` naming the field
by its dotted path in :class:`TrainConfig` (``optimizer.lr``) and what is allowed, so a bad run
fails before anything is built. The one check left to loading is whether the files of a dataset
on disk exist (:func:`models.data.load_dataset`), so that a config can be read on a machine that
lacks the data. (The module runs past 500 lines because every config, its validation and its
JSON form belong together: one reading shows all a run depends on and what is allowed. Named
starting points are in :mod:`models.presets`.)

>>> TrainConfig(optimizer=OptimizerConfig(name="adamw", lr=1e-3)).optimizer.name
<Optimizer.ADAMW: 'adamw'>
>>> OptimizerConfig(lr=-1.0)
Traceback (most recent call last):
...
ValueError: optimizer.lr = -1.0 is invalid; allowed: a finite number > 0
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from scalewise import checks
from scalewise.vocabulary import Decay, Optimizer, Preconditioner


class Arch(str, Enum):
    MLP = "mlp"
    VGG = "vgg"
    RESNET = "resnet"


class Norm(str, Enum):
    """Normalization of each hidden layer (never of the output layer): batch norm (001 Eq. 11),
    layer norm (001 Eq. 21), weight norm (001 Eq. 20), or batch centering ``s - mean_batch(s)``
    (001 Eq. 13: batch norm without the division by the standard deviation)."""

    NONE = "none"
    BATCH = "batch"
    LAYER = "layer"
    WEIGHT = "weight"
    CENTER = "center"


class NormPosition(str, Enum):
    """Where a hidden layer's normalization sits: before its activation (001 Sec. 4.2's choice,
    the default) or after it."""

    BEFORE = "before"
    AFTER = "after"


class Precision(str, Enum):
    """The floating-point type of a run's network and inputs."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"


class WeightDecayMode(str, Enum):
    """``l2``: lambda*w added to the gradient (so preconditioned by adaptive methods);
    ``decoupled``: the literal shrink w <- (1 - alpha*lambda) w (001 Eq. 22)."""

    NONE = "none"
    L2 = "l2"
    DECOUPLED = "decoupled"


class WeightDecayPlacement(str, Enum):
    """Which parameters are decayed: the paper's (004) wd-conv / wd-fc / wd-all."""

    NORMALIZED = "normalized"
    OUTPUT = "output"
    ALL = "all"


class Curvature(str, Enum):
    """K-FAC's curvature: the Fisher (targets sampled from the model) or the Gauss-Newton."""

    FISHER = "fisher"
    GAUSS_NEWTON = "gauss-newton"


class Dataset(str, Enum):
    TEACHER = "teacher"
    DIGITS = "digits"
    CIFAR10 = "cifar10"
    MNIST = "mnist"


class Schedule(str, Enum):
    CONSTANT = "constant"
    STEP = "step"
    EXPONENTIAL = "exponential"
    WARMUP_COSINE = "warmup-cosine"
    LINEAR = "linear"
    WARMUP_STABLE_DECAY = "warmup-stable-decay"


IMAGE_DATASETS = frozenset({Dataset.DIGITS, Dataset.CIFAR10, Dataset.MNIST})
DISK_DATASETS = frozenset({Dataset.CIFAR10, Dataset.MNIST})
KFAC_NORMS = frozenset({Norm.NONE, Norm.BATCH, Norm.LAYER})
"""Norms K-FAC supports: it preconditions the ``weight`` of Linear and Conv2d layers, which
weight norm replaces by a direction and a gain."""
POSITIONED_NORMS = frozenset({Norm.BATCH, Norm.LAYER, Norm.CENTER})
"""Norms that may follow the activation (``model.norm_position = after``): those that are a
module of their own (weight norm reparameterizes the layer's weight)."""

_MAX_LOG_FACTOR = 700.0  # |log| of the largest and smallest schedule factors, within float64
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A run id: it names the run's checkpoint file, so no separators and no leading dot or dash."""


# ------------------------------------------------------------------------------ validation

def _coerce_enum(config: Any, name: str, kind: type[Enum], *, optional: bool = False) -> None:
    """Replace the string in field ``name`` of a frozen ``config`` by its ``kind`` member."""
    value = getattr(config, name)
    by_value = {m.value: m for m in kind}
    checks.one_of(config.path(name), value, [*by_value, *kind], optional=optional)
    object.__setattr__(config, name, by_value.get(value, value))


def _check_int(config: Any, name: str, minimum: int, *, optional: bool = False) -> None:
    checks.integer(config.path(name), getattr(config, name), minimum, optional=optional)


def _check_float(config: Any, name: str, low: float, high: float = math.inf, *,
                 low_open: bool = False, high_open: bool = True) -> None:
    """``value`` must be a finite number in the interval from ``low`` to ``high``."""
    checks.number(config.path(name), getattr(config, name), low, high, low_open=low_open,
                  high_open=high_open)


class _Validated:
    """Mixin giving each config its dotted path inside :class:`TrainConfig` for messages."""

    PREFIX: ClassVar[str] = ""

    def path(self, name: str) -> str:
        return f"{self.PREFIX}{name}"


# ------------------------------------------------------------------------------ configs

@dataclass(frozen=True)
class ModelConfig(_Validated):
    """The network. Three options change the MLP's hidden layers for the experiments on
    internal covariate shift (001 Sec. 3-4):

    - ``norm_position``: the normalization before the ReLU (default) or after it;
    - ``knockout_spread``, ``knockout_shift``: the knock-out transform after each batch norm
      (001 Sec. 4.2, after Santurkar et al. 2018): in training, per batch and unit,
      ``a_j <- gamma_j a_j + m_j`` with ``gamma_j ~ U(1 - spread, 1 + spread)`` and
      ``m_j ~ N(0, shift^2)`` freshly drawn, re-introducing the shifted and rescaled
      statistics that batch norm removed; the identity (its mean) in evaluation;
    - ``input_shift``: a constant added to every input coordinate before the first layer
      (uncentered inputs, 001 Sec. 3), the first layer's bias initialized to compensate it
      (``b - W shift 1``) where it has one, so that networks differing only in
      ``input_shift`` compute the same function at initialization.

    ``invariant_init_scale`` multiplies the initial scale-invariant weights (those a
    normalization follows): by scale invariance the network computes the same function, from
    another weight norm (to start a run above or below its equilibrium norm).

    ``norm_eps`` is batch and layer norm's ``eps`` (``x / sqrt(var + eps)``; torch's default
    1e-5), which makes a normalized unit scale invariant only up to about ``eps / var``: a
    smaller one is a control for what it costs the theory of scale-invariant weights.
    """

    PREFIX: ClassVar[str] = "model."

    arch: Arch = Arch.MLP
    norm: Norm = Norm.BATCH
    width: int = 64
    depth: int = 2
    norm_position: NormPosition = NormPosition.BEFORE
    knockout_spread: float = 0.0
    knockout_shift: float = 0.0
    input_shift: float = 0.0
    invariant_init_scale: float = 1.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _coerce_enum(self, "arch", Arch)
        _coerce_enum(self, "norm", Norm)
        _coerce_enum(self, "norm_position", NormPosition)
        _check_int(self, "width", 1)
        _check_int(self, "depth", 1)
        _check_float(self, "knockout_spread", 0.0, 1.0)
        _check_float(self, "knockout_shift", 0.0)
        _check_float(self, "input_shift", -math.inf)
        _check_float(self, "invariant_init_scale", 0.0, low_open=True)
        _check_float(self, "norm_eps", 0.0, low_open=True)
        self._check_options()

    @property
    def knockout(self) -> bool:
        """Is the knock-out transform on (a nonzero spread or shift)?"""
        return self.knockout_spread > 0 or self.knockout_shift > 0

    def _check_options(self) -> None:
        """The hidden-layer options are the MLP's; the norm after the activation must be a
        module of its own; the knock-out follows a batch norm before the activation."""
        for name, default in (("norm_position", NormPosition.BEFORE), ("knockout_spread", 0.0),
                              ("knockout_shift", 0.0), ("input_shift", 0.0)):
            if self.arch is not Arch.MLP and getattr(self, name) != default:
                value = getattr(self, name)
                checks.fail(self.path(name), getattr(value, "value", value),
                            f"{getattr(default, 'value', default)} with model.arch = "
                            f"{self.arch.value!r} (an option of the mlp)")
        if self.norm_position is NormPosition.AFTER and self.norm not in POSITIONED_NORMS:
            checks.fail(self.path("norm_position"), self.norm_position.value,
                        f"before with model.norm = {self.norm.value!r} (after needs one of "
                        + ", ".join(sorted(n.value for n in POSITIONED_NORMS)) + ")")
        if self.knockout and (self.norm is not Norm.BATCH
                              or self.norm_position is not NormPosition.BEFORE):
            checks.fail(self.path("knockout_shift" if self.knockout_shift else "knockout_spread"),
                        self.knockout_shift or self.knockout_spread,
                        "0 unless model.norm = 'batch' before the activation (the knock-out "
                        "follows batch norm)")


@dataclass(frozen=True)
class DataConfig(_Validated):
    PREFIX: ClassVar[str] = "data."

    name: Dataset = Dataset.DIGITS
    root: str | None = None  # folder holding CIFAR-10 / MNIST files; unused otherwise
    batch_size: int = 128
    train_size: int | None = None  # None: the whole training split
    test_size: int | None = None

    def __post_init__(self) -> None:
        _coerce_enum(self, "name", Dataset)
        if isinstance(self.root, os.PathLike):
            object.__setattr__(self, "root", os.fspath(self.root))
        if self.name in DISK_DATASETS and not self.root:
            checks.fail(self.path("root"), self.root,
                  f"the folder holding the {self.name.value} files (nothing is downloaded)")
        if self.root is not None and not isinstance(self.root, str):
            checks.fail(self.path("root"), self.root, "a folder path (str) or None")
        _check_int(self, "batch_size", 1)
        _check_int(self, "train_size", 1, optional=True)
        _check_int(self, "test_size", 1, optional=True)


@dataclass(frozen=True)
class KFACConfig(_Validated):
    PREFIX: ClassVar[str] = "optimizer.kfac."

    curvature: Curvature = Curvature.GAUSS_NEWTON
    damping: float = 1e-3
    factor_decay: float = 0.95
    factor_interval: int = 1
    inverse_interval: int = 20

    def __post_init__(self) -> None:
        _coerce_enum(self, "curvature", Curvature)
        _check_float(self, "damping", 0.0)
        _check_float(self, "factor_decay", 0.0, 1.0)
        _check_int(self, "factor_interval", 1)
        _check_int(self, "inverse_interval", 1)


@dataclass(frozen=True)
class InputStatisticsConfig(_Validated):
    """The running input statistics of the ``quasi-diagonal`` and ``diagonal`` preconditioners
    (:mod:`models.quasi_diagonal`): ``decay`` of their moving averages and the ``damping``
    added to the variances or second moments they divide by."""

    PREFIX: ClassVar[str] = "optimizer.statistics."

    decay: float = 0.95
    damping: float = 1e-8

    def __post_init__(self) -> None:
        _check_float(self, "decay", 0.0, 1.0)
        _check_float(self, "damping", 0.0)


@dataclass(frozen=True)
class OptimizerConfig(_Validated):
    """The optimizer, its weight decay, schedule and step hooks (see :mod:`scalewise.models.optimizer_factory`).

    ``graft_direction`` makes the run AdaGraft (000 Algorithm 2): per parameter tensor, each
    step has the magnitude of the step of ``name`` and the direction of the step of
    ``graft_direction``, both computed from the same gradient and the same fields (``lr``,
    ``momentum``, ``betas``, ``eps``, ``rmsprop_alpha``). Decoupled decay is applied once, before
    the grafted step, so ``adamw`` on either side steps as ``adam`` does. K-FAC is not grafted.

    ``graft_norms_from`` names a run of the same store and model whose per-layer ``norm_sq``
    probes this run's scale-invariant layers are rescaled to after every step (norm grafting,
    004 Sec. 4.1, Fig. 4); it excludes ``renormalize``, which also sets those norms.
    """

    PREFIX: ClassVar[str] = "optimizer."
    DERIVED_DEFAULTS: ClassVar[dict[str, tuple[str, ...]]] = {
        "momentum": ("name", "graft_direction")}
    """Fields whose default (``None``) is derived from others: :func:`override` derives them
    anew when those change and they are not given."""

    name: Optimizer = Optimizer.SGD
    lr: float = 0.1
    momentum: float | None = None  # sgdm and kfac; None: the optimizer's default (vocabulary)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    rmsprop_alpha: float = 0.99  # RMSprop's smoothing constant (torch's alpha)
    weight_decay: float = 0.0
    wd_mode: WeightDecayMode = WeightDecayMode.NONE
    wd_placement: WeightDecayPlacement = WeightDecayPlacement.ALL
    kfac: KFACConfig = field(default_factory=KFACConfig)
    statistics: InputStatisticsConfig = field(default_factory=InputStatisticsConfig)
    renormalize: bool = False  # rescale each scale-invariant unit to unit norm after each step
    graft_direction: Optimizer | None = None  # AdaGraft: name's magnitude, this direction
    graft_norms_from: str | None = None  # norm grafting: the id of the run whose norms to take
    schedule: Schedule = Schedule.CONSTANT
    milestones: tuple[int, ...] = ()  # step decay: multiply lr by gamma at these steps
    gamma: float = 0.1  # step decay factor, or per-step factor of the exponential schedule
    warmup_steps: int = 0
    decay_fraction: float = 0.2  # warmup-stable-decay: the share of steps spent decaying
    corrected_decay: bool = False  # Defazio's decay: weight_decay * lr_t / lr at every step

    def __post_init__(self) -> None:
        _coerce_enum(self, "name", Optimizer)
        _coerce_enum(self, "wd_mode", WeightDecayMode)
        _coerce_enum(self, "wd_placement", WeightDecayPlacement)
        _coerce_enum(self, "schedule", Schedule)
        _coerce_enum(self, "graft_direction", Optimizer, optional=True)
        _check_float(self, "lr", 0.0, low_open=True)
        self._resolve_momentum()
        _check_float(self, "eps", 0.0, low_open=True)
        _check_float(self, "rmsprop_alpha", 0.0, 1.0, low_open=True)
        _check_float(self, "weight_decay", 0.0)
        _check_float(self, "gamma", 0.0, low_open=True)
        _check_int(self, "warmup_steps", 0)
        _check_float(self, "decay_fraction", 0.0, 1.0, low_open=True, high_open=False)
        self._check_betas()
        self._check_milestones()
        self._check_weight_decay()
        self._check_corrected_decay()
        if not isinstance(self.renormalize, bool):
            checks.fail(self.path("renormalize"), self.renormalize, "True or False")
        self._check_grafting()

    def _resolve_momentum(self) -> None:
        """``None`` becomes the default of whichever optimizer of the run uses momentum
        (:data:`scalewise.vocabulary.PROPERTIES`); a nonzero momentum for a run none of whose
        optimizers uses it is refused rather than ignored."""
        users = [o for o in (self.name, self.graft_direction)
                 if o is not None and o.properties.uses_momentum]
        if self.momentum is None:
            value = users[0].properties.default_momentum if users else 0.0
            object.__setattr__(self, "momentum", value)
        _check_float(self, "momentum", 0.0, 1.0)
        if self.momentum and not users:
            checks.fail(self.path("momentum"), self.momentum,
                        f"0 or None for optimizer.name = {self.name.value!r} (momentum is used by "
                        + ", ".join(o.value for o in Optimizer if o.properties.uses_momentum)
                        + ")")

    def _check_betas(self) -> None:
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            checks.fail(self.path("betas"), self.betas, "two numbers in [0, 1)")
        object.__setattr__(self, "betas", betas)

    def _check_milestones(self) -> None:
        steps = tuple(self.milestones)
        ints = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps)
        if not ints or list(steps) != sorted(set(steps)):
            checks.fail(self.path("milestones"), self.milestones, "strictly increasing integers >= 1")
        object.__setattr__(self, "milestones", steps)

    def _check_corrected_decay(self) -> None:
        """The corrected decay rescales a decay that shrinks the weights by ``1 - lr wd``
        (decoupled, or SGD's L2), with the configured ``lr`` as the schedule's peak; grafted
        and preconditioned decays are refused."""
        if not isinstance(self.corrected_decay, bool):
            checks.fail(self.path("corrected_decay"), self.corrected_decay, "True or False")
        if not self.corrected_decay:
            return
        kind = self.name.properties.preconditioner
        if (self.weight_decay == 0 or self.graft_direction is not None
                or kind in (Preconditioner.KRONECKER, Preconditioner.INPUT_STATISTICS)
                or not self.name.properties.shrinks(
                    Decay.DECOUPLED if self.wd_mode is WeightDecayMode.DECOUPLED
                    else Decay.COUPLED)):
            checks.fail(self.path("corrected_decay"), self.corrected_decay,
                        "False unless optimizer.weight_decay > 0 shrinks the weights (a "
                        "decoupled decay, or L2 on SGD, momentum SGD or Nesterov SGD) and "
                        "nothing is grafted")

    def _check_grafting(self) -> None:
        direction = self.graft_direction
        if direction is not None and Optimizer.KFAC in (self.name, direction):
            checks.fail(self.path("graft_direction"), direction.value,
                  "an optimizer other than kfac, and None with optimizer.name = 'kfac' "
                  "(K-FAC is not grafted)")
        statistics = [o for o in (self.name, direction) if o is not None
                      and o.properties.preconditioner is Preconditioner.INPUT_STATISTICS]
        if direction is not None and statistics:
            checks.fail(self.path("graft_direction"), direction.value,
                        f"None with {statistics[0].value} (its steps are not grafted)")
        if direction is not None and direction is self.name:
            checks.fail(self.path("graft_direction"), direction.value,
                  f"an optimizer other than optimizer.name = {self.name.value!r} (grafting an "
                  "optimizer onto itself is that optimizer), or None")
        source = self.graft_norms_from
        if source is not None and not (isinstance(source, str) and RUN_ID.fullmatch(source)):
            checks.fail(self.path("graft_norms_from"), source, "a run id (letters, digits, '.', '_' "
                  "and '-') or None")
        if source is not None and self.renormalize:
            checks.fail(self.path("graft_norms_from"), source,
                  "None with optimizer.renormalize (both set the norms of the normalized layers)")

    def _check_weight_decay(self) -> None:
        """A decay needs a mode; an optimizer whose own decay is decoupled (AdamW) takes no L2;
        and where the decay shrinks the weights by ``1 - lr weight_decay`` (decoupled, or L2
        without a preconditioner) that factor must stay positive (001 Eq. 22)."""
        if self.weight_decay > 0 and self.wd_mode is WeightDecayMode.NONE:
            checks.fail(self.path("wd_mode"), self.wd_mode.value,
                        "l2 or decoupled when optimizer.weight_decay > 0")
        if (self.name.properties.preconditioner is Preconditioner.INPUT_STATISTICS
                and self.wd_mode is not WeightDecayMode.NONE):
            checks.fail(self.path("wd_mode"), self.wd_mode.value,
                        f"none with optimizer.name = {self.name.value!r} (it has no weight decay)")
        if self.wd_mode is WeightDecayMode.NONE:
            return
        decay = Decay.COUPLED if self.wd_mode is WeightDecayMode.L2 else Decay.DECOUPLED
        optimizers = [o for o in (self.name, self.graft_direction) if o is not None]
        decoupled = [o.value for o in optimizers if o.properties.decay is Decay.DECOUPLED]
        if decoupled and decay is Decay.COUPLED:
            checks.fail(self.path("wd_mode"), self.wd_mode.value,
                        f"decoupled or none with {decoupled[0]} (its decay is decoupled; its "
                        "coupled twin takes l2, e.g. adam for adamw)")
        if any(o.properties.shrinks(decay) for o in optimizers):
            checks.decay_factor(self.lr, self.weight_decay, name=self.path("weight_decay"),
                                context=f"(lr = {self.lr:g})")


@dataclass(frozen=True)
class TrainConfig(_Validated):
    """Everything a run depends on; :meth:`run_id` hashes it, so equal configs name one run.
    The ``*_every`` intervals count optimizer steps (see :mod:`models.training`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: int = 500
    seed: int = 0
    device: str = "auto"  # "auto": CUDA when present, else CPU
    probe_every: int = 1  # cheap per-layer probes (sums of the unit statistics); 0: never
    unit_probe_every: int = 0  # per-unit statistics (models.probes.UNIT_STATISTICS); 0: never
    unit_sample: int | None = 512  # units per layer recorded at most (an even spread); None: all
    costly_probe_every: int = 100  # Jacobian / Gauss-Newton / trace probes; 0: never
    eval_every: int = 100  # train loss, test loss and accuracy; 0: only at the start and end
    checkpoint_every: int = 100  # 0: only at the end
    precision: Precision = Precision.FLOAT32  # of the network and the inputs
    name: str = ""

    def __post_init__(self) -> None:
        for part, kind in (("model", ModelConfig), ("data", DataConfig),
                           ("optimizer", OptimizerConfig)):
            if not isinstance(getattr(self, part), kind):
                checks.fail(part, getattr(self, part), f"a {kind.__name__}")
        _check_int(self, "steps", 1)
        _check_int(self, "seed", 0)
        for every in ("probe_every", "unit_probe_every", "costly_probe_every", "eval_every",
                      "checkpoint_every"):
            _check_int(self, every, 0)
        _check_int(self, "unit_sample", 1, optional=True)
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            checks.fail("device", self.device, "auto, cpu, cuda, cuda:<index> or mps")
        if not isinstance(self.name, str):
            checks.fail("name", self.name, "a string")
        _coerce_enum(self, "precision", Precision)
        self._check_combination()

    def _check_combination(self) -> None:
        if self.model.arch is not Arch.MLP and self.data.name not in IMAGE_DATASETS:
            checks.fail("model.arch", self.model.arch.value,
                  f"mlp for data.name = {self.data.name.value!r} (vector inputs); "
                  "vgg and resnet need images (digits, mnist, cifar10)")
        if (self.optimizer.schedule is Schedule.WARMUP_COSINE
                and self.optimizer.warmup_steps >= self.steps):
            checks.fail("optimizer.warmup_steps", self.optimizer.warmup_steps,
                  f"an integer < steps ({self.steps}) with the warmup-cosine schedule")
        if (self.optimizer.schedule is Schedule.EXPONENTIAL
                and abs((self.steps - 1) * math.log(self.optimizer.gamma)) > _MAX_LOG_FACTOR):
            checks.fail("optimizer.gamma", self.optimizer.gamma,
                  f"a factor whose power gamma**{self.steps - 1} (the last step's) is a normal "
                  "float, so the learning rate neither overflows nor vanishes")
        if self.optimizer.graft_norms_from is not None and self.model.norm is Norm.NONE:
            checks.fail("optimizer.graft_norms_from", self.optimizer.graft_norms_from,
                  "None with model.norm = 'none' (no normalized layer to graft norms onto)")
        if (self.optimizer.name.properties.preconditioner is Preconditioner.INPUT_STATISTICS
                and (self.model.arch is not Arch.MLP or self.model.norm is not Norm.NONE)):
            checks.fail("optimizer.name", self.optimizer.name.value,
                        "an optimizer other than quasi-diagonal and diagonal unless model.arch = "
                        "'mlp' and model.norm = 'none' (they precondition Linear layers with a "
                        "bias)")
        if self.optimizer.name is Optimizer.KFAC and self.model.norm not in KFAC_NORMS:
            checks.fail("model.norm", self.model.norm.value,
                  "none, batch or layer with optimizer.name = 'kfac' (K-FAC preconditions the "
                  "weights of Linear and Conv2d layers; weight norm reparameterizes them)")

    def to_json(self) -> str:
        """The config as JSON; fields added since runs were first stored are left out at their
        defaults (:data:`LATER_FIELDS`), so a stored config keeps its JSON and its run id."""
        data = dataclasses.asdict(self)
        for path, default in LATER_FIELDS.items():
            *parents, leaf = path.split(".")
            node = data
            for part in parents:
                node = node[part]
            if node[leaf] == default:
                del node[leaf]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return from_dict(cls, _without_unused_momentum(json.loads(text)))

    def run_id(self) -> str:
        """A stable id: the first 12 hex digits of the SHA-256 of :meth:`to_json`, so the same
        config always names the same run (and resumes it)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]


LATER_FIELDS: Mapping[str, Any] = {
    "model.norm_position": NormPosition.BEFORE, "model.knockout_spread": 0.0,
    "model.knockout_shift": 0.0, "model.input_shift": 0.0, "model.invariant_init_scale": 1.0,
    "model.norm_eps": 1e-5,
    "optimizer.statistics": dataclasses.asdict(InputStatisticsConfig()),
    "precision": Precision.FLOAT32, "unit_probe_every": 0, "unit_sample": 512,
    "optimizer.decay_fraction": 0.2, "optimizer.corrected_decay": False,
}
"""Fields (dotted paths) added after runs were first stored, with their defaults: at the
default they do not enter :meth:`TrainConfig.to_json`, which configs lacking them load back to."""


def _without_unused_momentum(data: dict[str, Any]) -> dict[str, Any]:
    """Stored configs once carried a momentum of 0.9 for every optimizer; where no optimizer of
    the run uses momentum it is dropped, so such runs load as what they trained."""
    optimizer = data.get("optimizer", {})
    names = [optimizer.get("name", Optimizer.SGD.value), optimizer.get("graft_direction")]
    uses = [Optimizer(n).properties.uses_momentum for n in names
            if n in {o.value for o in Optimizer}]
    if "momentum" in optimizer and not any(uses):
        optimizer.pop("momentum")
    return data


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Rebuild a (nested) config dataclass from plain JSON data; enums and tuples are converted
    by the configs themselves. Unknown keys are refused."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        checks.fail(prefix + unknown[0], data[unknown[0]],
              "one of the fields " + ", ".join(sorted(names)))
    kwargs = {}
    for name, value in data.items():
        if dataclasses.is_dataclass(hints[name]):
            value = from_dict(hints[name], value, f"{prefix}{name}.")
        kwargs[name] = value
    return cls(**kwargs)


def override(config: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``config`` with fields replaced by dotted path, validated again.

    >>> override(TrainConfig(), {"optimizer.lr": 0.5, "steps": 10}).optimizer.lr
    0.5
    """
    nested: dict[str, Any] = {}
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return _replace(config, nested, "")


def _replace(config: Any, nested: Mapping[str, Any], prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(config)}
    kwargs = {}
    for name, value in nested.items():
        if name not in names:
            checks.fail(prefix + name, value, "one of the fields " + ", ".join(sorted(names)))
        sub = getattr(config, name)
        if dataclasses.is_dataclass(sub) and isinstance(value, Mapping):
            value = _replace(sub, value, f"{prefix}{name}.")
        kwargs[name] = value
    for derived, sources in getattr(config, "DERIVED_DEFAULTS", {}).items():
        if derived not in kwargs and any(source in kwargs for source in sources):
            kwargs[derived] = None  # its default follows the changed fields: derive it anew
    return dataclasses.replace(config, **kwargs)
