"""Dense in-plane motion between two slices and the images it predicts between them (ground layer).

Used by the ``flow`` method and by the motion-aware model (its inference and its training), so it
sits below both. Two independent, well-kept estimators from OpenCV: DIS (Kroeger et al. 2016) and
Farneback (2003); the interpolation along them is

    from A (position 0): A sampled at x + t * F_BA(x);  from B (position 1): B at x + (1 - t) * F_AB(x)
    estimate_t = (1 - t) * warp_A + t * warp_B        (F_AB: A(x) ~ B(x + F_AB(x)))

Inputs are slices of percentile-normalised intensities in [0, 1]. OpenCV is imported on first use.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Per-pixel confidence: image difference (normalised units) at which trust falls to 1/e.
DISAGREEMENT_SCALE = 0.1
#: Smoothing (pixels) of the disagreement before it becomes a confidence.
DISAGREEMENT_SMOOTHING = 2.0
#: A slice whose standard deviation is below this (normalised units) is blank: no motion to follow.
BLANK_STD = 1e-3


@dataclasses.dataclass(frozen=True)
class Farneback:
    """Settings of OpenCV's Farneback estimator (``cv2.calcOpticalFlowFarneback``).

    Attributes:
        half_resolution: run on images area-averaged to half size, upsample the flow (4x cheaper).
        levels: pyramid levels (each 1/2 of the one below).
        window: averaging window (pixels): larger follows larger motion, smoother.
        poly_n, poly_sigma: the neighbourhood (pixels) of the polynomial expansion and its Gaussian.
        iterations: per pyramid level.
    """

    half_resolution: bool
    levels: int
    window: int
    poly_n: int
    poly_sigma: float
    iterations: int = 5


#: The settings the bundled motion refiner's candidates were computed with (its network depends on them).
FARNEBACK_FAST = Farneback(half_resolution=True, levels=3, window=9, poly_n=5, poly_sigma=1.1)
#: The ``flow`` method's: full resolution, a 15 px window and a 7 px polynomial; on the validation patients
#: +0.14 dB / +0.005 SSIM over FARNEBACK_FAST (+0.05 dB at 13-14 mm gaps) for ~0.15 s more a 10-slice frame
#: (benchmarks/farneback_settings.py).
FARNEBACK_FINE = Farneback(half_resolution=False, levels=4, window=15, poly_n=7, poly_sigma=1.5)
#: The settings by the name a motion refiner's weights record (``farneback`` in its config).
FARNEBACK_SETTINGS = {"fast": FARNEBACK_FAST, "fine": FARNEBACK_FINE}


def _cv2():
    import cv2  # imported on first use: only this method needs OpenCV

    return cv2


def cv2_threads(n: int) -> None:
    """Limit OpenCV's own thread pool (callers parallelise over slice pairs instead)."""
    _cv2().setNumThreads(n)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def estimate_flows(a: np.ndarray, b: np.ndarray, farneback: Farneback = FARNEBACK_FAST
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Dense in-plane motion both ways between two normalised slices, by DIS and by Farneback.

    DIS (medium preset) runs at full resolution; Farneback as ``farneback`` says (the default is what
    the bundled motion refiner was trained with; the ``flow`` method uses :data:`FARNEBACK_FINE`).

    Returns:
        {"dis": (F_ab, F_ba), "farneback": (F_ab, F_ba)}, each (Y, X, 2) float32 in pixels (x, y),
        with a(p) ~ b(p + F_ab(p)).
    """
    cv2 = _cv2()
    a8, b8 = _to_uint8(a), _to_uint8(b)
    rows, columns = a8.shape
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    settings = (0.5, farneback.levels, farneback.window, farneback.iterations, farneback.poly_n,
                farneback.poly_sigma, 0)  # pyramid scale 0.5, no flags
    if not farneback.half_resolution:
        fb_ab, fb_ba = (cv2.calcOpticalFlowFarneback(x, y, None, *settings) for x, y in ((a8, b8), (b8, a8)))
    else:
        small = (max(1, columns // 2), max(1, rows // 2))
        a_small, b_small = (cv2.resize(x, small, interpolation=cv2.INTER_AREA) for x in (a8, b8))
        scale = np.array([columns / small[0], rows / small[1]], np.float32)
        fb_ab, fb_ba = (cv2.resize(cv2.calcOpticalFlowFarneback(x, y, None, *settings), (columns, rows),
                                   interpolation=cv2.INTER_LINEAR) * scale
                        for x, y in ((a_small, b_small), (b_small, a_small)))
    return {"dis": (dis.calc(a8, b8, None), dis.calc(b8, a8, None)), "farneback": (fb_ab, fb_ba)}


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at p + ``flow``(p), bilinear, edges replicated."""
    cv2 = _cv2()
    rows, columns = image.shape
    gx, gy = np.meshgrid(np.arange(columns, dtype=np.float32), np.arange(rows, dtype=np.float32))
    flow = np.asarray(flow, np.float32)
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), gx + flow[..., 0], gy + flow[..., 1],
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def agreement(dis: np.ndarray, farneback: np.ndarray) -> np.ndarray:
    """Per-pixel confidence in [0, 1] from the two estimators' images at the same position: where they
    differ by d (smoothed over :data:`DISAGREEMENT_SMOOTHING` px), exp(-(d / :data:`DISAGREEMENT_SCALE`)^2)."""
    from scipy import ndimage  # here, not at the top: listing methods (Slicer's start-up) stays light

    disagreement = ndimage.gaussian_filter(np.abs(dis - farneback), DISAGREEMENT_SMOOTHING)
    return np.exp(-(disagreement / DISAGREEMENT_SCALE) ** 2).astype(np.float32)


def candidates(a: np.ndarray, b: np.ndarray, t: float, flows: dict | None = None) -> dict[str, np.ndarray]:
    """The images at position ``t`` in (0, 1) between slices ``a`` (0) and ``b`` (1).

    Returns:
        each (Y, X) float32: "linear"; per estimator E in ("dis", "farneback") the one-sided warps
        "E_a" (``a`` moved to t) and "E_b" (``b`` moved to t) and their distance-weighted blend "E";
        "flow" (the two estimators' blends averaged); "confidence" (per pixel, [0, 1]: how well the
        two estimators agree, 0 where a neighbour is blank).
    """
    flows = flows or estimate_flows(a, b)
    out = {"linear": ((1 - t) * a + t * b).astype(np.float32)}
    for name, (f_ab, f_ba) in flows.items():
        out[name + "_a"], out[name + "_b"] = warp(a, t * f_ba), warp(b, (1 - t) * f_ab)
        out[name] = (1 - t) * out[name + "_a"] + t * out[name + "_b"]
    out["flow"] = 0.5 * (out["dis"] + out["farneback"])
    confidence = agreement(out["dis"], out["farneback"])
    if a.std() < BLANK_STD or b.std() < BLANK_STD:
        confidence[:] = 0.0
    out["confidence"] = confidence
    return out
