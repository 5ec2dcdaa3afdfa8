"""``contrastive``: unpaired contrastive SR (Li et al. 2023): in-plane slices as the HR domain,
through-plane reformats as the LR domain. Torch implementation in
:mod:`LatentSRLib.synthesize.contrastive`, imported on first use."""

from __future__ import annotations

import numpy as np

from .base import Method, Run


class ContrastiveSR(Method):
    name = "contrastive"
    label = "Contrastive"
    kind = "learned"
    weights_kind = "contrastive"
    normalised = True
    requirements = (("torch", "torch"),)
    description = "unpaired contrastive SR of through-plane reformats (Li et al. 2023)"

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple, run: Run) -> np.ndarray:
        from ..synthesize.contrastive import upsample
        return upsample(array, factor, spacing_zyx, run)


METHOD = ContrastiveSR()
