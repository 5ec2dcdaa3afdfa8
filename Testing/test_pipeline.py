"""super_resolve: factor choice, geometry, acquired slices, 4D, cancel and progress."""

from __future__ import annotations

import numpy as np
import pytest

from LatentSRLib import LatentSRError
from LatentSRLib.interpolate import upsample
from LatentSRLib.pipeline import Cancelled, Run, choose_factor, super_resolve
from LatentSRLib.volume import Volume


def test_default_factor_is_as_near_isotropic_as_an_integer_allows():
    volume = Volume(np.zeros((1, 3, 4, 4)), (1.4, 1.4, 10.0))
    assert choose_factor(volume) == 7
    assert choose_factor(volume, spacing=2.5) == 4
    assert choose_factor(volume, factor=3) == 3
    for bad in (dict(factor=0), dict(factor=-2), dict(spacing=0.0), dict(factor=2, spacing=2.0)):
        with pytest.raises(LatentSRError):
            choose_factor(volume, **bad)


@pytest.mark.parametrize("method", ["linear", "bspline", "lanczos"])
def test_geometry_and_acquired_slices(oblique_volume, method):
    before = oblique_volume.array.copy()
    out = super_resolve(oblique_volume, method, factor=4)
    assert out.array.shape == (1, (6 - 1) * 4 + 1, 20, 24)
    assert out.spacing == (1.5, 1.25, 2.0)
    assert out.origin == oblique_volume.origin
    np.testing.assert_array_equal(out.direction, oblique_volume.direction)
    np.testing.assert_array_equal(out.array[:, ::4], oblique_volume.array)  # bit for bit
    np.testing.assert_array_equal(oblique_volume.array, before)             # input untouched
    assert out.pixel_type == oblique_volume.pixel_type


def test_output_is_in_the_input_units(oblique_volume):
    out = super_resolve(oblique_volume, "linear", factor=2)
    expected = 0.5 * (oblique_volume.array[:, :-1] + oblique_volume.array[:, 1:])
    np.testing.assert_allclose(out.array[:, 1::2], expected, rtol=1e-5, atol=1e-3)


def test_slice_axis_other_than_z():
    rng = np.random.default_rng(2)
    array = rng.random((1, 12, 10, 4)).astype(np.float32)   # X has 4 samples 6 mm apart
    volume = Volume(array, (6.0, 1.5, 1.5))
    out = super_resolve(volume, "linear", factor=3)
    assert out.array.shape == (1, 12, 10, 10)
    assert out.spacing == (2.0, 1.5, 1.5)
    np.testing.assert_array_equal(out.array[..., ::3], array)
    np.testing.assert_allclose(out.array, upsample(array, 3, "linear", axis=3), atol=1e-5)


def test_4d_frames_are_processed_independently():
    rng = np.random.default_rng(3)
    array = rng.random((3, 4, 8, 8)).astype(np.float32)
    volume = Volume(array, (1.4, 1.4, 10.0), is_4d=True)
    out = super_resolve(volume, "linear", factor=2)
    assert out.array.shape == (3, 7, 8, 8) and out.is_4d
    for t in range(3):
        single = super_resolve(Volume(array[t:t + 1], (1.4, 1.4, 10.0)), "linear", factor=2)
        np.testing.assert_allclose(out.array[t], single.array[0], atol=1e-5)


def test_progress_reaches_one_and_cancel_stops(oblique_volume):
    seen = []
    super_resolve(oblique_volume, "bspline", factor=2, run=Run(progress=seen.append))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        super_resolve(oblique_volume, "linear", factor=2, run=Run(cancel=lambda: True))


def test_bad_inputs_are_named(oblique_volume):
    with pytest.raises(LatentSRError, match="unknown method 'cubic'"):
        super_resolve(oblique_volume, "cubic", factor=2)
    with pytest.raises(LatentSRError, match="single slice"):
        super_resolve(Volume(np.zeros((1, 1, 8, 8)), (1, 1, 5)), "linear")
    broken = Volume(oblique_volume.array.copy(), oblique_volume.spacing)
    broken.array[0, 2, 3, 4] = np.inf
    with pytest.raises(LatentSRError, match="NaN or infinite"):
        super_resolve(broken, "linear", factor=2)


def test_factor_one_is_a_copy(oblique_volume):
    out = super_resolve(oblique_volume, "linear", factor=1)
    np.testing.assert_array_equal(out.array, oblique_volume.array)
    assert out.array is not oblique_volume.array
