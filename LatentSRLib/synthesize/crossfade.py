"""Is a stack re-sampled along its slice axis? The bundled cross-fade detector's answer, as a trust.

:class:`LatentSRLib.models.crossfade.CrossfadeDetector` scores each (non-blank) slice of a stack; the
stack's score is their mean probability of being a blend of two acquired slices. Acquired stacks
score low, re-sampled stacks high (thresholds chosen on validation patients, plain and re-sampled:
``benchmarks/crossfade_validation.py``, Resources/Models/crossfade.md). The motion-compensated
methods multiply their scan trust by :func:`resampling_trust`, so on a re-sampled stack they move to
linear interpolation, the right answer where the truth between slices is a cross-fade.
"""

from __future__ import annotations

import numpy as np
import torch

from ..bandlimit import band_limit, to_acquired_grid
from ..models.crossfade import CrossfadeDetector, detector_input
from ..opticalflow import BLANK_STD
from .loading import load_network

#: Stack scores at and below which a stack counts as acquired (trust 1), and at and above which as
#: re-sampled (trust 0); linear in between. They belong to the bundled file: chosen on validation patients
#: in the gap between its acquired and re-sampled stacks' scores (Resources/Models/crossfade.md).
ACQUIRED_SCORE, RESAMPLED_SCORE = 0.12, 0.2


def stack_score(slices: np.ndarray, weights: str | None = None) -> float | None:
    """Mean probability that a slice of the normalised (Z, Y, X) stack is a cross-fade (None: no
    slice with content). Runs on the CPU: a few slices of 128 x 128 take milliseconds.

    A stack reconstructed on a finer grid than it was acquired on is looked at on its acquired grid
    (:mod:`LatentSRLib.bandlimit`): the detector learned ACDC's grids, and takes the smoothness of a
    zero-filled reconstruction for a cross-fade."""
    slices = to_acquired_grid(slices, band_limit(slices))
    usable = [s for s in slices if s.std() >= BLANK_STD]
    if not usable:
        return None
    model, _ = load_network(weights, "crossfade", CrossfadeDetector, torch.device("cpu"))
    images = torch.from_numpy(np.stack([detector_input(s) for s in usable])[:, None])
    with torch.inference_mode():
        return float(torch.sigmoid(model(images)).mean())


def resampling_trust(slices: np.ndarray, weights: str | None = None) -> float:
    """1 for an acquired-looking stack, 0 for a re-sampled-looking one (see the thresholds above)."""
    score = stack_score(slices, weights)
    if score is None:
        return 1.0
    return float(np.clip((RESAMPLED_SCORE - score) / (RESAMPLED_SCORE - ACQUIRED_SCORE), 0.0, 1.0))
