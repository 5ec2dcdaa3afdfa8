"""super_resolve: one call from a :class:`Volume` to its through-plane super-resolved version.

Data flows one way: validate -> choose slice axis and factor -> normalise (1st/99th percentile)
-> move the slice axis to Z -> the method upsamples (T, Z, Y, X) -> back to the input's units,
axis order and geometry. Every method, conventional or learned, implements the same contract:

    upsample(array, factor, spacing_zyx, run) -> array with (Z - 1) * factor + 1 slices

where ``array`` is (T, Z, Y, X) float32 in normalised units with Z the slice axis, and ``run`` is a
:class:`Run` carrying device, weights, progress and cancel.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import numpy as np

from . import LatentSRError
from .intensity import PercentileScaling
from .volume import Volume, slice_axis, validate

#: Methods by name -> "module:function" implementing the upsample contract (imported on first use,
#: so the conventional methods never import torch).
METHODS: dict[str, str] = {
    "linear": "LatentSRLib.interpolate:upsample_linear",
    "bspline": "LatentSRLib.interpolate:upsample_bspline",
    "lanczos": "LatentSRLib.interpolate:upsample_lanczos",
    "ae": "LatentSRLib.synthesize.autoencoder:upsample",
    "ae-latent": "LatentSRLib.synthesize.autoencoder:upsample_latent",
    "contrastive": "LatentSRLib.synthesize.contrastive:upsample",
}
CONVENTIONAL = ("linear", "bspline", "lanczos")
LEARNED = ("ae", "ae-latent", "contrastive")
#: Which weights (registry kind) each learned method loads.
WEIGHTS_KIND = {"ae": "ae", "ae-latent": "ae", "contrastive": "contrastive"}
#: Readable names, for tables, figures and Slicer node names.
LABELS = {"linear": "Linear", "bspline": "B-spline", "lanczos": "Lanczos", "ae": "AE",
          "ae-latent": "AE (latent only)", "contrastive": "Contrastive"}


class Cancelled(LatentSRError):
    """The user cancelled; nothing was produced."""


@dataclasses.dataclass
class Run:
    """Options and callbacks of one super-resolution run.

    Attributes:
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (learned methods only).
        weights: a bundled model name or a weights file (learned methods; None: the default).
        progress: called with the fraction done in [0, 1].
        cancel: polled between units of work; when it returns True, :class:`Cancelled` is raised.
        keep_original: keep acquired slices bit-for-bit (else learned methods may replace them with
            their reconstruction).
        batch_slices: most slices a learned method feeds the network at once (bounds memory).
        mode: autoencoder inference mode, "latent" or "corrected" (None: what the weights record).
        ae_correction_sigma_mm: Gaussian smoothing (sigma, mm, in-plane) of the autoencoder's
            correction to linear interpolation in corrected mode; 0 none (None: what the weights
            record, else 0).
        ae_correction_gain: factor applied to that (smoothed) correction; 1 keeps it, 0 gives
            linear interpolation (None: what the weights record, else 1).
    """

    device: str = "auto"
    weights: str | None = None
    progress: Callable[[float], None] | None = None
    cancel: Callable[[], bool] | None = None
    keep_original: bool = True
    batch_slices: int = 16
    mode: str | None = None
    ae_correction_sigma_mm: float | None = None
    ae_correction_gain: float | None = None

    def check(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled by the user")

    def report(self, fraction: float) -> None:
        if self.progress is not None:
            self.progress(min(max(float(fraction), 0.0), 1.0))


def method_function(method: str) -> Callable[[np.ndarray, int, tuple, Run], np.ndarray]:
    if method not in METHODS:
        raise LatentSRError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


def choose_factor(volume: Volume, factor: int | None = None, spacing: float | None = None,
                  axis: int | None = None) -> int:
    """The integer upsampling factor along the slice axis.

    With neither ``factor`` nor ``spacing``: as near isotropic as an integer allows,
    round(slice spacing / finest in-plane spacing), at least 1. With ``spacing`` (mm):
    round(slice spacing / spacing).
    """
    axis = slice_axis(volume) if axis is None else axis
    spacing_zyx = volume.spacing[::-1]
    through = spacing_zyx[axis]
    if factor is not None and spacing is not None:
        raise LatentSRError("give either a factor or a target spacing, not both")
    if factor is not None:
        if int(factor) != factor or factor < 1:
            raise LatentSRError(f"the factor must be an integer of at least 1, got {factor}")
        return int(factor)
    if spacing is not None:
        if not spacing > 0:
            raise LatentSRError(f"the target spacing must be positive, got {spacing}")
        return max(1, int(round(through / spacing)))
    inplane = min(s for i, s in enumerate(spacing_zyx) if i != axis)
    return max(1, int(round(through / inplane)))


def output_geometry(volume: Volume, factor: int, axis: int) -> tuple[float, float, float]:
    """Output spacing (x, y, z): the slice axis divided by ``factor``, the others unchanged."""
    spacing = list(volume.spacing)
    spacing[2 - axis] = volume.spacing[2 - axis] / factor
    return tuple(spacing)


def super_resolve(volume: Volume, method: str, factor: int | None = None, spacing: float | None = None,
                  *, axis: int | None = None, run: Run | None = None, **options) -> Volume:
    """Super-resolve a 3D or 4D volume through-plane.

    Args:
        volume: the input (never modified).
        method: one of :data:`METHODS`.
        factor: integer upsampling factor along the slice axis; or
        spacing: target slice spacing in mm (factor = round(slice spacing / spacing)); with neither,
            as near isotropic as an integer factor allows.
        axis: the slice axis as an index into (Z, Y, X); default the one with the largest spacing.
        run: device, weights, progress and cancel; ``options`` are shorthands for its fields.

    Returns:
        A new volume with (n - 1) * factor + 1 slices, spacing s / factor along the slice axis,
        the input's origin, direction, in-plane spacing and pixel type; acquired slices unchanged.

    Raises:
        LatentSRError: unusable input or options; :class:`Cancelled` if ``run.cancel`` fired.
    """
    run = run or Run(**options)
    upsample = method_function(method)
    axis = slice_axis(volume) if axis is None else axis
    if axis not in (0, 1, 2):
        raise LatentSRError(f"the slice axis must be 0 (Z), 1 (Y) or 2 (X), got {axis}")
    validate(volume, axis=axis)
    factor = choose_factor(volume, factor, spacing, axis)
    out_spacing = output_geometry(volume, factor, axis)
    if factor == 1:
        run.report(1.0)
        return volume.with_array(volume.array.copy())

    # Learned models work on percentile-normalised intensities. Conventional methods run in the input's
    # own units: ITK's Lanczos weights do not sum to one, so it is not shift-invariant, and results must
    # match SimpleITK on the user's data.
    scaling = PercentileScaling(0.0, 1.0) if method in CONVENTIONAL else PercentileScaling.fit(volume.array)
    # Slice axis to Z (array axis 1 of T, Z, Y, X); back afterwards.
    array = np.moveaxis(scaling.forward(volume.array), 1 + axis, 1)
    spacing_zyx = tuple(np.array(volume.spacing[::-1])[[axis] + [i for i in range(3) if i != axis]])
    run.report(0.0)
    result = upsample(np.ascontiguousarray(array), factor, spacing_zyx, run)
    expected = (array.shape[0], (array.shape[1] - 1) * factor + 1, *array.shape[2:])
    if result.shape != expected:
        raise AssertionError(f"method {method} returned {result.shape}, expected {expected}")
    result = np.moveaxis(scaling.inverse(result), 1, 1 + axis)
    if run.keep_original:
        # Acquired slices are the input's own samples, bit for bit (no round trip through scaling).
        index = [slice(None)] * 4
        index[1 + axis] = slice(None, None, factor)
        result[tuple(index)] = volume.array
    run.report(1.0)
    return volume.with_array(np.ascontiguousarray(result, dtype=np.float32), out_spacing)
