"""Conventional through-plane baselines: linear, cubic B-spline and Lanczos along one axis.

Upsampling by an integer factor k along an axis of n samples gives (n - 1) * k + 1 samples; output
sample i * k is input sample i, so the first and last slice positions (and every acquired slice)
are kept. The three methods reproduce SimpleITK's ``sitk.Resample`` with ``sitkLinear``,
``sitkBSpline`` (cubic) and ``sitkLanczosWindowedSinc`` on that output grid, to float precision.

Why we hand-write them instead of calling ``sitk.Resample``: the output grid keeps every in-plane
position, so ITK's separable 3D kernels collapse to a delta in-plane and a 1D kernel along the
slice axis. ITK does not know that: its windowed-sinc interpolator visits a 10 x 10 x 10 = 1000
voxel neighbourhood per output voxel (about 36 s for 10 x 256 x 256 at factor 7), and its B-spline
interpolator prefilters and evaluates in all three dimensions. Here each method is a small
(n_out, n_in) weight matrix along the slice axis, built once in float64 and applied to all
in-plane positions with one sparse-times-dense product: milliseconds for the same volume.

Pure numpy/scipy on purpose: the conventional methods must never import torch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage, sparse

from . import LatentSRError

#: The conventional methods implemented here.
METHODS = ("linear", "bspline", "lanczos")
#: SimpleITK's windowed-sinc radius (``WindowingRadius`` in sitkCreateInterpolator.hxx): 10 taps.
LANCZOS_RADIUS = 5


def _grid(n: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output rows, the input index at or below each output sample, and the fractional distance.

    Integer arithmetic so that output i * factor lands exactly on input i (distance exactly 0),
    as it does in ITK, whose windowed sinc switches to a delta at distance 0.
    """
    rows = np.arange((n - 1) * factor + 1)
    return rows, rows // factor, (rows % factor) / factor


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample mirror (d c b | a b c d | c b a), ITK's B-spline boundary; n=1 maps all to 0."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index > n - 1, period - index, index)


