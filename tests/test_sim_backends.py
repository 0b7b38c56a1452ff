"""The engines' implementations against each other: the compiled recurrence equals the NumPy loop
bit for bit; the compiled sphere kernel equals a NumPy replay of its own noise through
sim.update_rules step by step; its noise is standard normal; the NumPy, compiled and torch (CPU)
sphere engines agree in distribution; the fallback without numba is clean."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy import stats

from scalewise import sim
from scalewise.sim import compiled, recurrence
from scalewise.sim.sphere import random_unit_vectors
from scalewise.sim.update_rules import RULES, Hyper, OptimizerState, init_state, update
from scalewise.vocabulary import Decay, Optimizer

needs_numba = pytest.mark.skipif(not compiled.available(),
                                 reason="numba is not installed (the fast paths are off)")


@pytest.fixture
def numpy_only(monkeypatch: pytest.MonkeyPatch):
    """Run the body with the fast paths off, as where numba is not installed."""
    def off():
        monkeypatch.setenv(compiled.DISABLE_VARIABLE, "1")
        assert not compiled.available()
    return off


def test_the_switch_turns_the_fast_paths_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled.DISABLE_VARIABLE, "1")
    assert not compiled.available()
    monkeypatch.setenv(compiled.DISABLE_VARIABLE, "")
    assert compiled.available() == (compiled._numba() is not None)


# ------------------------------------------------------------------------------ recurrence


@dataclass(frozen=True)
class RecurrenceCase:
    name: str
    kwargs: dict = field(default_factory=dict)
    drive: bool = False


RECURRENCE_CASES = [
    RecurrenceCase("grid", dict(lr=np.geomspace(1e-3, 1, 37)[:, None],
                                weight_decay=np.geomspace(1e-5, 0.5, 29), steps=700)),
    RecurrenceCase("grid-record-every", dict(lr=np.geomspace(1e-3, 1, 37)[:, None],
                                             weight_decay=0.01, grad_norm=np.array([0.5, 2.0])[
                                                 :, None, None], steps=701, record_every=7,
                                             init_norm=3.0)),
    RecurrenceCase("step-decay", dict(lr=np.array([0.1, 0.7]), weight_decay=0.05, steps=400,
                                      schedule=sim.StepDecay((100, 250), 0.3))),
    RecurrenceCase("warmup-cosine", dict(lr=np.array([0.1, 0.7])[:, None],
                                         weight_decay=np.array([0.0, 0.01, 0.3]), steps=300,
                                         schedule=sim.WarmupCosine(40), record_every=3)),
    RecurrenceCase("renormalised", dict(lr=np.array([0.1, 0.7]), weight_decay=0.05, steps=50,
                                        renormalize=True)),
    RecurrenceCase("drive-layers", dict(grad_norms=np.random.default_rng(0).uniform(
        0.3, 3.0, size=(500, 3)), lr=np.array([0.05, 0.2])[:, None], weight_decay=0.02,
        init_norm=np.array([1.0, 2.0, 0.5]), record_every=9), drive=True),
]


def _run(case: RecurrenceCase) -> sim.Trajectory:
    if case.drive:
        return sim.drive(**case.kwargs)
    return sim.simulate("sgd", **case.kwargs)


@needs_numba
@pytest.mark.parametrize("small_blocks", [False, True], ids=["blocks", "one-step-blocks"])
@pytest.mark.parametrize("case", RECURRENCE_CASES, ids=[c.name for c in RECURRENCE_CASES])
def test_compiled_recurrence_equals_the_numpy_loop_bit_for_bit(
        case: RecurrenceCase, small_blocks: bool, numpy_only,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if small_blocks:  # coefficients computed for one step at a time: every block boundary
        monkeypatch.setattr(recurrence, "COEFFICIENT_BLOCK_BYTES", 1)
    monkeypatch.setattr(recurrence, "COMPILED_MIN_STEPS", 0)  # these short runs compiled too
    fast = _run(case)
    numpy_only()
    reference = _run(case)
    assert fast.norm_sq.shape == reference.norm_sq.shape
    for name in ("norm_sq", "effective_lr", "angular_update", "final_norm_sq"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(reference, name),
                                      err_msg=name)


@needs_numba
@pytest.mark.parametrize(("steps", "size", "compiled_loop"), [
    (200, 3, False), (4_999, 2_000, False), (5_000, 1, True), (1_000, 10_000, True)])
def test_only_runs_long_enough_take_the_compiled_loop(
        steps: int, size: int, compiled_loop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled loop's fixed cost (a kernel loaded per signature) is paid only by runs of
    at least COMPILED_MIN_STEPS steps or COMPILED_MIN_WORK element-steps."""
    taken = []
    monkeypatch.setattr(recurrence, "_iterate_compiled", lambda *args: taken.append(args))
    sim.simulate("sgd", lr=np.full(size, 0.1), weight_decay=0.01, steps=steps)
    assert bool(taken) == compiled_loop


