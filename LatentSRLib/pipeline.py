"""super_resolve: one call from a :class:`Volume` to its through-plane super-resolved version.

Data flows one way: validate -> choose slice axis and factor -> normalise (1st/99th percentile)
-> move the slice axis to Z -> the method upsamples (T, Z, Y, X) -> back to the input's units,
axis order and geometry. Every method, conventional or learned, implements the same contract:

    upsample(array, factor, spacing_zyx, run) -> array with (Z - 1) * factor + 1 slices

where ``array`` is (T, Z, Y, X) float32 with Z the slice axis (see :mod:`.methods.base`), and ``run`` is a
:class:`Run` carrying device, weights, progress and cancel.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import LatentSRError, memory, methods
from .intensity import PercentileScaling, clip_to_input_range
from .methods import Cancelled, Method, Run  # noqa: F401  (the pipeline's public API)
from .volume import Volume, slice_axis, validate

# Views of the method registry (:mod:`LatentSRLib.methods`) by name, for callers that list methods.
#: Methods by name.
METHODS: dict[str, Method] = {method.name: method for method in methods.REGISTRY}
CONVENTIONAL = tuple(m.name for m in methods.REGISTRY if not m.learned)
LEARNED = tuple(m.name for m in methods.REGISTRY if m.learned)
#: Which weights (registry kind) each learned method loads.
WEIGHTS_KIND = {m.name: m.weights_kind for m in methods.REGISTRY if m.weights_kind}
#: Readable names, for tables, figures and Slicer node names.
LABELS = {m.name: m.label for m in methods.REGISTRY}


class NothingToDo(LatentSRError):
    """The factor would be 1 without being asked for: the result would be a copy of the input."""


def method_function(method: str) -> Callable[[np.ndarray, int, tuple, Run], np.ndarray]:
    """The ``upsample`` of the method called ``method`` (case-insensitive)."""
    return methods.get(method).upsample


def choose_factor(volume: Volume, factor: int | None = None, spacing: float | None = None,
                  axis: int | None = None, allow_copy: bool = True) -> int:
    """The integer upsampling factor along the slice axis.

    With neither ``factor`` nor ``spacing``: as near isotropic as an integer allows,
    round(slice spacing / finest in-plane spacing), at least 1. With ``spacing`` (mm):
    round(slice spacing / spacing). Without ``allow_copy``, a factor of 1 that was not asked for (a
    target spacing not below the slice spacing, a near-isotropic input) is refused: the result
    would be a copy of the input, which is not what anyone running super-resolution wants.
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
        if not (0 < spacing < np.inf and through / spacing < np.inf):  # NaN, inf and 1e-320 too
            raise LatentSRError(f"the target spacing must be a positive, finite number of mm, got {spacing}")
        chosen = max(1, int(round(through / spacing)))
        if chosen == 1 and not allow_copy:
            raise NothingToDo(f"nothing to do: slices {through:g} mm apart need no upsampling for a {spacing:g} mm "
                                "spacing (factor 1, a copy of the input); give a smaller spacing or a factor")
        return chosen
    inplane = min(s for i, s in enumerate(spacing_zyx) if i != axis)
    chosen = max(1, int(round(through / inplane)))
    if chosen == 1 and not allow_copy:
        raise NothingToDo(f"nothing to do: the input is already near isotropic (slices {through:g} mm apart, "
                            f"pixels {inplane:g} mm; factor 1, a copy of the input); give a factor to upsample anyway")
    return chosen


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
    run.confidence = None
    run.notes = []
    chosen = methods.get(method)
    axis = slice_axis(volume) if axis is None else axis
    if axis not in (0, 1, 2):
        raise LatentSRError(f"the slice axis must be 0 (Z), 1 (Y) or 2 (X), got {axis}")
    validate(volume)
    factor = choose_factor(volume, factor, spacing, axis)
    memory.check_output_fits(volume.array.shape, factor, axis, learned=chosen.learned, batch_slices=run.batch_slices)
    out_spacing = output_geometry(volume, factor, axis)
    if factor == 1:
        run.report(1.0)
        return volume.with_array(volume.array.copy())

    # Learned models work on percentile-normalised intensities. Conventional methods run in the input's
    # own units: ITK's Lanczos weights do not sum to one, so it is not shift-invariant, and results must
    # match SimpleITK on the user's data.
    # Methods compute in float32; a float64 input (:func:`.volume.carrier_dtype`) comes back as float64.
    scaling = PercentileScaling.fit(volume.array) if chosen.normalised else PercentileScaling.unit(volume.array)
    # Slice axis to Z (array axis 1 of T, Z, Y, X); back afterwards.
    array = np.moveaxis(scaling.forward(volume.array), 1 + axis, 1)
    spacing_zyx = tuple(np.array(volume.spacing[::-1])[[axis] + [i for i in range(3) if i != axis]])
    run.report(0.0)
    result = chosen.upsample(np.ascontiguousarray(array), factor, spacing_zyx, run)
    expected = (array.shape[0], (array.shape[1] - 1) * factor + 1, *array.shape[2:])
    if result.shape != expected:
        raise AssertionError(f"method {chosen.name} returned {result.shape}, expected {expected}")
    result = np.moveaxis(scaling.inverse(result, volume.array.dtype), 1, 1 + axis)
    if run.confidence is not None:  # the method's trust map, on the output grid like the result
        run.confidence = dataclasses.replace(volume.with_array(
            np.ascontiguousarray(np.moveaxis(run.confidence, 1, 1 + axis), dtype=np.float32), out_spacing),
            pixel_type=np.dtype(np.float32))  # a 0..1 map, whatever the input's pixel type
    if run.clip if run.clip is not None else chosen.learned:
        result = clip_to_input_range(result, volume.array)
    if run.keep_original:
        # Acquired slices are the input's own samples, bit for bit (no round trip through scaling or float32).
        index = [slice(None)] * 4
        index[1 + axis] = slice(None, None, factor)
        result[tuple(index)] = volume.array
    run.report(1.0)
    return volume.with_array(np.ascontiguousarray(result, dtype=volume.array.dtype), out_spacing)
