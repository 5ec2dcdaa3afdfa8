"""Calibration of a learned method's correction to linear interpolation: smoothing and gain.

Both learned methods output linear interpolation plus a correction (the autoencoder's latent
correction, the contrastive model's SR residual). That correction is an estimate with noise: its
finest in-plane detail is mostly network noise, and its amplitude can be over-confident. Two
options, recorded in the weights (``meta["correction_sigma_mm"]``, ``meta["correction_gain"]``) and
chosen on validation data after training (``benchmarks/correction_grid.py``), turn it into a
smoothed, shrunken estimate: ``gain * gaussian_sigma(correction)``, in-plane only. Defaults (0, 1)
leave it as is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import LatentSRError


#: The largest smoothing accepted (mm). A metre is beyond any field of view: more smooths the correction
#: to its mean just the same, while the Gaussian kernel grows with sigma (1e9 mm asked for 48 GB).
MAX_SIGMA_MM = 1000.0


def correction_options(meta: dict, sigma_mm: float | None = None, gain: float | None = None
                       ) -> tuple[float, float]:
    """(sigma in mm, gain): the overrides where given, else what ``meta`` records, else (0, 1)."""
    try:  # a weights file's metadata may hold anything
        sigma_mm = float(meta.get("correction_sigma_mm", 0.0) if sigma_mm is None else sigma_mm)
        gain = float(meta.get("correction_gain", 1.0) if gain is None else gain)
    except (TypeError, ValueError) as error:
        raise LatentSRError(f"the correction smoothing and gain must be numbers ({error})") from None
    if not np.isfinite(sigma_mm) or not 0 <= sigma_mm <= MAX_SIGMA_MM:
        raise LatentSRError(f"the correction smoothing must be a non-negative number of mm, at most "
                            f"{MAX_SIGMA_MM:g}, got {sigma_mm:g}")
    if not np.isfinite(gain):
        raise LatentSRError(f"the correction gain must be a finite number, got {gain}")
    return sigma_mm, gain


def adjust_correction(correction: np.ndarray, spacing_yx: tuple[float, float], sigma_mm: float,
                      gain: float) -> np.ndarray:
    """``gain`` times ``correction`` (..., Y, X) smoothed by a Gaussian of ``sigma_mm`` over its last
    two (in-plane) axes, whose pixel sizes are ``spacing_yx`` mm; the input is returned as is for
    (0, 1)."""
    if sigma_mm > 0:
        sigma = (0.0,) * (correction.ndim - 2) + (sigma_mm / spacing_yx[0], sigma_mm / spacing_yx[1])
        correction = ndimage.gaussian_filter(correction, sigma, mode="nearest")
    if gain != 1.0:
        correction = gain * correction
    return correction