def test_recurrence_falls_back_to_numpy_with_the_same_results(numpy_only) -> None:
    """Without the fast path the engine runs, and still equals theory's fixed point."""
    numpy_only()
    lr, wd = np.array([0.1, 1.0]), 0.1
    t = sim.simulate("sgd", lr=lr, weight_decay=wd, steps=6000, init_norm=2.0)
    np.testing.assert_allclose(t.final_norm_sq, sim.equilibrium("sgd", lr=lr, weight_decay=wd)[
        "norm_sq"], rtol=1e-10)


# ------------------------------------------------------------------------------ sphere: rules


def _hyper(lr: float, weight_decay: float, momentum: float) -> Hyper:
    return Hyper(lr=lr, weight_decay=weight_decay, momentum=momentum, beta1=0.9, beta2=0.99,
                 eps=1e-8, rmsprop_alpha=0.95)


@needs_numba
@pytest.mark.parametrize("optimizer", list(RULES), ids=lambda o: o.value)
def test_compiled_rules_equal_the_numpy_rules_bit_for_bit(optimizer: Optimizer) -> None:
    """The kernel's per-coordinate step (the rules of sim.update_rules compiled for floats)
    against update() on arrays, 60 steps from fixed inputs."""
    from scalewise.sim import sphere_kernel

    rng = np.random.default_rng(1)
    hyper = _hyper(0.03, 0.1, 0.9 if optimizer.properties.uses_momentum else 0.0)
    code = sphere_kernel.rule_code(optimizer)
    decoupled = optimizer.properties.decay is Decay.DECOUPLED
    w = rng.standard_normal(7)
    state = init_state(w)
    scalars = [(w[d], 0.0, 0.0) for d in range(7)]
    for step in range(60):
        grad = rng.standard_normal(7)
        w, state = update(optimizer, state, w, grad, hyper)
        stepped = [sphere_kernel._step(code, decoupled, OptimizerState(float(step), f, s), x,
                                       grad[d], hyper) for d, (x, f, s) in enumerate(scalars)]
        scalars = [(x, st.first, st.second) for x, st in stepped]
        np.testing.assert_array_equal([x for x, _, _ in scalars], w)
        np.testing.assert_array_equal([f for _, f, _ in scalars], state.first)
        np.testing.assert_array_equal([s for _, _, s in scalars], state.second)


# ------------------------------------------------------------------------------ sphere: noise


@needs_numba
def test_kernel_noise_is_standard_normal() -> None:
    """200000 draws: Kolmogorov-Smirnov against N(0, 1), and the tail beyond the ziggurat's
    base (|z| > r, probability 2.6e-4: the rare path) within 5 standard errors."""
    from scalewise.sim import sphere_kernel

    key = np.uint64(12345)
    words = key + np.arange(200_000, dtype=np.uint64) * sphere_kernel.GOLDEN
    z = np.array([sphere_kernel.normal(word) for word in words])
    assert stats.kstest(z, "norm").pvalue > 1e-3
    p = 2 * stats.norm.sf(sphere_kernel.ZIGGURAT_R)
    tail = np.mean(np.abs(z) > sphere_kernel.ZIGGURAT_R)
    assert abs(tail - p) < 5 * np.sqrt(p / z.size)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(z.size)


