"""Through-plane linear / B-spline / Lanczos: agreement with SimpleITK's Resample, exactness, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from LatentSRLib import LatentSRError
from LatentSRLib.interpolate import (LANCZOS_RADIUS, upsample, upsample_bspline, upsample_lanczos,
                                     upsample_linear, weight_matrix)
from LatentSRLib.pipeline import Cancelled, Run

SITK = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "lanczos": sitk.sitkLanczosWindowedSinc}
CONTRACT = {"linear": upsample_linear, "bspline": upsample_bspline, "lanczos": upsample_lanczos}
# An oblique direction (rotation about a non-axis vector) and a non-zero origin: the index-space
# result must not depend on either, as SimpleITK resamples in physical space.
DIRECTION = sitk.VersorTransform((0.3, 0.5, 0.2), 0.7).GetMatrix()
ORIGIN = (12.5, -30.0, 7.25)
SPACING = (1.5, 1.25, 8.0)


def smooth_volume(shape: tuple[int, ...], seed: int = 0, scale: float = 1000.0) -> np.ndarray:
    """Random smooth float32 samples (MRI-like intensity scale)."""
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.random(shape), 1.0) * scale).astype(np.float32)


def sitk_upsample(array: np.ndarray, factor: int, method: str) -> np.ndarray:
    """SimpleITK's Resample of a (Z, Y, X) array onto (Z - 1) * factor + 1 slices, same origin/direction."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    size = [array.shape[2], array.shape[1], (array.shape[0] - 1) * factor + 1]
    spacing = (SPACING[0], SPACING[1], SPACING[2] / factor)
    out = sitk.Resample(image, size, sitk.Transform(), SITK[method], ORIGIN, spacing, DIRECTION, 0.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


@pytest.mark.parametrize("method", list(SITK))
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_agrees_with_simpleitk(method, factor):
    array = smooth_volume((6, 24, 24), seed=factor)
    ours = upsample(array, factor, method, axis=0)
    reference = sitk_upsample(array, factor, method)
    assert ours.shape == reference.shape == ((6 - 1) * factor + 1, 24, 24)
    assert ours.dtype == np.float32
    # The target is 1e-3 of the range on interior slices; we match to float precision everywhere.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * np.ptp(array))


@pytest.mark.parametrize("method", list(SITK))
@pytest.mark.parametrize("slices", [2, 3])
def test_agrees_with_simpleitk_on_very_few_slices(method, slices):
    """Edge handling dominates with 2-3 slices (clamped Lanczos taps, mirrored B-spline coefficients)."""
    array = smooth_volume((slices, 16, 16), seed=slices)
    ours = upsample(array, 3, method, axis=0)
    reference = sitk_upsample(array, 3, method)
    # ITK's cubic B-spline reads outside its coefficient buffer at the very last position of a
    # 2-sample axis (the weight there is 0, the value read can be garbage): compare before it.
    last = -1 if (method == "bspline" and slices == 2) else None
    np.testing.assert_allclose(ours[:last], reference[:last], rtol=0, atol=1e-5 * np.ptp(array))


def test_lanczos_kernel_is_itks_unnormalised_windowed_sinc():
    """Independent re-derivation: taps base-R+1..base+R, weight sinc(t) * sinc(t / R), no renormalising."""
    n, factor = 12, 4
    matrix = weight_matrix(n, factor, "lanczos")
    row = 5 * factor + 1  # between input slices 5 and 6, far from both edges: no clamping
    d = 1 / factor
    expected = np.zeros(n)
    for tap in range(5 - LANCZOS_RADIUS + 1, 5 + LANCZOS_RADIUS + 1):
        t = (5 + d) - tap
        expected[tap] = np.sin(np.pi * t) / (np.pi * t) * np.sin(np.pi * t / LANCZOS_RADIUS) / (np.pi * t / LANCZOS_RADIUS)
    np.testing.assert_allclose(matrix[row], expected, rtol=1e-12, atol=1e-15)
    assert abs(matrix[row].sum() - 1) > 1e-4  # ITK does not divide by the sum of the weights


@pytest.mark.parametrize("method", ["linear", "bspline"])
def test_partition_of_unity(method):
    """Linear and (prefiltered) B-spline reproduce constants exactly: rows sum to one."""
    matrix = weight_matrix(9, 3, method)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", list(SITK))
@pytest.mark.parametrize("axis", [0, 1, 2, 3])
def test_shape_and_acquired_samples_kept_exactly(method, axis):
    array = smooth_volume((2, 5, 6, 7), seed=axis)
    out = upsample(array, 3, method, axis=axis)
    expected = list(array.shape)
    expected[axis] = (array.shape[axis] - 1) * 3 + 1
    assert out.shape == tuple(expected)
    kept = [slice(None)] * 4
    kept[axis] = slice(None, None, 3)
    assert np.array_equal(out[tuple(kept)], array)  # bit for bit
    assert out.flags.c_contiguous


def test_linear_factor_two_is_the_mean_of_neighbours():
    array = smooth_volume((7, 10, 11))
    out = upsample(array, 2, "linear", axis=0)
    np.testing.assert_allclose(out[1::2], (array[:-1] + array[1:]) / 2, rtol=1e-6)


def test_float64_input_stays_float64():
    array = smooth_volume((4, 5, 5)).astype(np.float64)
    out = upsample(array, 2, "bspline", axis=0)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, upsample(array.astype(np.float32), 2, "bspline", axis=0), rtol=1e-5)


