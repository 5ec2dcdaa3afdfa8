#!/usr/bin/env python3
"""Two `latentsr evaluate` runs of the contrastive method on the same scans, compared slice by slice:
the distilled student against its teacher (Resources/Models/contrastive.md, "contrastive-acdc-fast").

Each folder holds the metrics.csv of one run (method ``contrastive``, one set of weights; ``linear``
too, for the gain over it). Prints mean SSIM and PSNR per run, the paired student - teacher
differences (mean, median, two-sided Wilcoxon p) and the share of the teacher's mean gain over
linear that the student keeps.

    .venv/bin/python benchmarks/compare_contrastive.py runs/val_teacher runs/val_student
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon


def scores(folder: str, method: str) -> dict[tuple[str, str], tuple[float, float]]:
    with open(Path(folder) / "metrics.csv") as handle:
        return {(r["volume"], r["slice"]): (float(r["ssim"]), float(r["psnr"]))
                for r in csv.DictReader(handle) if r["method"] == method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teacher", help="evaluate output folder of the teacher (with linear)")
    parser.add_argument("student", help="evaluate output folder of the student")
    args = parser.parse_args()
    teacher, student = scores(args.teacher, "contrastive"), scores(args.student, "contrastive")
    linear = scores(args.teacher, "linear") or scores(args.student, "linear")
    keys = sorted(set(teacher) & set(student))
    if not keys or len(keys) != len(teacher):
        raise SystemExit(f"the runs score different slices ({len(teacher)} teacher, {len(student)} student)")
    t, s = np.array([teacher[k] for k in keys]), np.array([student[k] for k in keys])
    lin = np.array([linear[k] for k in keys]) if linear else None
    print(f"{len(keys)} slices")
    for i, metric in enumerate(("SSIM", "PSNR (dB)")):
        diff = s[:, i] - t[:, i]
        p = wilcoxon(diff).pvalue if np.any(diff) else 1.0
        line = (f"{metric}: teacher {t[:, i].mean():.4f}, student {s[:, i].mean():.4f}; student - teacher mean "
                f"{diff.mean():+.4f}, median {np.median(diff):+.4f}, max |d| {np.abs(diff).max():.4f}, p {p:.2g}")
        if lin is not None:
            gain = t[:, i].mean() - lin[:, i].mean()
            line += (f"; linear {lin[:, i].mean():.4f}, student keeps "
                     f"{100 * (s[:, i].mean() - lin[:, i].mean()) / gain:.0f} % of the teacher's gain")
        print(line)


if __name__ == "__main__":
    main()
