"""``flow``: motion-compensated interpolation between slices, no learning.

Neighbouring short-axis slices show the same anatomy displaced in-plane (the heart narrows towards the
apex, the ventricles shift). Linear interpolation cross-fades the two and doubles every edge; here the
in-plane motion between the two neighbours is estimated in both directions, each neighbour is warped
to the new slice position along it and the two warps are blended by distance:

    from A (position 0): A sampled at x + t * F_BA(x);  from B (position 1): B at x + (1 - t) * F_AB(x)
    estimate_t = (1 - t) * warp_A + t * warp_B        (F_AB: A(x) ~ B(x + F_AB(x)))

with two independent, well-kept estimators from OpenCV (:mod:`LatentSRLib.opticalflow`): DIS
(Kroeger et al. 2016) and Farneback (2003), whose two estimates are averaged. Measured on validation
patients (ACDC 6.5-10 mm scans 001 002 010 020 030 040 043 050 060 093, every other slice dropped;
``benchmarks/flow_design.py``, 80 slices): over linear, DIS alone +0.124 SSIM / +1.60 dB, Farneback
alone +0.115 / +1.36 dB, their average +0.135 / +1.81 dB. One direction of one slice pair costs
DIS + Farneback ~10 ms of CPU; scikit-image's TV-L1 took 837 ms and its iLK 525 ms for the same
256 x 208 pair (one direction), too slow for 0.5 s a frame. Farneback then ran at half resolution
with OpenCV's usual 9 px window and 5 px polynomial; running it at full resolution with a 15 px window
and a 7 px polynomial (:data:`~LatentSRLib.opticalflow.FARNEBACK_FINE`) gained, on the same patients
with every gate as shipped, +0.005 SSIM / +0.14 dB (+0.006 / +0.05 dB on 043 and 093, the 13-14 mm
gaps nearest the test regime) for ~0.1 s more CPU a 10-slice frame (``benchmarks/farneback_settings.py``,
eight settings).

Where motion cannot be trusted the result moves toward linear interpolation, with a confidence in
[0, 1] that is also an output (``run.confidence``; ``--confidence-out``):

- per pixel: where the two estimators disagree (their half-way images differ by d, smoothed over
  2 px), c = exp(-(d / 0.1)^2): occlusions, through-plane appearance and disappearance of
  structures and wrong matches all make them disagree; a blank neighbour gives 0;
- per scan: the scan re-creates its own acquired slices from their neighbours at twice the gap
  (self-check); if flow does not beat linear there by 0.5 dB (PSNR over the whole scan), its
  confidence is scaled down in proportion, to 0 where flow loses;
- per scan: a stack re-sampled along its slice axis (CMRxMotion is distributed so) is recognised by a
  small bundled detector of cross-faded slices (:mod:`LatentSRLib.synthesize.crossfade`) and goes to
  linear interpolation: there the truth between two slices is a cross-fade that no motion explains
  (on validation scans re-sampled to 0.8 of their spacing, flow without this gate loses 0.088 SSIM to
  linear; with it, +0.0025). The self-check cannot see it: a re-sampled stack re-creates its own
  slices with flow as well as an acquired one does. The current detector trusts every acquired
  validation stack fully (the first one cost 0.008 SSIM there; Resources/Models/crossfade.md).

Forward-backward consistency was measured as occlusion weights between the two warps and as a
confidence (``benchmarks/flow_design.py``, with and without ``--resample 0.8``). The weights changed
little (-0.003 SSIM on acquired scans, -0.005 re-sampled). The confidence cut the loss on re-sampled
scans to a third (-0.028 from -0.088 SSIM) but cost 37 % of the gain on acquired ones (+0.083 from
+0.132). Neither is used: the detector does both jobs better.

Both constants were chosen on the same validation patients: with the per-pixel confidence +0.132 /
+1.73 dB, with the scan gate too (the method as shipped) +0.129 / +1.70 dB, and PSNR below linear on
2 % of slices instead of 6 %. Deterministic; acquired slices are not touched.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..opticalflow import BLANK_STD, FARNEBACK_FINE, candidates, cv2_threads, estimate_flows
from .base import RESAMPLED_NOTE, Method, Run

#: Self-check gain (dB over linear at twice the gap) at and above which a scan is fully trusted.
SCAN_GAIN_FOR_FULL_TRUST = 0.5


def blend(parts: dict[str, np.ndarray], scan_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(image, confidence): linear + c * (flow - linear), c = scan confidence x per-pixel confidence."""
    confidence = (scan_confidence * parts["confidence"]).astype(np.float32)
    return parts["linear"] + confidence * (parts["flow"] - parts["linear"]), confidence


#: Most triplets the scan self-check looks at (evenly spread through the stack; bounds its cost).
SELF_CHECK_TRIPLETS = 4


#: The Farneback settings of this method (the motion refiner keeps those its network was trained with).
FARNEBACK = FARNEBACK_FINE


