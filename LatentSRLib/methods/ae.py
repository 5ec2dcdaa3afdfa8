"""``ae`` and ``ae-latent``: the latent-interpolation autoencoder (Sander, de Vos, Isgum 2020).

New slice = decode of the mixed codes of its neighbours. The torch implementation lives in
:mod:`LatentSRLib.synthesize.autoencoder` and is imported on first use, so that listing methods
never imports torch.
"""

from __future__ import annotations

import numpy as np

from .base import Method, Run


class LatentInterpolation(Method):
    """The autoencoder; ``mode`` None follows the weights ("corrected" for the bundled files),
    "latent" is the paper's decode of mixed codes whatever the weights prefer."""

    kind = "learned"
    weights_kind = "ae"
    normalised = True
    requirements = (("torch", "torch"),)

    def __init__(self, name: str, label: str, description: str, mode: str | None = None) -> None:
        self.name, self.label, self.description, self.mode = name, label, description, mode

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple, run: Run) -> np.ndarray:
        from ..synthesize.autoencoder import upsample
        return upsample(array, factor, spacing_zyx, run, mode=self.mode)


METHOD = LatentInterpolation("ae", "AE", "latent-interpolation autoencoder (Sander et al. 2020)")
LATENT_ONLY = LatentInterpolation("ae-latent", "AE (latent only)",
                                  "the autoencoder's decode of mixed codes only (the paper's mode)", mode="latent")
