"""``scalewise validate SUITE``: train, predict and compare; write the suite's report folder.

Suites (:data:`validation.SUITES`): ``effective-lr`` (001 Sec. 5, 004 Sec. 4.1: the effective
learning rate of normalized networks against sim/ and theory/), ``kfac`` (004 Sec. 4.2-4.3: the
Gauss-Newton norm, effective damping, curvature traces) and ``ics`` (001 Sec. 3-4: internal
covariate shift, the knock-out, quasi-diagonal preconditioning, AdaGraft). The exit status is 0
when every agreement bound of the report holds, 1 when one does not, 2 on bad input, 3 when the
store or the report folder cannot be used, 130 on Ctrl-C (the runs finished so far are kept in
the store; the same command resumes).

The committed reference reports are regenerated with ``--out validation/reference/SUITE``, from
a clean source tree only (the report records the commit; :func:`validation.suite.
check_reference_output`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from scalewise.cli.exits import NEGATIVE, OK, answered
from scalewise.validation import SUITES, Size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="theory vs measurement on real networks: write a validation report",
        description="Train the suite's networks, set theory's and the simulators' predictions "
        "beside the measurements and write a report folder (report.md with figures, "
        "report.json with one record per comparison, curves.csv.gz, index.json).")
    parser.add_argument("suite", choices=list(SUITES), help="which suite")
    parser.add_argument("--out", metavar="DIR",
                        help="report folder (default: reports/SUITE under the current folder)")
    parser.add_argument("--size", choices=[s.value for s in Size], default=Size.REFERENCE.value,
                        help="smoke: seconds, every experiment shortened; reference: the scale "
                        "of the committed reports, minutes on a CPU (default)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the runs: cpu (default), cuda, cuda:N, auto")
    parser.add_argument("--store", metavar="PATH",
                        help="run store of the suite's runs (default: runs/runs.sqlite in the "
                        "report folder; finished runs are reused, so a rerun only writes the "
                        "report)")
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding cifar-10-batches-py: adds the CIFAR-10 ResNet runs "
                        "(meant for a GPU) where a suite has them")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


@answered(interrupted="the finished runs are kept in the store; run the same command again "
          "to resume")
def run(args: argparse.Namespace) -> int:
    from scalewise.validation import build
    from scalewise.validation.report import agreement_table
    from scalewise.validation.suite import Settings, check_reference_output

    out = Path(args.out or Path("reports") / args.suite)
    start = time.perf_counter()
    check_reference_output(out, args.size)
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings(size=args.size, device=args.device,
                        store=args.store or str(out / "runs" / "runs.sqlite"),
                        data_root=args.data_root, seed=args.seed, progress=not args.no_progress)
    report = build(args.suite, settings)
    report.write(out)
    results = report.agreement()
    print(agreement_table(results))
    print(f"\nwrote {out / 'report.md'} ({len(report.records)} records) in "
          f"{time.perf_counter() - start:.0f} s")
    return OK if all(r.holds for r in results) else NEGATIVE
