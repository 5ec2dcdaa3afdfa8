"""A small classifier that tells a cross-faded slice from an acquired one.

Some public data sets are distributed re-sampled along the slice axis (CMRxMotion is): most of their
slices are linear blends of two acquired slices, and the truth between two such slices is a cross-fade
that no in-plane motion explains, so motion-compensated interpolation (``flow``, ``motion``) loses to
linear interpolation there. Nothing in the kept slices' positions or flows reveals it (the scan
self-check of :mod:`LatentSRLib.methods.flow` does not: measured in Resources/Models/crossfade.md); the
slices' own appearance does: a blend of two slices 5-10 mm apart shows every moving edge twice, at
reduced contrast. This network learns that appearance from acquired slices (label 0) and blends of
two neighbouring acquired slices (label 1) of anisotropic scans; no re-sampled data set is needed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..metrics import centre_crop

#: Side of the square centre crop the detector sees (training and use alike).
CROP = 128


def detector_input(image: np.ndarray) -> np.ndarray:
    """What the detector sees of a normalised (Y, X) slice: its CROP x CROP centre, zero-padded
    where the slice is smaller."""
    out = np.zeros((CROP, CROP), np.float32)
    window = centre_crop(np.asarray(image, np.float32), CROP)
    out[:window.shape[0], :window.shape[1]] = window
    return out


class CrossfadeDetector(nn.Module):
    """(B, 1, H, W) normalised slices (intensities in [0, 1]) -> (B,) logits of "a cross-fade".

    Per width w: a 3x3 convolution and a stride-2 3x3 convolution, each followed by ReLU (so H and W
    halve per width); then the mean and the maximum over the image of the last features, and one
    linear layer. About 80k parameters with the default widths.

    Args:
        widths: channels per resolution level.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 32, 64)):
        super().__init__()
        self.config = {"widths": list(widths)}
        layers: list[nn.Module] = []
        channels = 1
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.body(images)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]
