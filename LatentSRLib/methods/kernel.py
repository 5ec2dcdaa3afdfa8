"""The conventional methods' shared form: one 1D kernel along the slice axis, frame by frame
(:func:`LatentSRLib.interpolate.upsample`, which reproduces SimpleITK's interpolators)."""

from __future__ import annotations

import numpy as np

from .. import LatentSRError
from .base import Method, Run


class KernelInterpolation(Method):
    """Interpolation along the slice axis with ``interpolate.upsample(..., kernel)``, in the input's
    own units (ITK's Lanczos weights do not sum to one, so results must match SimpleITK on the
    user's data, not on normalised data)."""

    kind = "conventional"
    normalised = False

    def __init__(self, name: str, label: str, description: str, kernel: str | None = None) -> None:
        self.name, self.label, self.description = name, label, description
        self.kernel = kernel or name

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple, run: Run) -> np.ndarray:
        from .. import interpolate  # SciPy: imported when a method runs, not when methods are listed

        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 4:
            raise LatentSRError(f"expected a (T, Z, Y, X) array, got shape {array.shape}")
        out = np.empty((array.shape[0], (array.shape[1] - 1) * int(factor) + 1, *array.shape[2:]), np.float32)
        for t in range(array.shape[0]):
            run.check()
            out[t] = interpolate.upsample(array[t], factor, self.kernel, axis=0)
            run.report((t + 1) / array.shape[0])
        return out
