"""Cohort throughput: studies per minute with 1 and 2 local workers (LatentSRLib.cohort).

    python benchmarks/bench_cohort.py ../shared/data/acdc_cine
    python benchmarks/bench_cohort.py ../shared/data/cmrxmotion --method ae --limit 8 --factor 2

Each setting runs the same studies into a fresh temporary folder (nothing is skipped); the time is
the whole command's (reading, hashing, super-resolving, writing, the sidecars and manifest.csv), with
the Dask cluster's start-up counted and also shown on its own. 1 worker runs in-process (no Dask).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from LatentSRLib.cohort import Options, run_super_resolve
from LatentSRLib.engine import Engine
from LatentSRLib.volume import find_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a folder of studies (searched recursively, masks skipped)")
    parser.add_argument("--method", default="linear")
    parser.add_argument("--factor", type=int, help="default: near isotropic")
    parser.add_argument("--limit", type=int, help="use the first N studies")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    studies = find_images([args.folder])[: args.limit]
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "in"
        inputs.mkdir()
        for i, study in enumerate(studies):  # symlinks: the data stays where it is
            (inputs / f"{i:03d}_{study.name}").symlink_to(study.resolve())
        options = Options(method=args.method, factor=args.factor)
        rows = []
        for workers in args.workers:
            started = time.perf_counter()
            with Engine(workers, echo=lambda _: None):
                pass
            startup = time.perf_counter() - started if workers >= 2 else 0.0
            started = time.perf_counter()
            records = run_super_resolve([inputs], Path(scratch) / f"out{workers}", options, workers=workers,
                                        progress=False, echo=lambda _: None)
            seconds = time.perf_counter() - started
            failed = sum(r.status == "failed" for r in records)
            busy = sum(r.seconds for r in records)
            rows.append((workers, len(records), failed, seconds, startup, busy))
    cpus = os.cpu_count()
    print(f"\n{args.method} on {len(studies)} studies from {args.folder} ({cpus} CPUs)\n")
    print("| workers | studies | failed | wall (s) | cluster start (s) | studies/min | per study in task (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for workers, n, failed, seconds, startup, busy in rows:
        print(f"| {workers} | {n} | {failed} | {seconds:.1f} | {startup:.1f} | {60 * n / seconds:.1f} | "
              f"{busy / n:.2f} |")


if __name__ == "__main__":
    main()