def _cubic_bspline(x: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline beta3(x), support (-2, 2)."""
    x = np.abs(x)
    return np.where(x < 1, 2.0 / 3.0 - x**2 + x**3 / 2, np.where(x < 2, (2 - x) ** 3 / 6, 0.0))


def _linear_matrix(n: int, factor: int) -> sparse.csr_matrix:
    """ITK LinearInterpolateImageFunction in 1D: (1 - d) * f[i] + d * f[i + 1], clamped at the end."""
    rows, base, dist = _grid(n, factor)
    upper = np.minimum(base + 1, n - 1)
    return sparse.coo_matrix((np.concatenate([1 - dist, dist]), (np.concatenate([rows, rows]),
                              np.concatenate([base, upper]))), shape=(len(rows), n)).tocsr()


def _lanczos_matrix(n: int, factor: int, radius: int = LANCZOS_RADIUS) -> sparse.csr_matrix:
    """ITK WindowedSincInterpolateImageFunction<radius, LanczosWindowFunction> in 1D.

    As in itkWindowedSincInterpolateImageFunction.hxx: with base = floor(x) and d = x - base, the
    taps are the samples base + o for o = -radius + 1 .. radius with weight
    sinc(d - o) * sinc((d - o) / radius) (the Lanczos window is sin(pi t / R) / (pi t / R)); at
    d == 0 the weights are an exact delta on o = 0. The weights are NOT divided by their sum.
    Samples outside the image take the nearest edge value (ZeroFluxNeumannBoundaryCondition, the
    boundary SimpleITK uses), so the weights of clamped taps add up on the edge slice.
    """
    rows, base, dist = _grid(n, factor)
    offsets = np.arange(-radius + 1, radius + 1)
    t = dist[:, None] - offsets[None, :]
    weights = np.sinc(t) * np.sinc(t / radius)  # np.sinc(x) = sin(pi x) / (pi x), 1 at 0
    weights = np.where(dist[:, None] == 0.0, (offsets == 0)[None, :].astype(float), weights)
    columns = np.clip(base[:, None] + offsets[None, :], 0, n - 1)
    # coo -> csr sums duplicate (row, column) entries: exactly the clamped taps adding up.
    return sparse.coo_matrix((weights.ravel(), (np.repeat(rows, len(offsets)), columns.ravel())),
                             shape=(len(rows), n)).tocsr()


def _bspline_matrix(n: int, factor: int) -> sparse.csr_matrix:
    """Evaluation half of ITK's cubic BSplineInterpolateImageFunction in 1D (on coefficients).

    Sample x uses coefficients floor(x) - 1 .. floor(x) + 2 with weights beta3(x - j), indices
    mirrored at the ends (ApplyMirrorBoundaryConditions). The coefficients come from
    :func:`_bspline_prefilter`.
    """
    rows, base, dist = _grid(n, factor)
    offsets = np.arange(-1, 3)
    weights = _cubic_bspline(dist[:, None] - offsets[None, :])
    columns = _mirror(base[:, None] + offsets[None, :], n)
    return sparse.coo_matrix((weights.ravel(), (np.repeat(rows, len(offsets)), columns.ravel())),
                             shape=(len(rows), n)).tocsr()


def _bspline_prefilter(x: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients along axis 0 (ITK's BSplineDecompositionImageFilter).

    ITK's recursive filter with mirror initial conditions (Unser 1999) solves the interpolation
    condition with whole-sample mirror boundaries; scipy's ``mode='mirror'`` is the same boundary
    and matches ITK to 1e-15 (checked in Testing/test_interpolate.py). Only the slice axis is
    prefiltered: in-plane the output samples sit on the input grid, where ITK's in-plane prefilter
    and evaluation cancel exactly.
    """
    if x.shape[0] == 1:
        return x.copy()
    return ndimage.spline_filter1d(x, order=3, axis=0, mode="mirror", output=x.dtype)


_MATRICES: dict[str, Callable[[int, int], sparse.csr_matrix]] = {
    "linear": _linear_matrix,
    "bspline": _bspline_matrix,
    "lanczos": _lanczos_matrix,
}


def weight_matrix(n: int, factor: int, method: str) -> np.ndarray:
    """The dense (n_out, n) matrix W with upsample(f) = W @ f along the axis (for tests and plots).

    For B-spline it includes the prefilter, so every row sums to 1 (as for linear); Lanczos rows
    do not sum to 1 (ITK's unnormalised windowed sinc).
    """
    _check(factor, method)
    evaluate = _MATRICES[method](n, factor).toarray()
    if method == "bspline":
        return evaluate @ _bspline_prefilter(np.eye(n))
    return evaluate


def _check(factor: int, method: str) -> None:
    if method not in _MATRICES:
        raise LatentSRError(f"unknown interpolation method '{method}' (choose from {', '.join(METHODS)})")
    if isinstance(factor, bool) or int(factor) != factor or factor < 1:
        raise LatentSRError(f"the upsampling factor must be an integer of at least 1, got {factor!r}")


def upsample(array: np.ndarray, factor: int, method: str, axis: int = 1) -> np.ndarray:
    """Resample ``array`` along ``axis`` only, from n to (n - 1) * factor + 1 samples.

    Args:
        array: any real array, e.g. (T, Z, Y, X) with the slice axis ``axis=1``.
        factor: integer upsampling factor >= 1.
        method: "linear", "bspline" (cubic, ITK's mirror boundary) or "lanczos" (ITK's radius-5
            Lanczos-windowed sinc, unnormalised, edge-clamped).
        axis: the axis to upsample.

    Returns:
        Shape of ``array`` with ``(n - 1) * factor + 1`` along ``axis``; output sample i * factor
        equals input sample i exactly. float32 for float32 (and integer) input, else float64.

    Raises:
        LatentSRError: unknown method, factor not an integer >= 1, or axis out of range.
    """
    _check(factor, method)
    factor = int(factor)
    array = np.asarray(array)
    if not -array.ndim <= axis < array.ndim:
        raise LatentSRError(f"axis {axis} is out of range for an array of shape {array.shape}")
    dtype = np.result_type(array.dtype, np.float32)
    n = array.shape[axis]
    if factor == 1 or n == 1:
        return array.astype(dtype, copy=True)
    # Slice axis first, everything else flattened: one (n_out, n) x (n, rest) product.
    moved = np.moveaxis(array, axis, 0)
    samples = np.ascontiguousarray(moved, dtype=dtype).reshape(n, -1)
    if method == "bspline":
        samples = _bspline_prefilter(samples)
    matrix = _MATRICES[method](n, factor).astype(dtype)
    out = np.asarray(matrix @ samples).reshape((matrix.shape[0],) + moved.shape[1:])
    # The acquired slices are the input's own samples, bit for bit (not 1.0 * f rounded in float32).
    out[::factor] = moved
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def through_plane_planes(slices: np.ndarray, factor: int) -> dict[str, np.ndarray]:
    """(Z, Y, X) linearly interpolated along Z by ``factor`` and cut into planes along the in-plane
    axes: {"x": planes of constant x, (X, Z', Y); "y": planes of constant y, (Y, Z', X)} (views)."""
    dense = upsample(slices, factor, "linear", axis=0)
    return {"x": dense.transpose(2, 0, 1), "y": dense.transpose(1, 0, 2)}


def resample_along_slices(stack: np.ndarray, ratio: float) -> np.ndarray:
    """(Z, Y, X) linearly re-sampled along Z at ``ratio`` times the spacing, from the first slice: how
    some data sets are distributed (CMRxMotion is), where most slices are blends of two acquired ones.
    Used to simulate such stacks (motion training, the cross-fade detector's validation)."""
    positions = np.arange(0.0, len(stack) - 1 + 1e-6, ratio)
    low = np.minimum(np.floor(positions).astype(int), len(stack) - 2)
    w = (positions - low)[:, None, None].astype(np.float32)
    return (1 - w) * stack[low] + w * stack[low + 1]


def shrink_in_plane(stack: np.ndarray, ratio: float) -> np.ndarray:
    """(Z, Y, X) resampled in-plane to ``ratio`` (< 1) of its size, antialiased (scikit-image): the same
    slices of an anatomy ``ratio`` times as large seen at the same pixel size. Slices ``g`` mm apart then
    show the in-plane displacements, in pixels, of slices ``ratio * g`` apart: how training and validation
    imitate gaps narrower than any non-test scan has (motion training's ``zoom_fraction``). A ``ratio`` above 1
    enlarges instead (no antialiasing needed): a scan reconstructed on a finer pixel grid, as many scanners do.
    """
    from skimage.transform import rescale

    return rescale(np.asarray(stack, np.float32), (1.0, ratio, ratio), order=1, anti_aliasing=ratio < 1,
                   preserve_range=True).astype(np.float32)


def _upsample_frames(array: np.ndarray, factor: int, method: str, run) -> np.ndarray:
    """The pipeline contract over frames: (T, Z, Y, X) -> (T, (Z - 1) * factor + 1, Y, X) float32."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 4:
        raise LatentSRError(f"expected a (T, Z, Y, X) array, got shape {array.shape}")
    _check(factor, method)
    out = np.empty((array.shape[0], (array.shape[1] - 1) * int(factor) + 1, *array.shape[2:]), np.float32)
    for t in range(array.shape[0]):
        run.check()
        out[t] = upsample(array[t], factor, method, axis=0)
        run.report((t + 1) / array.shape[0])
    return out


def upsample_linear(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """Linear interpolation between slices (pipeline contract; ``spacing_zyx`` is unused)."""
    return _upsample_frames(array, factor, "linear", run)


def upsample_bspline(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """Cubic B-spline interpolation between slices (pipeline contract)."""
    return _upsample_frames(array, factor, "bspline", run)


def upsample_lanczos(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """Lanczos (radius 5) windowed-sinc interpolation between slices (pipeline contract)."""
    return _upsample_frames(array, factor, "lanczos", run)
