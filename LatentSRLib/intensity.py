"""Per-volume percentile normalisation and its exact inverse.

Models work on intensities scaled so that the 1st percentile maps to 0 and the 99th to 1 (Sander et
al. 2020); outputs are mapped back with the inverse so they are in the input's own units. A volume
whose values are labels, not intensities (a segmentation), is recognised here too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import LatentSRError


@dataclasses.dataclass(frozen=True)
class PercentileScaling:
    """The affine map x -> (x - low) / (high - low) and back."""

    low: float
    high: float

    @classmethod
    def fit(cls, array: np.ndarray, lower: float = 1.0, upper: float = 99.0) -> "PercentileScaling":
        """Percentiles of all samples of a volume (every frame of a cine together)."""
        low, high = np.percentile(np.asarray(array, dtype=np.float64), [lower, upper])
        if not np.isfinite([low, high]).all():
            raise LatentSRError("cannot normalise intensities: the volume contains NaN or infinite values")
        if high <= low:  # a (nearly) constant image: fall back to its full range, then to a unit scale
            low, high = float(np.min(array)), float(np.max(array))
            if high <= low:
                high = low + 1.0
        return cls(float(low), float(high))

    @classmethod
    def unit(cls, array: np.ndarray) -> "PercentileScaling":
        """The identity for samples float32 carries (the methods' working type), else a pure scale by
        the largest magnitude: float64 samples near 1e300 would become infinite in float32, and near
        1e-300 zero. A pure scale keeps the samples' units for methods that are not shift-invariant."""
        values = np.asarray(array)
        if values.dtype == np.float32 or values.size == 0:
            return cls(0.0, 1.0)
        peak = float(np.max(np.abs(values)))
        return cls(0.0, peak) if np.isfinite(peak) and (peak > 1e30 or 0 < peak < 1e-30) else cls(0.0, 1.0)

    def forward(self, array: np.ndarray, clip: bool = False) -> np.ndarray:
        """Scale into [0, 1] (clipped only with ``clip``: the inverse is exact only without it)."""
        scaled = ((np.asarray(array, dtype=np.float64) - self.low) / (self.high - self.low)).astype(np.float32)
        return np.clip(scaled, 0.0, 1.0) if clip else scaled

    def inverse(self, scaled: np.ndarray, dtype: np.dtype = np.float32) -> np.ndarray:
        """Back into the input's units, as ``dtype`` (the input's carrier: float64 keeps what float32 cannot)."""
        return (np.asarray(scaled, dtype=np.float64) * (self.high - self.low) + self.low).astype(dtype)


def normalise(array: np.ndarray, clip: bool = False) -> tuple[np.ndarray, PercentileScaling]:
    """Scale a volume by its 1st/99th percentiles; returns the scaled array and the map."""
    scaling = PercentileScaling.fit(array)
    return scaling.forward(array, clip=clip), scaling


def clip_to_input_range(result_array: np.ndarray, input_array: np.ndarray) -> np.ndarray:
    """``result_array`` clipped to the value range [min, max] of ``input_array`` (a new array, same dtype).

    Interpolating kernels with negative lobes (B-spline, Lanczos) and learned corrections overshoot at
    edges, e.g. below 0 on a scan whose minimum is 0; clipping removes values the scan cannot hold.
    Acquired slices are unchanged by it (they lie within the range by definition).

    Raises:
        LatentSRError: the input has no finite value.
    """
    values = np.asarray(input_array)
    finite = values[np.isfinite(values)] if not np.isfinite(values).all() else values
    if finite.size == 0:
        raise LatentSRError("cannot clip to the input's range: it has no finite value")
    low, high = finite.min(), finite.max()
    result = np.asarray(result_array)
    return np.clip(result, low, high).astype(result.dtype, copy=False)


#: An integer-typed volume with at most this many distinct values is a label map (segmentation): no
#: MR image has so few grey levels, and interpolating labels invents new ones at every border.
LABEL_MAP_MAX_VALUES = 16


def label_values(array: np.ndarray, pixel_type: np.dtype) -> np.ndarray | None:
    """The distinct values of an image stored as ``pixel_type`` if it is integer-typed with at most
    :data:`LABEL_MAP_MAX_VALUES` of them (a label map), else None. A random sample rules most images
    out before the whole array is looked at: milliseconds on a 30-frame cine."""
    if not np.issubdtype(np.dtype(pixel_type), np.integer):
        return None
    flat = np.asarray(array).reshape(-1)
    sample = flat[np.random.default_rng(0).integers(0, flat.size, min(flat.size, 65536))]
    if len(np.unique(sample)) > LABEL_MAP_MAX_VALUES:
        return None
    values = np.unique(flat)
    return values if len(values) <= LABEL_MAP_MAX_VALUES else None
