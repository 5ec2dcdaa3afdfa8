"""What the motion-compensated methods (``flow`` and ``motion``) share: the pair loop, the linear
fall-back and the scan gates.

Both fill each gap between two acquired slices on its own (:func:`over_pairs`), give linear
interpolation where they have no trust (:func:`linear_between`), and scale their correction to linear
by a per-scan trust (:func:`scan_confidence`): the scan's own acquired slices re-created from their
neighbours at twice the gap (the self-check), times the cross-fade detector's answer for stacks
re-sampled along their slice axis (:mod:`LatentSRLib.synthesize.crossfade`). Each method hands in its
own half-way image (``recreate``). Numpy and OpenCV; torch only for the detector, loaded when a stack
is checked. Nothing here imports a method (``Testing/test_structure.py``): the methods import this.
How the constants were chosen: Resources/Models/flow.md.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..opticalflow import BLANK_STD

#: Self-check gain (dB over linear at twice the gap) at and above which a scan is fully trusted.
SCAN_GAIN_FOR_FULL_TRUST = 0.5

#: Most triplets the scan self-check looks at (evenly spread through the stack; bounds its cost).
SELF_CHECK_TRIPLETS = 4

#: What ``flow`` and ``motion`` tell the user when the cross-fade detector sends a stack (toward) linear.
RESAMPLED_NOTE = ("the cross-fade detector took this stack (or some of its frames) for one re-sampled along its "
                  "slice axis, so the result there is (closer to) linear interpolation; if it was acquired as it "
                  "is, e.g. enlarged in-plane by smooth interpolation, switch the check off (--no-resampling-check; "
                  "in Slicer: Advanced, Check for re-sampled stacks)")


def blend(parts: dict[str, np.ndarray], scan_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(image, confidence): linear + c * (flow - linear), c = scan confidence x per-pixel confidence
    (``parts`` from :func:`LatentSRLib.opticalflow.candidates`)."""
    confidence = (scan_confidence * parts["confidence"]).astype(np.float32)
    return parts["linear"] + confidence * (parts["flow"] - parts["linear"]), confidence


def self_check_gain(slices: np.ndarray, recreate) -> float | None:
    """A method's PSNR gain (dB) over linear in re-creating inner slices of (Z, Y, X) from their two
    neighbours (twice the gap), pooled over up to :data:`SELF_CHECK_TRIPLETS` evenly spread
    non-blank triplets; None where there is none. ``recreate(a, b)`` is the method's half-way image."""
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


def scan_confidence(slices: np.ndarray, recreate, resampling_check: bool = True, run=None) -> float:
    """Trust in a motion-compensated method for this stack: from :func:`self_check_gain` 1 at 0.5 dB
    or more, 0 at or below 0 dB (1 when the stack is too short to check), times the cross-fade
    detector's :func:`~LatentSRLib.synthesize.crossfade.resampling_trust` (0 for a re-sampled stack;
    1 without ``resampling_check``). Where the detector lowers it, ``run`` (a
    :class:`LatentSRLib.methods.base.Run`) gets :data:`RESAMPLED_NOTE` for the user (an acquired stack
    can look re-sampled to it: Resources/Models/crossfade.md, Limits)."""
    from .crossfade import resampling_trust  # torch, loaded when a stack is processed

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


def over_pairs(slices: np.ndarray, factor: int, between, run=None, done: int = 0,
               total: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Upsample one (Z, Y, X) stack along Z, filling each gap with ``between(a, b, factor)``, which
    returns ``factor - 1`` (image, confidence) pairs for positions 1/factor .. (factor-1)/factor.

    Slice pairs are independent: two threads work on them (OpenCV and torch release the GIL), which
    halves the wall time on two cores and leaves the result unchanged. Progress is reported as
    (done + pairs finished) / total; ``run.cancel`` is polled between pairs (``run``: a
    :class:`LatentSRLib.methods.base.Run` or None).

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
