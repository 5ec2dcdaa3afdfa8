"""Statistics, tests and the written outputs of the drop-slice protocol: metrics.csv and summary.md.

The protocol itself (what is scored) is :mod:`LatentSRLib.evaluate`; the pictures are
:mod:`LatentSRLib.figures`. Every metric of a method is summarised over the same slices: a row
whose SSIM, PSNR or VIF is not finite is left out of all three, so n is one number per method.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from . import LatentSRError, atomic, pipeline

METRICS = ("ssim", "psnr", "vif")
METRIC_LABELS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "vif": "VIF"}
CSV_COLUMNS = ("volume", "slice", "method", *METRICS)


@dataclasses.dataclass(frozen=True)
class Row:
    """Scores of one re-created slice: ``slice`` indexes the original (full) volume."""

    volume: str
    slice: int
    method: str
    ssim: float
    psnr: float
    vif: float

    def finite(self) -> bool:
        return all(math.isfinite(getattr(self, m)) for m in METRICS)


@dataclasses.dataclass(frozen=True)
class MethodStats:
    """n, mean, sample sd (ddof=1) and median of one metric of one method."""

    n: int
    mean: float
    sd: float
    median: float


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One-sided paired Wilcoxon signed-rank test that ``method`` scores higher than ``baseline``."""

    method: str
    baseline: str
    metric: str
    n: int
    median_difference: float
    statistic: float
    p: float


@dataclasses.dataclass
class Summary:
    """What was measured and written; ``markdown`` is the content of summary.md."""

    rows: list[Row]
    stats: dict[str, dict[str, MethodStats]]
    comparisons: list[Comparison]
    volumes: list[str]
    skipped: list[str]
    keep_every: int
    markdown: str
    out_dir: Path
    csv_path: Path
    summary_path: Path
    plot_path: Path
    excluded: int = 0
    figure_path: Path | None = None


def label(method: str) -> str:
    return pipeline.LABELS.get(method, method)


def method_stats(rows: Sequence[Row], method: str) -> dict[str, MethodStats]:
    """Per metric, over the method's rows with every metric finite (the same n for all metrics)."""
    kept = [r for r in rows if r.method == method and r.finite()]
    out = {}
    for metric in METRICS:
        values = np.array([getattr(r, metric) for r in kept], dtype=float)
        if len(values) == 0:
            out[metric] = MethodStats(0, math.nan, math.nan, math.nan)
            continue
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
        out[metric] = MethodStats(len(values), float(np.mean(values)), sd, float(np.median(values)))
    return out