def _flow_midway(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return blend(candidates(a, b, 0.5, estimate_flows(a, b, FARNEBACK)), 1.0)[0]


def self_check_gain(slices: np.ndarray, recreate=_flow_midway) -> float | None:
    """A method's PSNR gain (dB) over linear in re-creating inner slices of (Z, Y, X) from their two
    neighbours (twice the gap), pooled over up to :data:`SELF_CHECK_TRIPLETS` evenly spread
    non-blank triplets; None where there is none. ``recreate(a, b)`` is the method's half-way
    image (default: flow at full trust)."""
    usable = [i for i in range(1, len(slices) - 1)
              if min(slices[i - 1].std(), slices[i].std(), slices[i + 1].std()) >= BLANK_STD]
    if not usable:
        return None
    picked = sorted({usable[int(round(k))] for k in np.linspace(0, len(usable) - 1, SELF_CHECK_TRIPLETS)})
    # The triplets are independent: two threads, as over_pairs does (the check is ~30 % of a 10-slice frame).
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        recreated = list(pool.map(lambda i: recreate(slices[i - 1], slices[i + 1]), picked))
    method_error = linear_error = 0.0
    for i, image in zip(picked, recreated):
        method_error += float(np.mean((image - slices[i]) ** 2))
        linear_error += float(np.mean((0.5 * (slices[i - 1] + slices[i + 1]) - slices[i]) ** 2))
    if method_error == 0.0 and linear_error == 0.0:
        return None
    tiny = 1e-12  # linear exact (a re-sampled stack) and the method not: a large loss, not a division by 0
    return 10.0 * np.log10((linear_error + tiny) / (method_error + tiny))


def scan_confidence(slices: np.ndarray, recreate=_flow_midway, resampling_check: bool = True,
                     run: Run | None = None) -> float:
    """Trust in a motion-compensated method for this stack: from :func:`self_check_gain` 1 at 0.5 dB
    or more, 0 at or below 0 dB (1 when the stack is too short to check), times the cross-fade
    detector's :func:`~LatentSRLib.synthesize.crossfade.resampling_trust` (0 for a re-sampled stack;
    1 without ``resampling_check``). Where the detector lowers it, ``run`` gets :data:`RESAMPLED_NOTE`
    for the user (an acquired stack can look re-sampled to it: Resources/Models/crossfade.md, Limits)."""
    from ..synthesize.crossfade import resampling_trust  # torch, loaded when a stack is processed

    resampling = resampling_trust(slices) if resampling_check else 1.0
    if resampling < 1.0 and run is not None:
        run.note(RESAMPLED_NOTE)
    if resampling == 0.0:
        return 0.0  # linear interpolation: the self-check's flows need not be computed
    gain = self_check_gain(slices, recreate)
    return resampling * (1.0 if gain is None else float(np.clip(gain / SCAN_GAIN_FOR_FULL_TRUST, 0.0, 1.0)))


def linear_between(a: np.ndarray, b: np.ndarray, factor: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """What a motion-compensated method gives where it has no trust at all: linear interpolation
    (the same numbers as :func:`LatentSRLib.opticalflow.candidates`' "linear") with confidence 0,
    without estimating any flow."""
    return [(((1 - j / factor) * a + j / factor * b).astype(np.float32), np.zeros(a.shape, np.float32))
            for j in range(1, factor)]


def _between(a: np.ndarray, b: np.ndarray, factor: int, trust: float) -> list[tuple[np.ndarray, np.ndarray]]:
    if trust == 0.0:
        return linear_between(a, b, factor)
    flows = estimate_flows(a, b, FARNEBACK)
    return [blend(candidates(a, b, j / factor, flows), trust) for j in range(1, factor)]


def over_pairs(slices: np.ndarray, factor: int, between, run: Run | None = None, done: int = 0,
               total: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Upsample one (Z, Y, X) stack along Z, filling each gap with ``between(a, b, factor)``, which
    returns ``factor - 1`` (image, confidence) pairs for positions 1/factor .. (factor-1)/factor.

    Slice pairs are independent: two threads work on them (OpenCV and torch release the GIL), which
    halves the wall time on two cores and leaves the result unchanged. Progress is reported as
    (done + pairs finished) / total; ``run.cancel`` is polled between pairs.

    Returns:
        (images, confidence), both ((Z - 1) * factor + 1, Y, X) float32; acquired slices are copied
        unchanged and have confidence 1.
    """
    n = len(slices)
    out = np.empty(((n - 1) * factor + 1, *slices.shape[1:]), np.float32)
    confidence = np.ones_like(out)
    out[::factor] = slices
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futures = [pool.submit(between, slices[i], slices[i + 1], factor) for i in range(n - 1)]
        try:
            for i, future in enumerate(futures):
                if run is not None:
                    run.check()
                for j, (image, trust_map) in enumerate(future.result(), start=1):
                    out[i * factor + j], confidence[i * factor + j] = image, trust_map
                if run is not None:
                    run.report((done + i + 1) / total)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return out, confidence


def interpolate_stack(slices: np.ndarray, factor: int, run: Run | None = None,
                      done: int = 0, total: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Motion-compensated upsampling of one (Z, Y, X) normalised stack along Z (see :func:`over_pairs`)."""
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
