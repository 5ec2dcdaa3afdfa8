"""The papers' drop-slice evaluation protocol (Sander et al.): what is scored, and how.

For every volume (each frame of a 4D file is a volume of its own):

1. normalise to [0, 1] by its own 1st/99th percentiles, clipped;
2. keep every K-th slice along the slice axis (slices 0, K, 2K, ...);
3. re-create the dropped slices with each method, upsampling the kept slices by K through
   :func:`LatentSRLib.pipeline.super_resolve` (the same path users run);
4. score each re-created slice against the dropped original on the centre 128 x 128 crop with
   SSIM, PSNR and VIF (:mod:`LatentSRLib.metrics`).

Which slices are scored (the same ones for every metric and method):

- only dropped slices between two kept slices (those after the last kept one cannot be re-created);
- **content rule**: only slices with content, i.e. where at least 5 % (:data:`MIN_FOREGROUND`) of the
  hidden slice's scored region (the centre crop) is above 0.05 (:data:`FOREGROUND_LEVEL`) in
  normalised intensity. An empty slice (air above the head, beyond the apex) has SSIM near 1 and
  PSNR near infinity for any method, which says nothing about the method and inflates means; such
  slices are counted as excluded in summary.md.
- PSNR is capped at 60 dB (:data:`PSNR_CAP`; an exact re-creation has infinite PSNR), so no mean is
  infinite; metrics.csv holds the capped values.

Writes ``metrics.csv`` (``volume,slice,method,ssim,psnr,vif``), ``summary.md`` (volumes, weights with
sha256, per-method statistics and one-sided Wilcoxon signed-rank tests), ``boxplots.png`` and
``comparison.png`` (the through-plane view of the first volume: the hidden slices' truth, each
method's re-creation and its difference to the truth). Statistics and files: :mod:`.report` and
:mod:`.figures`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import LatentSRError, atomic, figures, pipeline
from .folders import check_folder
from .intensity import PercentileScaling, label_values
from .metrics import centre_crop, psnr, ssim, vif
from .report import (CSV_COLUMNS, METRIC_LABELS, METRICS, Comparison, MethodStats, Row, Summary,  # noqa: F401
                     baseline_of, compare, comparisons, label, markdown, method_stats, weights_used, write_csv)
from .volume import Volume, find_images, read, slice_axis, volume_name

CROP = 128
#: Content rule: a hidden slice is scored only if at least MIN_FOREGROUND of its centre crop is above
#: FOREGROUND_LEVEL (normalised intensity).
FOREGROUND_LEVEL = 0.05
MIN_FOREGROUND = 0.05
#: PSNR above this (dB) is recorded as this: identical slices have infinite PSNR.
PSNR_CAP = 60.0
CONTENT_RULE = (f"a hidden slice is scored only if at least {MIN_FOREGROUND:.0%} of its centre crop is above "
                f"{FOREGROUND_LEVEL:g} in normalised intensity; PSNR is capped at {PSNR_CAP:g} dB.")


def weights_for(method: str, weights: dict[str, str] | None) -> str | None:
    """The weights given for a method, or for the model it shares them with (ae-latent uses ae's)."""
    weights = weights or {}
    return weights.get(method) or weights.get(pipeline.WEIGHTS_KIND.get(method, method))


def canonical(method: str) -> str:
    """The registered spelling of a method name ("AE" -> "ae"); unknown names are returned as given."""
    lowered = str(method).strip().lower()
    return lowered if lowered in pipeline.METHODS else str(method).strip()


def check_methods(methods: Sequence[str], weights: dict[str, str] | None = None) -> list[str]:
    """Validate the methods (and learned weights) before any work; returns them without duplicates.

    Raises:
        LatentSRError: an unknown method, one whose implementation cannot be imported, weights
            given for an unknown method, or a learned method whose weights cannot be found.
    """
    methods = list(dict.fromkeys(canonical(m) for m in methods))
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
        if method not in pipeline.WEIGHTS_KIND:
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


def has_content(hidden: np.ndarray, crop: int = CROP) -> bool:
    """The content rule on one hidden slice (normalised): enough of its centre crop is foreground."""
    return float(np.mean(centre_crop(hidden, crop) > FOREGROUND_LEVEL)) >= MIN_FOREGROUND


@dataclasses.dataclass
class ProtocolCase:
    """One volume prepared for the protocol: the normalised truth (slices first), the kept slices as
    a volume in the input's geometry, the slice axis, the indices of the slices to score and of those
    the content rule excluded."""

    name: str
    truth: np.ndarray
    kept_volume: Volume
    axis: int
    scored: list[int]
    keep_every: int
    excluded: list[int] = dataclasses.field(default_factory=list)

    def score(self, method: str, recreated: np.ndarray) -> list[Row]:
        """Rows for a method's output on ``kept_volume`` (its array, (T, Z, Y, X) with T = 1)."""
        recreated = np.moveaxis(recreated[0], self.axis, 0)
        rows = []
        for j in self.scored:
            ref, test = centre_crop(self.truth[j], CROP), centre_crop(recreated[j], CROP)
            rows.append(Row(self.name, j, method, ssim(ref, test), min(psnr(ref, test), PSNR_CAP), vif(ref, test)))
        return rows

    def spacing(self) -> tuple[float, float, float]:
        """mm between the truth's slices, rows and columns (its array order)."""
        zyx = np.array(self.kept_volume.spacing[::-1])
        zyx[self.axis] /= self.keep_every
        return tuple(float(s) for s in zyx[[self.axis] + [i for i in range(3) if i != self.axis]])

    def letters(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """Orientation letters of the comparison figure's columns and slice axes."""
        columns = [i for i in range(3) if i != self.axis][1]
        direction = self.kept_volume.direction
        return (figures.orientation_letters(direction, 2 - columns),
                figures.orientation_letters(direction, 2 - self.axis))


def protocol_case(name: str, volume: Volume, keep_every: int = 2, content_rule: bool = False) -> ProtocolCase:
    """Steps 1-2 of the protocol for one 3D volume (one frame); with ``content_rule``, hidden slices
    without content are excluded (module docstring). :func:`evaluate` and the demo apply the rule;
    it is off by default for the per-scan workflows (calibration, check) that build cases themselves.

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
    hidden = [j for j in range((len(kept) - 1) * keep_every + 1) if j % keep_every]
    scored = [j for j in hidden if not content_rule or has_content(truth[j])]
    excluded = [j for j in hidden if j not in scored]
    return ProtocolCase(name, truth, kept_volume, axis, scored, keep_every, excluded)


def evaluate_volume(name: str, volume: Volume, methods: Sequence[str], keep_every: int = 2,
                    device: str = "auto", weights: dict[str, str] | None = None,
                    correction_sigma_mm: float | None = None, correction_gain: float | None = None,
                    *, case: ProtocolCase | None = None, outputs: dict[str, np.ndarray] | None = None,
                    resampling_check: bool = True) -> list[Row]:
    """Run the protocol on one 3D volume (one frame); returns one row per scored slice and method.

    ``correction_sigma_mm``, ``correction_gain``: the learned methods' correction options
    (:class:`LatentSRLib.pipeline.Run`; None: what the weights record); ``resampling_check``: as
    :class:`~LatentSRLib.pipeline.Run`'s. ``case``: the prepared case
    (default :func:`protocol_case`); ``outputs``: if given, filled with each method's re-created
    volume (slices first, normalised), for :func:`case_figure`.

    Raises:
        LatentSRError: fewer than K + 1 slices (no dropped slice lies between two kept ones).
    """
    case = case or protocol_case(name, volume, keep_every, content_rule=True)
    rows = []
    for method in methods:
        run = pipeline.Run(device=device, weights=weights_for(method, weights),
                           correction_sigma_mm=correction_sigma_mm, correction_gain=correction_gain,
                           resampling_check=resampling_check)
        result = pipeline.super_resolve(case.kept_volume, method, factor=case.keep_every, axis=case.axis, run=run)
        rows.extend(case.score(method, result.array))
        if outputs is not None:
            outputs[method] = np.moveaxis(result.array[0], case.axis, 0)
    return rows


def scores_text(rows: Sequence[Row], method: str) -> str:
    """Mean SSIM and PSNR of a method's rows, for a figure title."""
    mine = [r for r in rows if r.method == method and r.finite()]
    if not mine:
        return "no scored slice"
    return f"SSIM {np.mean([r.ssim for r in mine]):.3f}, PSNR {np.mean([r.psnr for r in mine]):.1f} dB"


def case_figure(case: ProtocolCase, outputs: dict[str, np.ndarray], rows: Sequence[Row], path: str | Path,
                title: str = "") -> Path:
    """comparison.png for one protocol case: the truth with the hidden slices, each method's re-creation
    and its difference to the truth, with the case's scores."""
    labelled = {label(m): out for m, out in outputs.items()}
    scores = {label(m): scores_text([r for r in rows if r.volume == case.name], m) for m in outputs}
    return figures.comparison_figure(case.truth, labelled, case.spacing(), path, keep_every=case.keep_every,
                             scores=scores, title=title, letters=case.letters(), crop=CROP)


@dataclasses.dataclass
class FileResult:
    """What :func:`evaluate_file` measured on one file; ``figure``: where comparison.png goes, drawn by
    :func:`summarise_files` from ``figure_parts`` (:func:`case_figure`'s case, outputs, rows and title)
    once every file is scored, so a file failing later leaves no figure behind."""

    rows: list[Row]
    volumes: list[str]
    skipped: list[str]
    excluded: int
    figure: Path | None = None
    figure_parts: tuple | None = None


def evaluate_file(path: str | os.PathLike, methods: Sequence[str], keep_every: int = 2, device: str = "auto",
                  weights: dict[str, str] | None = None, correction_sigma_mm: float | None = None,
                  correction_gain: float | None = None, figure: str | os.PathLike | None = None,
                  dataset: str = "", resampling_check: bool = True) -> FileResult:
    """The protocol on every frame of one file; with ``figure``, comparison.png of its first volume."""
    result = FileResult([], [], [], 0)
    for name, volume in _frames(Path(path)):
        if volume.array.shape[1 + slice_axis(volume)] < keep_every + 1:
            result.skipped.append(f"{name} (too few slices)")
            continue
        if label_values(volume.array, volume.pixel_type) is not None:  # a segmentation named explicitly: not scored, the rest goes on
            result.skipped.append(f"{name} (a label map)")
            continue
        case = protocol_case(name, volume, keep_every, content_rule=True)
        outputs: dict[str, np.ndarray] | None = {} if figure is not None and result.figure is None else None
        rows = evaluate_volume(name, volume, methods, keep_every, device, weights, correction_sigma_mm,
                               correction_gain, case=case, outputs=outputs, resampling_check=resampling_check)
        if outputs:
            result.figure = Path(figure)
            result.figure_parts = (case, outputs, rows, f"{dataset + ': ' if dataset and dataset != name else ''}"
                                                        f"{name}, hidden slices re-created")
        result.rows.extend(rows)
        result.volumes.append(name)
        result.excluded += len(case.excluded)
    return result


def dataset_name(paths: Sequence[str | os.PathLike]) -> str:
    """A short name for the data: the folder or file name, or the first one and a count."""
    names = [volume_name(p) if Path(p).is_file() else Path(p).resolve().name for p in paths]
    return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"


def evaluate(paths: Sequence[str | os.PathLike], methods: Sequence[str], out_dir: str | os.PathLike,
             keep_every: int = 2, device: str = "auto", weights: dict[str, str] | None = None,
             progress: bool = True, correction_sigma_mm: float | None = None,
             correction_gain: float | None = None, dataset: str | None = None,
             resampling_check: bool = True) -> Summary:
    """Run the drop-slice protocol on files or folders and write metrics.csv, summary.md, boxplots.png
    and comparison.png (the first volume).

    Args:
        paths: image files and folders (searched recursively; ``_gt``/``-label`` masks are skipped).
        methods: names from :data:`LatentSRLib.pipeline.METHODS`, e.g. ("linear", "bspline", "ae").
        out_dir: created if missing; the files are overwritten.
        keep_every: K: keep slices 0, K, 2K, ... and re-create the others at factor K.
        device: for learned methods ("auto", "cpu", "cuda", ...).
        weights: per learned method, a bundled model name or a weights file (default: bundled).
        progress: show a tqdm bar over files.
        correction_sigma_mm, correction_gain: overrides of the learned weights' correction
            smoothing and gain (None: theirs).
        dataset: the name in titles (default from ``paths``).
        resampling_check: as :class:`LatentSRLib.pipeline.Run`'s (off: flow and motion never fall
            back to linear because the cross-fade detector calls a stack re-sampled).

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

    out = check_folder(out_dir, "--out")  # made by summarise, once every file is scored: a failure leaves nothing
    dataset = dataset or dataset_name(paths)
    parts: list[FileResult] = []
    for path in tqdm(files, desc="evaluate", unit="file", disable=not progress):
        first_figure = not any(part.figure for part in parts)
        parts.append(evaluate_file(path, methods, keep_every, device, weights, correction_sigma_mm, correction_gain,
                                   figure=out / "comparison.png" if first_figure else None, dataset=dataset,
                                   resampling_check=resampling_check))
    return summarise_files(parts, methods, out, keep_every, dataset, weights, resampling_check)


def summarise_files(parts: Sequence[FileResult], methods: Sequence[str], out: Path, keep_every: int, dataset: str,
                    weights: dict[str, str] | None, resampling_check: bool = True) -> Summary:
    """Merge the per-file results (in file order) and write the summary; used by :func:`evaluate` and by
    the cohort run (:mod:`LatentSRLib.cohort`), which computes the parts on a cluster.

    Raises:
        LatentSRError: nothing to score.
    """
    total = FileResult([], [], [], 0)
    for part in parts:
        total.rows += part.rows
        total.volumes += part.volumes
        total.skipped += part.skipped
        total.excluded += part.excluded
        if total.figure is None and part.figure_parts is not None:
            total.figure, total.figure_parts = part.figure, part.figure_parts
    if not total.rows:
        if total.excluded:
            raise LatentSRError("no slice with content to score (all excluded by the content rule)")
        raise LatentSRError(f"nothing to score: skipped {', '.join(total.skipped)}; the protocol needs images "
                            f"with the {keep_every + 1} slices it drops one from")
    summary = summarise(total.rows, methods, out, keep_every=keep_every, volumes=total.volumes,
                        skipped=total.skipped, dataset=dataset, excluded=total.excluded, rule=CONTENT_RULE,
                        weights=weights, crop=CROP, resampling_check=resampling_check)
    if total.figure_parts is not None:
        case, outputs, rows, title = total.figure_parts
        summary.figure_path = case_figure(case, outputs, rows, total.figure, title)
    return summary


def summarise(rows: Sequence[Row], methods: Sequence[str], out_dir: str | os.PathLike, keep_every: int = 2,
              volumes: Sequence[str] | None = None, skipped: Sequence[str] = (), *, dataset: str = "",
              excluded: int = 0, rule: str = "", weights: dict[str, str] | None = None,
              crop: int = 128, resampling_check: bool = True) -> Summary:
    """Statistics, Wilcoxon tests and the output files for rows of the protocol.

    Writes ``out_dir``/metrics.csv, summary.md and boxplots.png (``out_dir`` is created).
    ``volumes`` defaults to the volume names in ``rows``, in order; ``excluded`` (hidden slices left
    out by ``rule``) is reported; ``weights`` as given to the methods (named with their sha256).
    """
    rows = list(rows)
    methods = list(dict.fromkeys(methods))
    volumes = list(volumes) if volumes is not None else list(dict.fromkeys(r.volume for r in rows))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {m: method_stats(rows, m) for m in methods}
    tests = comparisons(rows, methods)
    text = markdown(stats, tests, volumes, list(skipped), keep_every, len(rows), dataset=dataset,
                    excluded=excluded, rule=rule, weights=weights_used(methods, weights, resampling_check), crop=crop)
    csv_path = write_csv(rows, out_dir / "metrics.csv")
    summary_path = out_dir / "summary.md"
    atomic.write_text(summary_path, text)  # never through a symlink planted in the folder
    n_volumes = len({r.volume for r in rows})
    plot_path = figures.boxplots(rows, methods, out_dir / "boxplots.png", dataset=dataset or "drop-slice protocol",
                         baseline=baseline_of(methods), n_volumes=n_volumes)
    return Summary(rows, stats, tests, volumes, list(skipped), keep_every, text, out_dir, csv_path,
                   summary_path, plot_path, excluded)
