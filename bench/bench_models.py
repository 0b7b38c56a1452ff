"""Training-step costs on the batch-normalized VGG-style CNN, CIFAR-sized inputs, batch 128.

Three ratios, measured in one run on this machine:

* every-step cheap probes (:class:`models.probes.StepProbe`: the layer sums of the step
  statistics) against an unprobed SGD step (target: at most 10% overhead), and the same with
  every unit's record of every step;
* a K-FAC step (factors every step, inverses every 20 steps, so one inversion per block)
  against an SGD step (target: at most 3x).

Each configuration runs in blocks of ``--block`` steps (20: one K-FAC inversion per block),
the configurations interleaved block by block so that drifting machine load hits them alike;
a ratio is taken between the medians of the per-step times of the blocks.

    python bench/bench_models.py [--blocks 5] [--block 20] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from scalewise.models.config import (
    Arch,
    KFACConfig,
    ModelConfig,
    Norm,
    Optimizer,
    OptimizerConfig,
)
from scalewise.models.networks import build_model
from scalewise.models.optimizer_factory import build_optimizer
from scalewise.models.probes import StepProbe
from scalewise.models.step import train_step

BATCH = 128
IN_SHAPE = (3, 32, 32)
CLASSES = 10


def _runner(name: Optimizer, probed: str, device: torch.device) -> Callable[[int], float]:
    """A function running ``n`` training steps of one configuration, returning seconds/step;
    ``probed``: ``""`` (no probe), ``"layers"`` (the layer sums of every step) or ``"units"``
    (and every unit's record of every step)."""
    model = build_model(ModelConfig(arch=Arch.VGG, norm=Norm.BATCH), IN_SHAPE, CLASSES,
                        seed=0).to(device)
    config = OptimizerConfig(name=name, lr=0.01, kfac=KFACConfig(inverse_interval=20))
    optimizer = build_optimizer(model, config)
    gen = torch.Generator(device=device).manual_seed(0)
    inputs = torch.randn(BATCH, *IN_SHAPE, generator=gen, device=device)
    targets = torch.randint(0, CLASSES, (BATCH,), generator=gen, device=device)
    probe = (StepProbe(model, optimizer).plan(layers=True, units=probed == "units")
             if probed else None)

    def run(steps: int) -> float:
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, inputs, targets, probe=probe, generator=gen)
        _synchronize(device)
        return (time.perf_counter() - start) / steps

    return run


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(blocks: int, block: int, device: torch.device) -> dict[str, list[float]]:
    """Per-step seconds of each configuration, one entry per block, blocks interleaved."""
    runners = {
        "sgd": _runner(Optimizer.SGD, "", device),
        "sgd+probes": _runner(Optimizer.SGD, "layers", device),
        "sgd+unit records": _runner(Optimizer.SGD, "units", device),
        "kfac": _runner(Optimizer.KFAC, "", device),
    }
    for run in runners.values():  # warm-up: allocations, first factors and inverses
        run(2)
    times: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(blocks):
        for key, run in runners.items():
            times[key].append(run(block))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    times = measure(args.blocks, args.block, device)
    median = {key: statistics.median(v) for key, v in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} on {device}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"VGG-BN width 64 depth 2, inputs {IN_SHAPE}, batch {BATCH}; "
          f"{args.blocks} interleaved blocks of {args.block} steps")
    for key, value in median.items():
        spread = ", ".join(f"{t * 1e3:.0f}" for t in times[key])
        print(f"  {key:<11} {value * 1e3:8.1f} ms/step (blocks: {spread})")
    print(f"probe overhead: {median['sgd+probes'] / median['sgd'] - 1:+.1%} (target <= +10%)")
    print(f"with every unit's record: {median['sgd+unit records'] / median['sgd'] - 1:+.1%}")
    print(f"K-FAC / SGD:    {median['kfac'] / median['sgd']:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