@needs_numba
def test_kernel_tables_are_the_ziggurat_of_the_normal() -> None:
    """Each layer has the area of the base strip: x_i (f(x_{i+1}) - f(x_i)) = v for the upper
    layers, and k_i / 2^52 = x_{i-1} / x_i."""
    from scalewise.sim import sphere_kernel

    k, w, f = sphere_kernel.ziggurat_tables()
    x = w * 2.0**52  # x_i, the right edge of layer i (x_0: the base strip's width)
    np.testing.assert_allclose(np.exp(-x[1:] ** 2 / 2), f[1:], rtol=1e-12)
    area = x[2:] * (f[1:-1] - f[2:])
    np.testing.assert_allclose(area, sphere_kernel._ZIGGURAT_AREA, rtol=1e-9)
    np.testing.assert_allclose(k[2:] / 2.0**52, x[1:-1] / x[2:], rtol=1e-15, atol=2**-52)


# ------------------------------------------------------------------------------ sphere: kernel


def _replay(t: sim.Trajectory, *, optimizer: Optimizer, lr: float, weight_decay: float,
            momentum: float, grad_norm: float) -> dict[str, np.ndarray]:
    """The kernel's run redone in NumPy with its own draws: vector ``v`` at step ``k`` draws
    ``normal(key + ((k vectors + v) dim + d) GOLDEN)``, projected on the tangent space, then
    update() of sim.update_rules."""
    from scalewise.sim import sphere_kernel

    rng = np.random.default_rng(t.seed)
    w = random_unit_vectors(rng, (t.runs, t.dim))
    key = rng.integers(2**64, dtype=np.uint64)
    # simulate's defaults: betas (0.9, 0.999), eps 1e-8, rmsprop_alpha 0.99
    state, hyper = init_state(w), Hyper(lr, weight_decay, momentum, 0.9, 0.999, 1e-8, 0.99)
    norm_sq, angle = [], []
    for k in range(t.spec.steps):
        counters = (np.uint64(k * t.runs) + np.arange(t.runs, dtype=np.uint64)[:, None]) \
            * np.uint64(t.dim) + np.arange(t.dim, dtype=np.uint64)
        words = key + counters * sphere_kernel.GOLDEN
        z = np.array([sphere_kernel.normal(word) for word in words.ravel()]).reshape(words.shape)
        norm = np.linalg.norm(w, axis=-1, keepdims=True)
        z = z - (z * w).sum(-1, keepdims=True) / norm**2 * w
        grad = grad_norm * z / (np.linalg.norm(z, axis=-1, keepdims=True) * norm)
        w_next, state = update(optimizer, state, w, grad, hyper)
        a, b = w / norm, w_next / np.linalg.norm(w_next, axis=-1, keepdims=True)
        norm_sq.append(norm[:, 0] ** 2)
        angle.append(2 * np.arctan2(np.linalg.norm(a - b, axis=-1),
                                    np.linalg.norm(a + b, axis=-1)))
        w = w_next
    return {"norm_sq": np.array(norm_sq), "angular_update": np.array(angle),
            "final_norm_sq": (w * w).sum(-1)}


@needs_numba
@pytest.mark.parametrize("optimizer", list(RULES), ids=lambda o: o.value)
def test_compiled_sphere_equals_a_numpy_replay_of_its_draws(optimizer: Optimizer) -> None:
    """Step by step, to rounding: the sums are ordered differently (rtol 1e-11 over 40 steps,
    far below any statistical difference)."""
    kwargs = dict(lr=0.05, weight_decay=0.1, momentum=0.9 if optimizer.properties.uses_momentum else 0.0,
                  grad_norm=0.7)
    t = sim.simulate(optimizer.value, steps=40, engine="sphere", dim=9, runs=3, seed=11,
                     **kwargs)
    replay = _replay(t, optimizer=optimizer, **kwargs)
    for name, expected in replay.items():
        np.testing.assert_allclose(getattr(t, name), expected, rtol=1e-11, atol=1e-15,
                                   err_msg=name)


