"""Image-quality metrics of the evaluation protocol: SSIM, PSNR and pixel-domain VIF on 2D slices.

All take a reference and a test image of the same 2D shape (Y, X), in normalised units where the
intensity range is [0, 1] (``data_range=1``), and return a float (higher is better).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from . import LatentSRError

#: Noise variance of the VIF "visual noise" channel, in 8-bit grey levels squared (Sheikh & Bovik).
VIF_SIGMA_NSQ = 2.0
#: Grey levels the VIF noise variance is defined for: images are rescaled to [0, 255] first.
VIF_GREY_LEVELS = 255.0


def _pair(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape or ref.ndim != 2:
        raise LatentSRError(f"metrics need two 2D images of one shape, got {ref.shape} and {test.shape}")
    return ref, test


def ssim(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity of two (Y, X) images, as in Wang et al. 2004.

    scikit-image ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1`` (the settings of Wang et al.: an 11 x 11 Gaussian
    window, K1=0.01, K2=0.03), averaged over the image.
    """
    ref, test = _pair(ref, test)
    return float(structural_similarity(ref, test, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=data_range))


def psnr(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE) (inf for identical images).

    scikit-image ``peak_signal_noise_ratio`` with ``data_range=1``.
    """
    ref, test = _pair(ref, test)
    if np.array_equal(ref, test):
        return float("inf")  # skimage would divide by zero (and warn) to get the same
    return float(peak_signal_noise_ratio(ref, test, data_range=data_range))


def _gaussian_window(size: int) -> np.ndarray:
    """1D factor of MATLAB's fspecial('gaussian', size, size / 5), normalised to sum 1.

    The 2D window is its outer product (fspecial's tiny-value cut-off never applies at these sizes).
    """
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x**2) / (2 * (size / 5) ** 2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2D filtering with the separable window, keeping only the 'valid' part (MATLAB filter2 'valid')."""
    radius = (len(window) - 1) // 2
    out = ndimage.correlate1d(image, window, axis=0, mode="constant")
    out = ndimage.correlate1d(out, window, axis=1, mode="constant")
    return out[radius:image.shape[0] - radius, radius:image.shape[1] - radius]


def vif(ref: np.ndarray, test: np.ndarray, data_range: float = 1.0, sigma_nsq: float = VIF_SIGMA_NSQ) -> float:
    """Pixel-domain visual information fidelity (VIFp; Sheikh & Bovik, IEEE TIP 2006).

    The standard ``vifp_mscale`` algorithm: 4 scales with Gaussian windows of size
    N = 2^(5 - scale) + 1 and sigma N / 5 ('valid' filtering, dyadic downsampling between scales),
    the visual-noise variance ``sigma_nsq = 2`` and the same guards for flat regions.

    ``sigma_nsq`` is in grey levels of 8-bit images, the convention VIFp was defined and is
    always quoted in, so the images are first rescaled from ``[0, data_range]`` to [0, 255]. This
    equals ``sewar.full_ref.vifp(ref * 255, test * 255)``. (sewar applied to [0, 1] images uses
    no rescaling, i.e. a noise 65025 times larger relative to the signal, and gives other values.)

    Args:
        ref, test: (Y, X) images; at least 41 pixels along each side (4 scales of 'valid' filters).

    Returns:
        VIF in [0, 1] for distortions (1 for identical images, may exceed 1 for contrast
        enhancement); NaN when the reference has no variance at any scale (a flat image).
    """
    ref, test = _pair(ref, test)
    if min(ref.shape) < 41:
        raise LatentSRError(f"VIF needs images of at least 41 x 41 pixels, got {ref.shape}")
    scale = VIF_GREY_LEVELS / data_range
    ref, test = ref * scale, test * scale
    eps = 1e-10
    numerator = denominator = 0.0
    for level in range(1, 5):
        window = _gaussian_window(2 ** (5 - level) + 1)
        if level > 1:
            ref = _filter_valid(ref, window)[::2, ::2]
            test = _filter_valid(test, window)[::2, ::2]
        mu_ref, mu_test = _filter_valid(ref, window), _filter_valid(test, window)
        var_ref = np.maximum(_filter_valid(ref * ref, window) - mu_ref**2, 0.0)
        var_test = np.maximum(_filter_valid(test * test, window) - mu_test**2, 0.0)
        covariance = _filter_valid(ref * test, window) - mu_ref * mu_test

        # Gain g and additive noise variance of the distortion channel test = g * ref + v,
        # with the guards of the reference implementation, in its order.
        gain = covariance / (var_ref + eps)
        noise = var_test - gain * covariance
        flat_ref = var_ref < eps
        gain[flat_ref] = 0.0
        noise[flat_ref] = var_test[flat_ref]
        var_ref[flat_ref] = 0.0
        flat_test = var_test < eps
        gain[flat_test] = 0.0
        noise[flat_test] = 0.0
        negative = gain < 0
        noise[negative] = var_test[negative]
        gain[negative] = 0.0
        noise[noise <= eps] = eps

        numerator += np.sum(np.log10(1.0 + gain**2 * var_ref / (noise + sigma_nsq)))
        denominator += np.sum(np.log10(1.0 + var_ref / sigma_nsq))
    if denominator == 0.0:
        return float("nan")
    return float(numerator / denominator)


def centre_crop(image: np.ndarray, size: int = 128) -> np.ndarray:
    """The central ``size`` x ``size`` region of a (Y, X) image; a side shorter than ``size`` is kept
    whole. For an odd excess the extra pixel goes to the end (start = (n - size) // 2).
    """
    image = np.asarray(image)
    index = []
    for n in image.shape[-2:]:
        start = max(n - size, 0) // 2
        index.append(slice(start, start + min(n, size)))
    return image[(Ellipsis, *index)]
