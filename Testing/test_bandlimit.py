"""The acquired grid of a zero-filled reconstruction (LatentSRLib.bandlimit), and the cross-fade detector
looking at a stack on it."""

from __future__ import annotations

import numpy as np
import pytest

from LatentSRLib.bandlimit import band_limit, to_acquired_grid, zero_fill


def natural_stack(slices: int = 4, size: tuple[int, int] = (96, 80), seed: int = 0) -> np.ndarray:
    """(Z, Y, X) positive images whose spectra fall like a natural image's (power ~ 1/f^2) up to the
    Nyquist frequency, plus a little white noise: no edge anywhere."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size[0])[:, None], np.fft.fftfreq(size[1])[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(size))
    stack = []
    for _ in range(slices):
        phase = np.exp(2j * np.pi * rng.random(size))
        image = np.fft.ifft2(amplitude * phase).real
        image = (image - image.min()) / (image.max() - image.min())
        stack.append(image + rng.normal(0.0, 0.01, size))
    return np.clip(np.array(stack, np.float32), 0.0, 1.0)


def test_a_natural_stack_has_no_edge_and_is_left_as_it_is():
    stack = natural_stack()
    assert band_limit(stack) == (1.0, 1.0)
    assert to_acquired_grid(stack, (1.0, 1.0)) is stack


@pytest.mark.parametrize("factor", [1.25, 1.5, 2.0, 2.5])
def test_zero_filling_is_found_at_its_factor_and_undone(factor):
    stack = natural_stack()
    fine = zero_fill(stack, factor)
    assert fine.shape == (4, round(96 * factor), round(80 * factor))
    limits = band_limit(fine)
    np.testing.assert_allclose(limits, 1 / factor, atol=0.02)
    back = to_acquired_grid(fine, limits)
    assert abs(back.shape[1] - 96) <= 2 and abs(back.shape[2] - 80) <= 2
    if back.shape[1:] == stack.shape[1:]:  # same grid: the acquired slices again (up to the magnitude
        assert np.abs(back - stack).mean() < 0.005  # image's lost phase at the split Nyquist bins)
        assert np.corrcoef(back.ravel(), stack.ravel())[0, 1] > 0.99
    assert back.mean() == pytest.approx(stack.mean(), rel=0.01)


def test_an_edge_along_one_axis_only_as_with_fewer_phase_encoding_lines():
    stack = natural_stack(size=(80, 96))
    spectrum = np.fft.fftshift(np.fft.fft2(stack), axes=(1, 2))
    fine = np.abs(np.fft.ifft2(np.fft.ifftshift(np.pad(spectrum, ((0, 0), (24, 24), (0, 0))), axes=(1, 2))))
    limit_y, limit_x = band_limit(fine * 128 / 80)
    assert limit_y == pytest.approx(80 / 128, abs=0.02) and limit_x == 1.0


def test_smoothing_and_blank_slices_are_not_edges():
    from scipy import ndimage
    stack = natural_stack()
    assert band_limit(ndimage.gaussian_filter(stack, (0, 1.0, 1.0))) == (1.0, 1.0)
    assert band_limit(np.zeros((3, 64, 64), np.float32)) == (1.0, 1.0)


@pytest.mark.integration
def test_the_detector_sees_a_zero_filled_validation_stack_as_the_acquired_one(data_dir):
    """A validation patient (never a test one) reconstructed on a grid twice as fine: the detector trusts it
    as much as the scan itself (before, it took the smoothness for re-sampling: trust 0), and still calls
    the same stack re-sampled along z a re-sampled one."""
    from LatentSRLib.intensity import normalise
    from LatentSRLib.interpolate import resample_along_slices
    from LatentSRLib.synthesize import crossfade
    from LatentSRLib.volume import read
    frame = read(data_dir / "acdc_fullfov" / "patient001" / "patient001_frame01.nii.gz").array[0]
    stack = normalise(frame, clip=True)[0].astype(np.float32)
    fine = normalise(zero_fill(frame, 2.0), clip=True)[0].astype(np.float32)
    assert band_limit(fine[::2]) == pytest.approx((0.5, 0.5), abs=0.02)
    assert crossfade.resampling_trust(stack[::2]) == 1.0
    assert crossfade.resampling_trust(fine[::2]) == 1.0
    assert crossfade.stack_score(fine[::2]) == pytest.approx(crossfade.stack_score(stack[::2]), abs=0.05)
    assert crossfade.resampling_trust(resample_along_slices(fine, 0.7)[::2]) == 0.0