def paired(rows: Sequence[Row], method: str, baseline: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``method`` and ``baseline`` on the slices (volume, slice) both have finite rows for."""
    mine = {(r.volume, r.slice): getattr(r, metric) for r in rows if r.method == method and r.finite()}
    theirs = {(r.volume, r.slice): getattr(r, metric) for r in rows if r.method == baseline and r.finite()}
    keys = [k for k in mine if k in theirs]
    return np.array([mine[k] for k in keys], float), np.array([theirs[k] for k in keys], float)


def compare(rows: Sequence[Row], method: str, baseline: str, metric: str) -> Comparison:
    """Paired per (volume, slice): H1 = the method's score is higher than the baseline's."""
    from scipy.stats import wilcoxon

    a, b = paired(rows, method, baseline, metric)
    difference = a - b
    median = float(np.median(difference)) if len(a) else math.nan
    if len(a) == 0 or not np.any(difference != 0):
        return Comparison(method, baseline, metric, len(a), median, math.nan, math.nan)
    test = wilcoxon(a, b, alternative="greater")
    return Comparison(method, baseline, metric, len(a), median, float(test.statistic), float(test.pvalue))


def baseline_of(methods: Sequence[str]) -> str:
    """The reference of the paired comparisons and plots: linear, else the first conventional method,
    else the first method."""
    if "linear" in methods:
        return "linear"
    return next((m for m in methods if m in pipeline.CONVENTIONAL), methods[0])


def _interpolation(method: str) -> bool:
    """Plain interpolation along the slice axis (linear, B-spline, Lanczos): the baselines."""
    from .methods import get
    from .methods.kernel import KernelInterpolation
    return isinstance(get(method), KernelInterpolation)


def comparisons(rows: Sequence[Row], methods: Sequence[str]) -> list[Comparison]:
    """Each challenger (every method that is not plain interpolation: flow and the learned ones)
    against each interpolation baseline, for each metric; then each challenger against each
    challenger listed before it (e.g. motion > flow, contrastive > ae).

    Without a challenger, linear (else the first method) against the other interpolation methods,
    so that the table shows the baselines' own ordering.
    """
    challengers = [m for m in methods if not _interpolation(m)]
    baselines = [m for m in methods if _interpolation(m)]
    if not challengers:
        challenger = baseline_of(methods)
        challengers, baselines = [challenger], [m for m in baselines if m != challenger]
    pairs = [(m, b) for m in challengers for b in baselines]
    pairs += [(m, earlier) for i, m in enumerate(challengers) for earlier in challengers[:i]]
    return [compare(rows, m, b, metric) for m, b in pairs for metric in METRICS]


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def weights_used(methods: Sequence[str], weights: dict[str, str] | None,
                 resampling_check: bool = True) -> list[tuple[str, str, str, str]]:
    """(method, weights name, file, sha256) for each learned method, as the methods will load them, and,
    with ``resampling_check``, the cross-fade detector for each method that asks it."""
    wanted = [(m, pipeline.WEIGHTS_KIND[m]) for m in methods if m in pipeline.WEIGHTS_KIND]
    if resampling_check:
        wanted += [(m, "crossfade") for m in methods
                   if m in pipeline.METHODS and pipeline.METHODS[m].asks_crossfade_detector]
    if not wanted:
        return []
    from .models import registry  # imports torch: only when a learned method is listed

    out = []
    for method, kind in wanted:
        given = None if kind == "crossfade" else (weights or {}).get(method) or (weights or {}).get(kind)
        try:
            name = given or registry.default_weights(kind)
            path, _ = registry.resolve(name, kind)
        except LatentSRError as error:  # rows given to summarise() without the weights at hand
            out.append((method, str(given or "default"), "", f"not found: {error}"))
            continue
        shown = f"re-sampling check: {name}" if kind == "crossfade" else str(name)
        out.append((method, shown, str(path), registry.sha256(path) if Path(path).exists() else "missing"))
    return out


def markdown(stats: dict[str, dict[str, MethodStats]], tests: list[Comparison], volumes: Sequence[str],
             skipped: Sequence[str], keep_every: int, n_rows: int, *, dataset: str = "", excluded: int = 0,
             rule: str = "", weights: Sequence[tuple[str, str, str, str]] = (), crop: int = 128) -> str:
    """summary.md: the protocol, the volumes and weights, a statistics table and a Wilcoxon table."""
    lines = [
        f"# Drop-slice evaluation{': ' + dataset if dataset else ''}",
        "",
        f"{len(volumes)} volumes; each normalised to [0, 1] by its 1st/99th percentiles (clipped), slices "
        f"0, {keep_every}, {2 * keep_every}, ... kept, the dropped slices between kept ones "
        f"re-created at factor {keep_every} and scored on the centre {crop}x{crop} crop "
        "(SSIM Gaussian sigma 1.5, PSNR and VIFp with data range 1).",
        "",
    ]
    if rule:
        lines += [f"Slices without content are not scored: {rule} Excluded: {excluded} hidden slices.", ""]
    if skipped:
        lines += [f"Skipped: {', '.join(skipped)}.", ""]
    header = "| method | n |" + "".join(f" {METRIC_LABELS[m]} mean | sd | median |" for m in METRICS)
    lines += [header, "|---|---:|" + "---:|---:|---:|" * len(METRICS)]
    for method, by_metric in stats.items():
        cells = "".join(f" {s.mean:.4f} | {s.sd:.4f} | {s.median:.4f} |" for s in (by_metric[m] for m in METRICS))
        lines.append(f"| {label(method)} | {by_metric['ssim'].n} |{cells}")
    lines += ["", "One-sided Wilcoxon signed-rank tests, paired per slice (H1: the first method scores higher):", "",
              "| comparison | metric | n | median difference | p |", "|---|---|---:|---:|---:|"]
    for c in tests:
        lines.append(f"| {label(c.method)} > {label(c.baseline)} | {METRIC_LABELS[c.metric]} | {c.n} | "
                     f"{c.median_difference:+.4f} | {_p(c.p)} |")
    if not tests:
        lines.append("| (a single method: nothing to compare) | | | | |")
    if weights:
        lines += ["", "Weights:", "", "| method | weights | sha256 |", "|---|---|---|"]
        lines += [f"| {label(m)} | {name} (`{Path(path).name}`) | `{digest}` |" for m, name, path, digest in weights]
    lines += ["", f"Volumes ({len(volumes)}): {', '.join(volumes)}.", "", f"{n_rows} rows in metrics.csv.", ""]
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    """metrics.csv, through a staging folder: never partial, never through a symlink planted at ``path``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.volume, r.slice, r.method, *(f"{getattr(r, m):.6g}" for m in METRICS)])
    return atomic.write_text(path, buffer.getvalue())
