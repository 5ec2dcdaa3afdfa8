"""SSIM, PSNR, VIF and the centre crop, each against an independent computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from LatentSRLib import LatentSRError
from LatentSRLib.metrics import centre_crop, psnr, ssim, vif

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ACDC_SCAN = DATA / "acdc_fullfov" / "patient035" / "patient035_frame01.nii.gz"


def texture(shape=(96, 96), seed=0) -> np.ndarray:
    """A smooth random image in [0, 1] with structure at several scales."""
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random(shape), 3) + 0.3 * ndimage.gaussian_filter(rng.random(shape), 1)
    image -= image.min()
    return image / image.max()


def distortions(ref: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "blur": ndimage.gaussian_filter(ref, 1.2),
        "noise": np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1),
        "contrast": 0.6 * ref + 0.2,
        "shift": np.roll(ref, 2, axis=1),
    }


def real_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(slice, mean of its neighbours) on the 128x128 centre of a real cardiac scan: protocol-like pairs."""
    if not ACDC_SCAN.exists():
        pytest.skip(f"real data not found at {DATA}")
    from LatentSRLib.volume import read
    array = read(ACDC_SCAN).array[0]
    return [(centre_crop(array[z]), centre_crop((array[z - 1] + array[z + 1]) / 2)) for z in (3, 6, 9)]


@pytest.mark.parametrize("kind", ["blur", "noise", "contrast", "shift"])
def test_vif_matches_sewar_on_synthetic_images(kind):
    from sewar.full_ref import vifp
    ref = texture()
    test = distortions(ref)[kind]
    # Like for like: VIFp's noise variance sigma_nsq = 2 is in 8-bit grey levels; ours rescales
    # [0, 1] to [0, 255], sewar takes the grey levels it is given.
    assert vif(ref, test) == pytest.approx(vifp(ref * 255, test * 255), abs=1e-3)


def test_vif_matches_sewar_on_real_slices():
    from sewar.full_ref import vifp
    for ref, test in real_pairs():
        ref, test = ref.astype(np.float64), test.astype(np.float64)
        assert vif(ref, test) == pytest.approx(vifp(ref * 255, test * 255), abs=1e-3)


def test_vif_data_range_rescales():
    ref = texture()
    test = distortions(ref)["blur"]
    assert vif(ref * 1000, test * 1000, data_range=1000) == pytest.approx(vif(ref, test), abs=1e-9)


def test_vif_identity_ordering_and_small_images():
    ref = texture()
    assert vif(ref, ref) == pytest.approx(1.0, abs=1e-6)
    mild = ndimage.gaussian_filter(ref, 0.7)
    strong = ndimage.gaussian_filter(ref, 2.0)
    assert 0 < vif(ref, strong) < vif(ref, mild) < 1
    with pytest.raises(LatentSRError, match="41"):
        vif(ref[:40, :40], ref[:40, :40])


def _reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 written out: Gaussian-weighted local statistics (sigma 1.5, 11x11), population
    covariances, K1 = 0.01, K2 = 0.03, L = 1, averaged away from a 5-pixel border."""
    def blur(image):
        return ndimage.gaussian_filter(image, 1.5, truncate=3.5, mode="reflect")
    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index[5:-5, 5:-5].mean())


@pytest.mark.parametrize("kind", ["blur", "noise", "contrast", "shift"])
def test_ssim_against_the_formula(kind):
    ref = texture()
    test = distortions(ref)[kind]
    assert ssim(ref, test) == pytest.approx(_reference_ssim(ref, test), abs=1e-6)


def test_ssim_identical_is_one_and_symmetric():
    ref = texture()
    test = distortions(ref)["noise"]
    assert ssim(ref, ref) == pytest.approx(1.0)
    assert ssim(ref, test) == pytest.approx(ssim(test, ref))
    assert ssim(ref, test) < 1


def test_psnr_against_the_formula():
    ref = texture()
    test = distortions(ref)["noise"]
    mse = np.mean((ref - test) ** 2)
    assert psnr(ref, test) == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-9)
    assert psnr(ref, ref) == float("inf")


def test_shape_mismatch_is_an_error():
    with pytest.raises(LatentSRError):
        ssim(np.zeros((20, 20)), np.zeros((20, 21)))
    with pytest.raises(LatentSRError):
        psnr(np.zeros((2, 20, 20)), np.zeros((2, 20, 20)))


def test_centre_crop():
    image = np.arange(216 * 256).reshape(216, 256)
    crop = centre_crop(image)
    assert crop.shape == (128, 128)
    assert crop[0, 0] == image[(216 - 128) // 2, (256 - 128) // 2]
    narrow = np.arange(100 * 141).reshape(100, 141)
    crop = centre_crop(narrow)
    assert crop.shape == (100, 128)  # the short side is kept whole
    np.testing.assert_array_equal(crop, narrow[:, 6:134])
    small = np.ones((50, 60))
    assert centre_crop(small).shape == (50, 60)
