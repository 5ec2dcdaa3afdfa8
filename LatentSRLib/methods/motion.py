"""``motion``: the learned motion-aware method: a small network blends flow-warped neighbours.

The refiner (:mod:`LatentSRLib.models.motion`), trained on triplets of acquired slices and cine
frames only (:mod:`LatentSRLib.training.motion`), chooses per pixel between linear interpolation and
the one-sided warps of both neighbours along two optical flows (the architecture can add a small
residual; the bundled weights do not, Resources/Models/motion.md). Torch
implementation in :mod:`LatentSRLib.synthesize.motion`, imported on first use.
"""

from __future__ import annotations

import numpy as np

from .base import Method, Run


class MotionAware(Method):
    name = "motion"
    label = "Motion"
    kind = "learned"
    weights_kind = "motion"
    normalised = True
    gives_confidence = True
    asks_crossfade_detector = True
    requirements = (("torch", "torch"), ("opencv-python-headless", "cv2"))
    description = "learned per-pixel blend of flow-warped neighbours, falls back to linear where motion fails"

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple, run: Run) -> np.ndarray:
        from ..synthesize.motion import upsample
        return upsample(array, factor, spacing_zyx, run)


METHOD = MotionAware()
