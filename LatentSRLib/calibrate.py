"""Validation without truth for a static scan, and the choice of a learned method's correction calibration.

A thick-slice scan has no truth between its slices, but its in-plane axes are finely sampled.
:func:`reformat_cases` interpolates the scan along its slice axis to the in-plane pixel size, makes an
in-plane axis (x, then y) the slice axis, and prepares the drop-slice protocol on it: keep every K-th
plane (K pixels apart, e.g. 5 mm for 5 mm slices at 1 mm), re-create the others, score them against
the planes that were dropped. The images are blurred along the former slice axis, so these numbers
rank methods; they are not the truth-based scores of the real task.

:func:`correction_grid` runs a learned method once per case with its correction uncalibrated, then
scores ``linear + gain * smooth_sigma(method - linear)`` for every (sigma, gain) pair against linear
interpolation (:mod:`LatentSRLib.synthesize.correction`); :func:`choose` applies the rule the model
card states. ``latentsr adapt`` and ``benchmarks/correction_grid.py`` use them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np

from . import LatentSRError, pipeline
from .evaluate import ProtocolCase, compare, protocol_case
from .intensity import clip_to_input_range
from .interpolate import through_plane_planes
from .synthesize.correction import adjust_correction
from .volume import Volume


def along_inplane_axis(volume: Volume, axis: str) -> Volume:
    """The scan (first frame), linearly interpolated along z to about its in-plane pixel size, with
    ``axis`` ("x" or "y") as the new slice axis. Geometry is simplified (identity direction, zero
    origin): only the spacings matter to the protocol."""
    if axis not in ("x", "y"):
        raise LatentSRError(f"axis must be x or y, not {axis!r}")
    sx, sy, sz = volume.spacing
    factor = max(1, int(round(sz / min(sx, sy))))
    planes = through_plane_planes(volume.array[0], factor)[axis]
    # In-plane (column, row) spacings of the planes, then the new slice spacing.
    spacing = (sy, sz / factor, sx) if axis == "x" else (sx, sz / factor, sy)
    return Volume(np.ascontiguousarray(planes)[None], spacing)


def reformat_keep_every(volume: Volume) -> int:
    """K for :func:`reformat_cases`: the slice spacing in in-plane pixels, so the gaps match the scan's."""
    sx, sy, sz = volume.spacing
    return max(2, int(round(sz / min(sx, sy))))


def reformat_cases(volume: Volume, keep_every: int | None = None, name: str = "scan",
                   axes: Sequence[str] = ("x", "y")) -> list[ProtocolCase]:
    """The protocol along the in-plane axes of a static scan (see the module docstring)."""
    keep_every = keep_every or reformat_keep_every(volume)
    return [protocol_case(f"{name}[along {axis}]", along_inplane_axis(volume, axis), keep_every) for axis in axes]


@dataclasses.dataclass
class GridRow:
    """One (sigma, gain) setting against linear interpolation: means, median paired differences and
    one-sided Wilcoxon p (H1: the calibrated method scores higher)."""

    sigma_mm: float
    gain: float
    ssim: float
    ssim_difference: float
    ssim_p: float
    psnr: float
    psnr_difference: float
    psnr_p: float


def _mean_finite(values: Iterable[float]) -> float:
    values = np.asarray(list(values), dtype=float)
    return float(values[np.isfinite(values)].mean())


def correction_grid(cases: Sequence[ProtocolCase], method: str, weights: str | None, sigmas: Sequence[float],
                    gains: Sequence[float], device: str = "auto",
                    progress: Callable[[float], None] | None = None) -> tuple[GridRow, list[GridRow]]:
    """(linear's row, one row per (sigma, gain)): see the module docstring.

    Raises:
        LatentSRError: a case whose slice axis is not z, AE weights not in corrected mode, or
            contrastive weights that already record a calibration (the AE's is switched off through
            its run options).
    """
    from .models import registry

    meta = registry.load(weights, method).get("meta", {})
    if method == "ae" and meta.get("mode", "latent") != "corrected":
        raise LatentSRError(f"{weights} decodes in '{meta.get('mode', 'latent')}' mode: only the corrected mode "
                            "has a correction to calibrate")
    if method == "contrastive" and (meta.get("correction_sigma_mm", 0) != 0 or meta.get("correction_gain", 1) != 1):
        raise LatentSRError(f"{weights} already records a correction calibration: give the uncalibrated weights")
    linear_rows, outputs = [], []
    for i, case in enumerate(cases):
        if case.axis != 0:
            raise LatentSRError(f"{case.name}: the slice axis must be the last image axis (z)")
        # The raw correction (unclipped); each grid setting is clipped as the pipeline clips its output.
        run = pipeline.Run(device=device, weights=weights, correction_sigma_mm=0.0, correction_gain=1.0, clip=False)
        learned = pipeline.super_resolve(case.kept_volume, method, factor=case.keep_every, run=run).array
        linear = pipeline.super_resolve(case.kept_volume, "linear", factor=case.keep_every).array
        linear_rows += case.score("linear", linear)
        sx, sy, _ = case.kept_volume.spacing
        outputs.append((case, linear, learned - linear, (sy, sx)))
        if progress is not None:
            progress((i + 1) / len(cases))
    rows = []
    for sigma in sigmas:
        for gain in gains:
            scored = [row for case, linear, correction, spacing_yx in outputs
                      for row in case.score("calibrated", clip_to_input_range(
                          linear + adjust_correction(correction, spacing_yx, sigma, gain), case.kept_volume.array))]
            s, p = (compare(linear_rows + scored, "calibrated", "linear", metric) for metric in ("ssim", "psnr"))
            rows.append(GridRow(sigma, gain, _mean_finite(r.ssim for r in scored), s.median_difference, s.p,
                                _mean_finite(r.psnr for r in scored), p.median_difference, p.p))
    linear_row = GridRow(0.0, 0.0, _mean_finite(r.ssim for r in linear_rows), 0.0, 1.0,
                         _mean_finite(r.psnr for r in linear_rows), 0.0, 1.0)
    return linear_row, rows


def choose(rows: Sequence[GridRow], alpha: float = 0.01) -> tuple[GridRow, bool]:
    """The setting with the largest median paired SSIM gain among those whose SSIM and PSNR gains are
    both positive with p < ``alpha`` (SSIM is the metric at risk: the correction tends to gain PSNR
    first); ties go to the larger PSNR gain. Returns (row, True), or (the largest SSIM gain, False)
    when no setting qualifies."""
    if not rows:
        raise LatentSRError("no calibration settings to choose from")
    qualified = [r for r in rows if r.ssim_difference > 0 and r.psnr_difference > 0 and r.ssim_p < alpha
                 and r.psnr_p < alpha]
    pool = qualified or list(rows)
    best = max(pool, key=lambda r: (r.ssim_difference, r.psnr_difference))
    return best, bool(qualified)


def grid_markdown(linear: GridRow, rows: Sequence[GridRow], chosen: GridRow | None = None) -> str:
    """The grid as a markdown table (the chosen row in bold)."""
    lines = ["| sigma (mm) | gain | SSIM mean | median diff | p | PSNR mean | median diff | p |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| linear | | {linear.ssim:.4f} | | | {linear.psnr:.3f} | | |"]
    for r in rows:
        cells = [f"{r.sigma_mm:g}", f"{r.gain:g}", f"{r.ssim:.4f}", f"{r.ssim_difference:+.4f}", f"{r.ssim_p:.2g}",
                 f"{r.psnr:.3f}", f"{r.psnr_difference:+.3f}", f"{r.psnr_p:.2g}"]
        if r is chosen:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