@needs_numba
def test_compiled_sphere_does_not_depend_on_the_number_of_threads() -> None:
    import numba

    kwargs = dict(lr=np.array([1e-3, 1e-2]), weight_decay=0.1, steps=50, engine="sphere", dim=16,
                  runs=5, seed=2)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = sim.simulate("adamw", **kwargs)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(sim.simulate("adamw", **kwargs).norm_sq, one.norm_sq)


def test_simulations_from_several_threads_equal_the_sequential_ones() -> None:
    """A server runs a thread per session: launches wait for each other, results unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    calls = [dict(optimizer="sgd", lr=np.geomspace(0.01, 1, 50), weight_decay=0.01, steps=400),
             dict(optimizer="adam", lr=1e-3, weight_decay=0.1, steps=100, engine="sphere",
                  dim=32, runs=8, seed=1)] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda kw: sim.simulate(**kw), calls))
    for kw, t in zip(calls, together):
        np.testing.assert_array_equal(t.norm_sq, sim.simulate(**kw).norm_sq)


# ------------------------------------------------------------------------------ sphere: agreement


@dataclass(frozen=True)
class Agreement:
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float = 0.0


AGREEMENTS = [Agreement("sgdm", 0.01, 0.05, 0.9), Agreement("adamw", 3e-3, 0.5),
              Agreement("adam", 3e-3, 0.5)]
BACKENDS = ["numpy", "compiled", "torch-cpu"]


def _long_run(case: Agreement, backend: str, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """Per-run means of ||w||^2 over the last 1000 of 3000 steps (several relaxation times
    1 / (lr wd) after the start at theory's norm), 48 runs, dim 16."""
    if backend == "compiled" and not compiled.available():
        pytest.skip("numba is not installed")
    if backend == "numpy":
        monkeypatch.setenv(compiled.DISABLE_VARIABLE, "1")
    predicted = sim.equilibrium(case.optimizer, lr=case.lr, weight_decay=case.weight_decay,
                                momentum=case.momentum, dim=16)
    t = sim.simulate(case.optimizer, lr=case.lr, weight_decay=case.weight_decay,
                     momentum=case.momentum, steps=3000, engine="sphere", dim=16, runs=48,
                     seed=5, init_norm=float(np.sqrt(predicted["norm_sq"])),
                     device="cpu" if backend == "torch-cpu" else None)
    return t.norm_sq[2000:].mean(axis=0)  # (runs,)


@pytest.mark.parametrize("case", AGREEMENTS, ids=[c.optimizer for c in AGREEMENTS])
def test_sphere_implementations_agree_in_distribution(case: Agreement,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pair of implementations: the difference of their mean long-run ||w||^2 within five
    standard errors (runs are independent; seeds fixed, streams different)."""
    means = {}
    for backend in BACKENDS:
        with monkeypatch.context() as patched:
            means[backend] = _long_run(case, backend, patched)
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = means[a].mean() - means[b].mean()
            se = np.sqrt(means[a].var(ddof=1) / means[a].size
                         + means[b].var(ddof=1) / means[b].size)
            assert abs(gap) < 5 * se, f"{a} vs {b}: {gap:.3g} ({gap / se:.1f} SE)"
            assert not np.array_equal(means[a], means[b])  # the streams differ


@pytest.mark.parametrize("backend", ["numpy", "torch-cpu"])
def test_every_implementation_runs_sgd_as_the_exact_recurrence(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic whatever the noise: SGD's norms on the sphere equal the recurrence (the
    compiled kernel is covered by tests/test_sim_sphere.py, which runs the default)."""
    if backend == "numpy":
        monkeypatch.setenv(compiled.DISABLE_VARIABLE, "1")
    kwargs = dict(lr=np.array([0.1, 0.5]), weight_decay=0.05, steps=200, grad_norm=0.8,
                  init_norm=1.5, schedule=sim.StepDecay((100,), 0.1))
    exact = sim.simulate("sgd", **kwargs)
    vectors = sim.simulate("sgd", **kwargs, engine="sphere", dim=16, runs=3, seed=3,
                           device="cpu" if backend == "torch-cpu" else None)
    np.testing.assert_allclose(vectors.norm_sq, np.broadcast_to(
        exact.norm_sq[..., None], vectors.norm_sq.shape), rtol=1e-11)
    np.testing.assert_allclose(vectors.angular_update, np.broadcast_to(
        exact.angular_update[..., None], vectors.angular_update.shape), rtol=1e-11, atol=1e-14)


def test_torch_backend_records_like_the_others() -> None:
    t = sim.drive(np.full((30, 2), 0.7), optimizer="rmsprop", lr=np.array([1e-3, 1e-2]),
                  weight_decay=0.1, dim=5, runs=4, record_every=10, device="cpu")
    assert t.norm_sq.shape == t.effective_lr.shape == t.angular_update.shape == (3, 2, 4)
    assert t.final_norm_sq.shape == (2, 4)
    np.testing.assert_allclose(t.norm_sq[0], 1.0, rtol=1e-14)  # the same initial directions


def test_a_device_this_machine_lacks_is_named() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device = 'cuda' is invalid; allowed: None or a torch"):
        sim.simulate("adam", lr=1e-3, steps=5, engine="sphere", dim=4, device="cuda")
    with pytest.raises(ValueError, match="device = 'cpu' is invalid; allowed: None with "
                                         "loss_gradient"):
        sim.simulate("adam", lr=1e-3, steps=5, engine="sphere", dim=4, device="cpu",
                     loss_gradient=sim.RayleighQuotient(np.eye(4)))


def test_sphere_falls_back_to_numpy(numpy_only) -> None:
    """Without numba the sphere engine is the NumPy one: NumPy's generator drives it (its
    draws are reproducible from the seed as before)."""
    numpy_only()
    t = sim.simulate("adam", lr=1e-3, weight_decay=0.1, steps=20, engine="sphere", dim=6, runs=2,
                     seed=4)
    rng = np.random.default_rng(4)
    w0 = random_unit_vectors(rng, (2, 6))
    np.testing.assert_allclose(t.norm_sq[0], (w0 * w0).sum(-1), rtol=1e-15)
    again = sim.simulate("adam", lr=1e-3, weight_decay=0.1, steps=20, engine="sphere", dim=6,
                         runs=2, seed=4)
    np.testing.assert_array_equal(t.norm_sq, again.norm_sq)


# ------------------------------------------------------------------------------ memory


@pytest.mark.parametrize("steps", [10**9, 10**12], ids=["1e9", "1e12"])
def test_too_many_steps_are_refused_before_allocating(steps: int) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=f"steps = {steps} is invalid; allowed: an "
                                              "integer <= [0-9]+ at record_every = 1 within "
                                              "memory_limit = 4 GiB"):
            sim.simulate("sgd", lr=0.1, steps=steps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"allocated {peak} bytes before refusing"


def test_the_refusal_names_what_to_change() -> None:
    with pytest.raises(MemoryError, match="record_every = 1 is invalid; allowed: an integer >= "
                                          "[0-9]+ within memory_limit"):
        sim.simulate("sgd", lr=np.ones((1000, 1)) * 0.1, weight_decay=np.ones(1000) * 1e-3,
                     steps=10_000)
    with pytest.raises(MemoryError, match="memory_limit = 1024 is invalid; allowed: at least"):
        sim.simulate("adam", lr=1e-3, steps=10, engine="sphere", dim=64, runs=8,
                     memory_limit=1024)
    with pytest.raises(MemoryError, match="steps = 5000000 is invalid; allowed: an integer <="):
        sim.drive(np.ones(5_000_000), lr=0.1, optimizer="adam", dim=1000, runs=10,
                  memory_limit=2**27)


def test_the_largest_allowed_steps_fit() -> None:
    """The bound the refusal states is one that passes."""
    from scalewise.sim.spec import check_memory

    footprint = recurrence.footprint((3,))
    with pytest.raises(MemoryError) as refused:
        check_memory(footprint, steps=10**9, record_every=10, limit=2**30)
    most = int(str(refused.value).split("<= ")[1].split()[0])
    check_memory(footprint, steps=most, record_every=10, limit=2**30)
    with pytest.raises(MemoryError):
        check_memory(footprint, steps=2 * most, record_every=10, limit=2**30)
