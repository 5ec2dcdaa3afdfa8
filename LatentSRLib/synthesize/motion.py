"""Inference of the motion-aware refiner: flow candidates per slice pair, blended by the network.

Per frame and per gap between acquired slices A and B: both optical flows once
(:meth:`LatentSRLib.models.motion.MotionRefiner.estimate_flows`, with the settings its network was
trained with), then for each new position t = j / k the
refiner's inputs (:func:`LatentSRLib.models.motion.network_inputs`) and one batched forward pass.
The refiner's weight on linear interpolation is its own confidence; the scan gates it shares with
``flow`` (:mod:`LatentSRLib.synthesize.gates`: the self-check re-creates acquired slices at twice the
gap, here with the refiner, and the cross-fade detector) scale both the correction to linear and the
confidence, so that on a scan where the refiner does not beat linear
on its own slices the result is linear interpolation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..devices import pick_device
from ..models.motion import INPUTS, MotionRefiner, network_inputs
from ..opticalflow import cv2_threads
from . import gates
from .loading import load_network


def load_model(weights: str | None, device: torch.device) -> tuple[MotionRefiner, dict]:
    """The (cached) refiner for a bundled name or weights file, in eval mode on ``device``."""
    return load_network(weights, "motion", MotionRefiner, device)


def gap_aware(model: MotionRefiner) -> bool:
    """Whether the refiner takes the gap between its two slices as an input (one more channel)."""
    return model.config["in_channels"] == len(INPUTS) + 1


def _refine(model: MotionRefiner, device: torch.device, a: np.ndarray, b: np.ndarray, positions,
            gap_mm: float, flows=None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, weight on linear, linear) at each position in ``positions`` between a and b, which lie
    ``gap_mm`` apart."""
    flows = flows or model.estimate_flows(a, b)
    gap = gap_mm if gap_aware(model) else None
    built = [network_inputs(a, b, t, flows, gap) for t in positions]
    inputs = torch.from_numpy(np.stack([x for x, _, _ in built])).to(device)
    candidates = torch.from_numpy(np.stack([c for _, c, _ in built])).to(device)
    with torch.inference_mode():
        images, weights = model(inputs, candidates)
    images, linear_weight = images[:, 0].float().cpu().numpy(), weights[:, 0].float().cpu().numpy()
    return [(images[k], linear_weight[k], parts["linear"]) for k, (_, _, parts) in enumerate(built)]


def upsample(array: np.ndarray, factor: int, spacing_zyx: tuple, run) -> np.ndarray:
    """The pipeline contract: (T, Z, Y, X) normalised -> (T, (Z - 1) * factor + 1, Y, X); sets
    ``run.confidence``."""
    device = pick_device(run.device)
    model, _ = load_model(run.weights, device)
    cv2_threads(1)
    frames, n = array.shape[:2]
    out = np.empty((frames, (n - 1) * factor + 1, *array.shape[2:]), np.float32)
    confidence = np.empty_like(out)

    spacing = float(spacing_zyx[0])

    def midway(a, b):  # the self-check: an acquired slice from its neighbours, twice the gap apart
        return _refine(model, device, a, b, [0.5], 2 * spacing)[0][0]

    for t in range(frames):
        trust = gates.scan_confidence(array[t], midway, run.resampling_check, run)

        def between(a, b, k, trust=trust):
            if trust == 0.0:
                return gates.linear_between(a, b, k)
            refined = _refine(model, device, a, b, [j / k for j in range(1, k)], spacing)
            return [(linear + trust * (image - linear), (trust * (1.0 - w_linear)).astype(np.float32))
                    for image, w_linear, linear in refined]

        out[t], confidence[t] = gates.over_pairs(array[t], factor, between, run, t * (n - 1), frames * (n - 1))
    run.confidence = confidence
    return out
