#!/usr/bin/env python3
"""The README's results table from the metrics.csv files that ``benchmarks/quality.sh`` writes.

For each data set folder (``acdc_5mm``, ``cmrxmotion``, ``acdc_cine_081``, ``brain_5mm``) found under
any of the given output folders, the rows of every metrics.csv are merged (runs of the same method on
the same slices are identical: the methods are deterministic), and each method gets its mean SSIM and
PSNR, the mean differences to linear and to flow, and one-sided Wilcoxon signed-rank p-values against
linear and against flow (paired per slice, H1: the method scores higher).

    .venv/bin/python benchmarks/results_table.py out/quality_all out/quality_motion
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.pipeline import LABELS, METHODS  # noqa: E402

DATASETS = {
    "acdc_5mm": "ACDC, six 5 mm test patients (12 volumes), every other slice dropped (10 mm gaps), factor 2",
    "cmrxmotion": "CMRxMotion, all 36 volumes (another centre; 16 mm gaps), factor 2",
    "acdc_cine_081": "ACDC 4D cine of test patient 081 (5 mm slices, every frame), factor 2",
    "brain_5mm": "Colin27 brain, every 5th slice kept (5 mm), factor 5, against the 1 mm truth",
}


def load(folders: list[Path], dataset: str) -> dict[str, dict[tuple[str, int], tuple[float, float]]]:
    scores: dict[str, dict] = {}
    for folder in folders:
        path = folder / dataset / "metrics.csv"
        if not path.exists():
            continue
        with path.open() as f:
            for row in csv.DictReader(f):
                scores.setdefault(row["method"], {})[(row["volume"], int(row["slice"]))] = (
                    float(row["ssim"]), float(row["psnr"]))
    return scores


def p_value(mine: dict, theirs: dict, k: int) -> tuple[float, float]:
    keys = sorted(set(mine) & set(theirs))
    a = np.array([mine[key][k] for key in keys])
    b = np.array([theirs[key][k] for key in keys])
    if len(keys) == 0:
        return float("nan"), float("nan")
    if not np.any(a != b):  # the same scores on every slice (e.g. flow at linear on re-sampled stacks)
        return 0.0, float("nan")
    return float(np.mean(a - b)), float(wilcoxon(a, b, alternative="greater").pvalue)


def fmt_p(p: float) -> str:
    return "" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-4 else f"{p:.0e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    for dataset, title in DATASETS.items():
        scores = load(args.folders, dataset)
        if not scores:
            continue
        n = len(next(iter(scores.values())))
        print(f"\n**{title}** (n = {n} slices)\n")
        print("| method | SSIM | PSNR (dB) | SSIM vs linear (p) | PSNR vs linear (p) | SSIM vs flow (p) | PSNR vs flow (p) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for method in (m for m in METHODS if m in scores):
            values = np.array(list(scores[method].values()))
            cells = [LABELS[method], f"{values[:, 0].mean():.4f}", f"{values[:, 1].mean():.2f}"]
            for reference in ("linear", "flow"):
                for k, digits in ((0, 4), (1, 2)):
                    if reference not in scores or reference == method:
                        cells.append("")
                        continue
                    difference, p = p_value(scores[method], scores[reference], k)
                    same = difference == 0.0 and not np.isfinite(p)
                    cells.append("identical" if same else f"{difference:+.{digits}f} ({fmt_p(p)})")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
