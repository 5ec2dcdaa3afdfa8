"""The papers' drop-slice evaluation protocol (Sander et al.), tables, statistics and box plots.

For every volume (each frame of a 4D file is a volume of its own):

1. normalise to [0, 1] by its own 1st/99th percentiles, clipped;
2. keep every K-th slice along the slice axis (slices 0, K, 2K, ...);
3. re-create the dropped slices with each method, upsampling the kept slices by K through
   :func:`LatentSRLib.pipeline.super_resolve` (the same path users run);
4. score each re-created slice against the dropped original on the centre 128 x 128 crop with
   SSIM, PSNR and VIF (:mod:`LatentSRLib.metrics`).

Only dropped slices that lie between two kept slices can be re-created; dropped slices after the
last kept one (when the slice count is not 1 modulo K) are not scored.

Writes ``metrics.csv`` (``volume,slice,method,ssim,psnr,vif``), ``summary.md`` (per-method
statistics and one-sided Wilcoxon signed-rank tests) and ``boxplots.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import LatentSRError, pipeline
from .intensity import PercentileScaling
from .metrics import centre_crop, psnr, ssim, vif
from .volume import Volume, find_images, read, slice_axis, volume_name

METRICS = ("ssim", "psnr", "vif")
METRIC_LABELS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "vif": "VIF"}
CSV_COLUMNS = ("volume", "slice", "method", *METRICS)
CROP = 128


@dataclasses.dataclass(frozen=True)
class Row:
    """Scores of one re-created slice: ``slice`` indexes the original (full) volume."""

    volume: str
    slice: int
    method: str
    ssim: float
    psnr: float
    vif: float


@dataclasses.dataclass(frozen=True)
class MethodStats:
    """n, mean, sample sd (ddof=1) and median of one metric of one method (NaNs left out)."""

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
    """What :func:`evaluate` measured and wrote; ``markdown`` is the content of summary.md."""

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


def weights_for(method: str, weights: dict[str, str] | None) -> str | None:
    """The weights given for a method, or for the model it shares them with (ae-latent uses ae's)."""
    weights = weights or {}
    return weights.get(method) or weights.get(pipeline.WEIGHTS_KIND.get(method, method))


def check_methods(methods: Sequence[str], weights: dict[str, str] | None = None) -> list[str]:
    """Validate the methods (and learned weights) before any work; returns them without duplicates.

    Raises:
        LatentSRError: an unknown method, one whose implementation cannot be imported, weights
            given for an unknown method, or a learned method whose weights cannot be found.
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise LatentSRError("no methods to evaluate")
    for name in weights or {}:
        if name not in pipeline.METHODS:
            raise LatentSRError(f"weights given for unknown method '{name}' (methods: {', '.join(pipeline.METHODS)})")
    for method in methods:
        try:
            pipeline.method_function(method)
        except ImportError as error:
            raise LatentSRError(f"method '{method}' is not available in this installation ({error})") from None
        if method in pipeline.CONVENTIONAL:
            continue
        # A learned method: find its weights now rather than after hours of the other methods.
        # (Imported here: the registry imports torch, which the conventional methods never need.)
        from .models import registry
        try:
            path, _ = registry.resolve(weights_for(method, weights), pipeline.WEIGHTS_KIND[method])
        except LatentSRError as error:
            raise LatentSRError(f"method '{method}': {error}") from None
        if not Path(path).exists():
            raise LatentSRError(f"weights for method '{method}' are missing: {path}")
    return methods


def _frames(path: Path) -> list[tuple[str, Volume]]:
    """Each frame of a file as its own 3D volume, named after the file (and frame for 4D files)."""
    volume = read(path)
    name = volume_name(path)
    if volume.n_frames == 1 and not volume.is_4d:
        return [(name, volume)]
    return [(f"{name}_t{t:02d}", volume.with_array(volume.array[t:t + 1])) for t in range(volume.n_frames)]


@dataclasses.dataclass
class ProtocolCase:
    """One volume prepared for the protocol: the normalised truth (slices first), the kept slices as
    a volume in the input's geometry, the slice axis, and the indices of the slices to score."""

    name: str
    truth: np.ndarray
    kept_volume: Volume
    axis: int
    scored: list[int]
    keep_every: int

    def score(self, method: str, recreated: np.ndarray) -> list[Row]:
        """Rows for a method's output on ``kept_volume`` (its array, (T, Z, Y, X) with T = 1)."""
        recreated = np.moveaxis(recreated[0], self.axis, 0)
        rows = []
        for j in self.scored:
            ref, test = centre_crop(self.truth[j], CROP), centre_crop(recreated[j], CROP)
            rows.append(Row(self.name, j, method, ssim(ref, test), psnr(ref, test), vif(ref, test)))
        return rows


def protocol_case(name: str, volume: Volume, keep_every: int = 2) -> ProtocolCase:
    """Steps 1-2 of the protocol for one 3D volume (one frame).

    Raises:
        LatentSRError: fewer than K + 1 slices (no dropped slice lies between two kept ones).
    """
    axis = slice_axis(volume)  # Z for ACDC (and on ties, e.g. an isotropic brain)
    frame = volume.array[0]
    truth = PercentileScaling.fit(frame).forward(frame, clip=True)
    truth = np.moveaxis(truth, axis, 0)  # slices first: (n, rows, columns)
    n = truth.shape[0]
    kept = truth[::keep_every]
    if len(kept) < 2:
        raise LatentSRError(f"{name} has {n} slices: keeping every {keep_every}th leaves fewer than 2")
    # The kept slices as a volume with K times the slice spacing, in the input's geometry.
    spacing = list(volume.spacing)
    spacing[2 - axis] *= keep_every
    kept_volume = volume.with_array(np.moveaxis(kept, 0, axis)[None], tuple(spacing))
    # Dropped slices between the first and the last kept slice; later ones cannot be re-created.
    scored = [j for j in range((len(kept) - 1) * keep_every + 1) if j % keep_every]
    return ProtocolCase(name, truth, kept_volume, axis, scored, keep_every)


def evaluate_volume(name: str, volume: Volume, methods: Sequence[str], keep_every: int = 2,
                    device: str = "auto", weights: dict[str, str] | None = None,
                    ae_correction_sigma_mm: float | None = None, ae_correction_gain: float | None = None
                    ) -> list[Row]:
    """Run the protocol on one 3D volume (one frame); returns one row per scored slice and method.

    ``ae_correction_sigma_mm``, ``ae_correction_gain``: the AE's :class:`LatentSRLib.pipeline.Run`
    options (None: what the weights record).

    Raises:
        LatentSRError: fewer than K + 1 slices (no dropped slice lies between two kept ones).
    """
    case = protocol_case(name, volume, keep_every)
    rows = []
    for method in methods:
        run = pipeline.Run(device=device, weights=weights_for(method, weights),
                           ae_correction_sigma_mm=ae_correction_sigma_mm,
                           ae_correction_gain=ae_correction_gain)
        result = pipeline.super_resolve(case.kept_volume, method, factor=keep_every, axis=case.axis, run=run)
        rows.extend(case.score(method, result.array))
    return rows


def _stats(values: np.ndarray) -> MethodStats:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return MethodStats(0, math.nan, math.nan, math.nan)
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return MethodStats(len(values), float(np.mean(values)), sd, float(np.median(values)))


def compare(rows: list[Row], method: str, baseline: str, metric: str) -> Comparison:
    """Paired per (volume, slice): H1 = the method's score is higher than the baseline's."""
    from scipy.stats import wilcoxon

    mine = {(r.volume, r.slice): getattr(r, metric) for r in rows if r.method == method}
    theirs = {(r.volume, r.slice): getattr(r, metric) for r in rows if r.method == baseline}
    keys = [k for k in mine if k in theirs and np.isfinite(mine[k]) and np.isfinite(theirs[k])]
    a = np.array([mine[k] for k in keys])
    b = np.array([theirs[k] for k in keys])
    difference = a - b
    median = float(np.median(difference)) if len(keys) else math.nan
    if len(keys) == 0 or not np.any(difference != 0):
        return Comparison(method, baseline, metric, len(keys), median, math.nan, math.nan)
    test = wilcoxon(a, b, alternative="greater")
    return Comparison(method, baseline, metric, len(keys), median, float(test.statistic), float(test.pvalue))


def comparisons(rows: list[Row], methods: Sequence[str]) -> list[Comparison]:
    """Each learned method against each conventional baseline, for each metric; then each learned
    method against each learned method listed before it (e.g. contrastive > ae).

    Without a learned method, linear (else the first method) against the other conventional ones,
    so that the table shows the baselines' own ordering.
    """
    learned = [m for m in methods if m not in pipeline.CONVENTIONAL]
    baselines = [m for m in methods if m in pipeline.CONVENTIONAL]
    if not learned:
        challenger = "linear" if "linear" in methods else methods[0]
        learned, baselines = [challenger], [m for m in baselines if m != challenger]
    pairs = [(m, b) for m in learned for b in baselines]
    pairs += [(m, earlier) for i, m in enumerate(learned) for earlier in learned[:i]]
    return [compare(rows, m, b, metric) for m, b in pairs for metric in METRICS]


def _label(method: str) -> str:
    return pipeline.LABELS.get(method, method)


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def markdown(summary_stats: dict[str, dict[str, MethodStats]], tests: list[Comparison], volumes: list[str],
             skipped: list[str], keep_every: int, n_rows: int) -> str:
    """summary.md: the protocol in one paragraph, a statistics table and a Wilcoxon table."""
    lines = [
        "# Drop-slice evaluation",
        "",
        f"{len(volumes)} volumes; each normalised to [0, 1] by its 1st/99th percentiles (clipped), slices "
        f"0, {keep_every}, {2 * keep_every}, ... kept, the dropped slices between kept ones "
        f"re-created at factor {keep_every} and scored on the centre {CROP}x{CROP} crop "
        "(SSIM Gaussian sigma 1.5, PSNR and VIFp with data range 1).",
        "",
    ]
    if skipped:
        lines += [f"Skipped (too few slices): {', '.join(skipped)}.", ""]
    header = "| method | n |" + "".join(f" {METRIC_LABELS[m]} mean | sd | median |" for m in METRICS)
    lines += [header, "|---|---:|" + "---:|---:|---:|" * len(METRICS)]
    for method, by_metric in summary_stats.items():
        n = by_metric["ssim"].n
        cells = "".join(f" {s.mean:.4f} | {s.sd:.4f} | {s.median:.4f} |"
                        for s in (by_metric[m] for m in METRICS))
        lines.append(f"| {_label(method)} | {n} |{cells}")
    lines += ["", "One-sided Wilcoxon signed-rank tests, paired per slice (H1: the first method scores higher):", "",
              "| comparison | metric | n | median difference | p |", "|---|---|---:|---:|---:|"]
    for c in tests:
        lines.append(f"| {_label(c.method)} > {_label(c.baseline)} | {METRIC_LABELS[c.metric]} | {c.n} | "
                     f"{c.median_difference:+.4f} | {_p(c.p)} |")
    if not tests:
        lines.append("| (a single method: nothing to compare) | | | | |")
    lines += ["", f"{n_rows} rows in metrics.csv.", ""]
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow([r.volume, r.slice, r.method, *(f"{getattr(r, m):.6g}" for m in METRICS)])
    return path


def boxplots(rows: list[Row], methods: Sequence[str], path: Path) -> Path:
    """One panel per metric, one box per method (matplotlib's Agg canvas: no GUI, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4 * len(METRICS), 4), layout="constrained")
    FigureCanvasAgg(figure)
    for i, metric in enumerate(METRICS):
        axes = figure.add_subplot(1, len(METRICS), i + 1)
        data = [np.array([getattr(r, metric) for r in rows if r.method == m], dtype=float) for m in methods]
        data = [d[np.isfinite(d)] for d in data]
        axes.boxplot(data, showmeans=True)
        axes.set_xticks(range(1, len(methods) + 1), [_label(m) for m in methods])
        axes.set_title(METRIC_LABELS[metric])
        axes.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=120)
    return path


def evaluate(paths: Sequence[str | os.PathLike], methods: Sequence[str], out_dir: str | os.PathLike,
             keep_every: int = 2, device: str = "auto", weights: dict[str, str] | None = None,
             progress: bool = True, ae_correction_sigma_mm: float | None = None,
             ae_correction_gain: float | None = None) -> Summary:
    """Run the drop-slice protocol on files or folders and write metrics.csv, summary.md, boxplots.png.

    Args:
        paths: image files and folders (searched recursively; ``_gt``/``-label`` masks are skipped).
        methods: names from :data:`LatentSRLib.pipeline.METHODS`, e.g. ("linear", "bspline", "ae").
        out_dir: created if missing; the three files are overwritten.
        keep_every: K: keep slices 0, K, 2K, ... and re-create the others at factor K.
        device: for learned methods ("auto", "cpu", "cuda", ...).
        weights: per learned method, a bundled model name or a weights file (default: bundled).
        progress: show a tqdm bar over files.
        ae_correction_sigma_mm, ae_correction_gain: overrides of the AE weights' correction
            smoothing and gain (None: theirs).

    Returns:
        A :class:`Summary`; its ``markdown`` is summary.md (the CLI prints it).

    Raises:
        LatentSRError: bad options, unavailable methods or weights (before any work), no images,
            or no volume with enough slices.
    """
    if isinstance(keep_every, bool) or int(keep_every) != keep_every or keep_every < 2:
        raise LatentSRError(f"keep_every must be an integer of at least 2, got {keep_every!r}")
    keep_every = int(keep_every)
    methods = check_methods(methods, weights)
    files = find_images(paths)
    if not files:
        raise LatentSRError(f"no images found in {', '.join(map(str, paths))}")
    from tqdm import tqdm

    rows: list[Row] = []
    volumes: list[str] = []
    skipped: list[str] = []
    for path in tqdm(files, desc="evaluate", unit="file", disable=not progress):
        for name, volume in _frames(path):
            if volume.array.shape[1 + slice_axis(volume)] < keep_every + 1:
                skipped.append(name)
                continue
            rows.extend(evaluate_volume(name, volume, methods, keep_every, device, weights, ae_correction_sigma_mm,
                                        ae_correction_gain))
            volumes.append(name)
    if not rows:
        raise LatentSRError(f"no volume has the {keep_every + 1} slices needed to drop and re-create one")
    return summarise(rows, methods, out_dir, keep_every=keep_every, volumes=volumes, skipped=skipped)


def summarise(rows: Sequence[Row], methods: Sequence[str], out_dir: str | os.PathLike, keep_every: int = 2,
              volumes: Sequence[str] | None = None, skipped: Sequence[str] = ()) -> Summary:
    """Statistics, Wilcoxon tests and the three output files for rows of :func:`evaluate_volume`.

    Writes ``out_dir``/metrics.csv, summary.md and boxplots.png (``out_dir`` is created).
    ``volumes`` defaults to the volume names in ``rows``, in order.
    """
    rows = list(rows)
    methods = list(dict.fromkeys(methods))
    volumes = list(volumes) if volumes is not None else list(dict.fromkeys(r.volume for r in rows))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {m: {metric: _stats(np.array([getattr(r, metric) for r in rows if r.method == m], dtype=float))
                 for metric in METRICS} for m in methods}
    tests = comparisons(rows, methods)
    text = markdown(stats, tests, volumes, list(skipped), keep_every, len(rows))
    csv_path = write_csv(rows, out_dir / "metrics.csv")
    summary_path = out_dir / "summary.md"
    summary_path.write_text(text)
    plot_path = boxplots(rows, methods, out_dir / "boxplots.png")
    return Summary(rows, stats, tests, volumes, list(skipped), keep_every, text, out_dir, csv_path,
                   summary_path, plot_path)
