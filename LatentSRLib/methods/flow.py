"""``flow``: motion-compensated interpolation between slices, no learning.

Neighbouring short-axis slices show the same anatomy displaced in-plane (the heart narrows towards the
apex, the ventricles shift). Linear interpolation cross-fades the two and doubles every edge; here the
in-plane motion between the two neighbours is estimated in both directions, each neighbour is warped
to the new slice position along it and the two warps are blended by distance:

    from A (position 0): A sampled at x + t * F_BA(x);  from B (position 1): B at x + (1 - t) * F_AB(x)
    estimate_t = (1 - t) * warp_A + t * warp_B        (F_AB: A(x) ~ B(x + F_AB(x)))

with two independent, well-kept estimators from OpenCV (:mod:`LatentSRLib.opticalflow`): DIS
(Kroeger et al. 2016) and Farneback (2003, the finer setting :data:`~LatentSRLib.opticalflow.FARNEBACK_FINE`),
whose two estimates are averaged: together they beat either alone, at ~10 ms a slice pair.

Where motion cannot be trusted the result moves toward linear interpolation, with a confidence in
[0, 1] that is also an output (``run.confidence``; ``--confidence-out``):

- per pixel: where the two estimators disagree (their half-way images differ by d, smoothed over
  2 px), c = exp(-(d / 0.1)^2): occlusions, through-plane appearance and disappearance of
  structures and wrong matches all make them disagree; a blank neighbour gives 0;
- per scan, the gates shared with ``motion`` (:mod:`LatentSRLib.synthesize.gates`): the scan
  re-creates its own acquired slices from their neighbours at twice the gap (self-check), and if flow
  does not beat linear there by 0.5 dB its confidence is scaled down in proportion; a stack re-sampled
  along its slice axis (CMRxMotion is distributed so), recognised by the cross-fade detector, goes to
  linear interpolation.

What was measured to choose all this (estimators, settings, constants, the variants left out):
Resources/Models/flow.md. Deterministic; acquired slices are not touched.
"""

from __future__ import annotations

import numpy as np

from ..opticalflow import FARNEBACK_FINE, candidates, cv2_threads, estimate_flows
from ..synthesize import gates
from ..synthesize.gates import blend, linear_between, over_pairs
from .base import Method, Run

#: The Farneback settings of this method (the motion refiner keeps those its network was trained with).
FARNEBACK = FARNEBACK_FINE


def _flow_midway(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return blend(candidates(a, b, 0.5, estimate_flows(a, b, FARNEBACK)), 1.0)[0]


def scan_confidence(slices: np.ndarray, recreate=_flow_midway, resampling_check: bool = True,
                     run: Run | None = None) -> float:
    """Trust in flow for this stack (:func:`LatentSRLib.synthesize.gates.scan_confidence`, with flow's own
    half-way image in the self-check unless ``recreate`` is given)."""
    return gates.scan_confidence(slices, recreate, resampling_check, run)


def _between(a: np.ndarray, b: np.ndarray, factor: int, trust: float) -> list[tuple[np.ndarray, np.ndarray]]:
    if trust == 0.0:
        return linear_between(a, b, factor)
    flows = estimate_flows(a, b, FARNEBACK)
    return [blend(candidates(a, b, j / factor, flows), trust) for j in range(1, factor)]


def interpolate_stack(slices: np.ndarray, factor: int, run: Run | None = None,
                      done: int = 0, total: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Motion-compensated upsampling of one (Z, Y, X) normalised stack along Z (see
    :func:`~LatentSRLib.synthesize.gates.over_pairs`)."""
    trust = scan_confidence(slices, resampling_check=run is None or run.resampling_check, run=run)
    return over_pairs(slices, factor, lambda a, b, k: _between(a, b, k, trust), run, done, total)


class MotionCompensated(Method):
    name = "flow"
    label = "Flow"
    kind = "conventional"
    normalised = True  # optical flow works on 8-bit images of the normalised intensities
    gives_confidence = True
    asks_crossfade_detector = True
    requirements = (("opencv-python-headless", "cv2"),)
    description = "motion-compensated interpolation along optical flow (OpenCV DIS + Farneback)"

    def upsample(self, array: np.ndarray, factor: int, spacing_zyx: tuple, run: Run) -> np.ndarray:
        cv2_threads(1)  # no oversubscription: the work is spread over slice pairs instead
        frames, n = array.shape[:2]
        out = np.empty((frames, (n - 1) * factor + 1, *array.shape[2:]), np.float32)
        confidence = np.empty_like(out)
        for t in range(frames):
            out[t], confidence[t] = interpolate_stack(array[t], factor, run, t * (n - 1), frames * (n - 1))
        run.confidence = confidence
        return out


METHOD = MotionCompensated()