@pytest.mark.parametrize("method", list(SITK))
def test_contract_4d_every_frame_progress_and_cancel(method):
    array = smooth_volume((3, 4, 8, 9))
    fractions: list[float] = []
    out = CONTRACT[method](array, 2, (8.0, 1.25, 1.5), Run(progress=fractions.append))
    assert out.shape == (3, 7, 8, 9) and out.dtype == np.float32
    for t in range(3):
        np.testing.assert_array_equal(out[t], upsample(array[t], 2, method, axis=0))
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    with pytest.raises(Cancelled):
        CONTRACT[method](array, 2, (8.0, 1.25, 1.5), Run(cancel=lambda: True))


def test_factor_one_and_single_sample_are_copies():
    array = smooth_volume((3, 4, 5))
    same = upsample(array, 1, "lanczos", axis=0)
    assert np.array_equal(same, array) and same is not array
    single = upsample(array[:1], 4, "linear", axis=0)
    assert single.shape == (1, 4, 5)


@pytest.mark.parametrize("factor", [0, -2, 1.5, True, "2"])
def test_bad_factor(factor):
    with pytest.raises(LatentSRError, match="factor"):
        upsample(np.zeros((3, 4, 4), np.float32), factor, "linear", axis=0)


def test_bad_method_and_axis():
    with pytest.raises(LatentSRError, match="unknown interpolation method 'cubic'"):
        upsample(np.zeros((3, 4, 4), np.float32), 2, "cubic", axis=0)
    with pytest.raises(LatentSRError, match="axis"):
        upsample(np.zeros((3, 4, 4), np.float32), 2, "linear", axis=3)


def test_module_does_not_import_torch():
    code = "import sys, LatentSRLib.interpolate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_shrink_in_plane_is_the_same_anatomy_smaller_slice_by_slice():
    """A disc of radius 16 px in a 64 x 64 slice becomes one of radius ~8 px in 32 x 32 (its area, a
    quarter), each slice on its own (the slice axis is untouched), a constant stays constant, and
    shrinking is antialiased: a one-pixel checkerboard averages to grey instead of aliasing."""
    from LatentSRLib.interpolate import shrink_in_plane

    y, x = np.mgrid[:64, :64] + 0.5
    disc = ((y - 32) ** 2 + (x - 32) ** 2 <= 16 ** 2).astype(np.float32)
    stack = np.stack([disc, np.zeros_like(disc), np.full_like(disc, 0.7)])
    small = shrink_in_plane(stack, 0.5)
    assert small.shape == (3, 32, 32) and small.dtype == np.float32
    assert abs(small[0].sum() - disc.sum() / 4) < 0.02 * disc.sum() / 4
    np.testing.assert_allclose(ndimage.center_of_mass(small[0]), (15.5, 15.5), atol=0.05)
    assert not small[1].any()
    np.testing.assert_allclose(small[2], 0.7, atol=1e-6)
    checker = ((np.indices((64, 64)).sum(0) % 2)[None]).astype(np.float32)
    assert np.abs(shrink_in_plane(checker, 0.45) - 0.5).max() < 0.1
