#!/usr/bin/env python3
"""How the ``flow`` method was chosen: its variants on VALIDATION patients, with the papers' protocol.

Each variant re-creates the dropped slices of every volume (percentile-normalised, every other slice
kept, factor 2, 128 x 128 centre crop); blank slices are left out. Printed: mean SSIM / PSNR gain
over linear, the share of slices where PSNR is below linear, and CPU seconds for the flow estimates.
``--resample R`` first re-samples each scan linearly along z to R times its spacing (as CMRxMotion is
distributed; see ``benchmarks/motion_validation.py``), where the truth between slices is a cross-fade.

    .venv/bin/python benchmarks/flow_design.py ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}
    .venv/bin/python benchmarks/flow_design.py --resample 0.8 ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,050,060}

Forward-backward consistency (the classical occlusion test, |F_ab(p) + F_ba(p + F_ab(p))|, smoothed over
2 px) is measured in two roles: as occlusion weights between the two one-sided warps (a pixel of A whose
flow does not come back is taken from B) and as a confidence toward linear (exp(-(e / 2 px)^2), e the
smaller of the two errors at the new position). Neither is in the method (flow.py says why).

Never run it on the test patients to choose anything (ACDC 035 075 081 082 084 085, CMRxMotion).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.evaluate import protocol_case  # noqa: E402
from LatentSRLib.interpolate import resample_along_slices  # noqa: E402
from LatentSRLib.methods import flow  # noqa: E402
from LatentSRLib.metrics import centre_crop, psnr, ssim  # noqa: E402
from LatentSRLib.opticalflow import BLANK_STD, candidates, cv2_threads, estimate_flows, warp  # noqa: E402
from LatentSRLib.volume import find_images, read, volume_name  # noqa: E402


FB_SMOOTHING, FB_OCCLUSION_PX, FB_CONFIDENCE_PX = 2.0, 1.0, 2.0


def fb_error(f_ab: np.ndarray, f_ba: np.ndarray) -> np.ndarray:
    """|F_ab(p) + F_ba(p + F_ab(p))| in A's frame (pixels), smoothed: large where A's motion does not come back."""
    back = np.stack([warp(f_ba[..., k], f_ab) for k in range(2)], -1)
    return ndimage.gaussian_filter(np.linalg.norm(f_ab + back, axis=-1), FB_SMOOTHING)


def fb_variants(parts: dict, flows: dict, t: float = 0.5) -> dict[str, np.ndarray]:
    """Flow with forward-backward occlusion weights, and with a forward-backward confidence too."""
    estimates, confidences = [], []
    for name, (f_ab, f_ba) in flows.items():
        error_a = warp(fb_error(f_ab, f_ba), t * f_ba)        # A's error, moved to t like A
        error_b = warp(fb_error(f_ba, f_ab), (1 - t) * f_ab)  # B's error, moved to t like B
        weight_a = (1 - t) * (np.exp(-(error_a / FB_OCCLUSION_PX) ** 2) + 1e-3)
        weight_b = t * (np.exp(-(error_b / FB_OCCLUSION_PX) ** 2) + 1e-3)
        estimates.append((weight_a * parts[name + "_a"] + weight_b * parts[name + "_b"]) / (weight_a + weight_b))
        confidences.append(np.exp(-(np.minimum(error_a, error_b) / FB_CONFIDENCE_PX) ** 2))
    occlusion_aware = 0.5 * (estimates[0] + estimates[1])
    linear = parts["linear"]
    fb_confidence = parts["confidence"] * 0.5 * (confidences[0] + confidences[1])
    return {"+ forward-backward occlusion weights": linear + parts["confidence"] * (occlusion_aware - linear),
            "+ forward-backward confidence too": linear + fb_confidence * (occlusion_aware - linear)}


def variants(parts: dict, trust: float) -> dict[str, np.ndarray]:
    linear = parts["linear"]
    return {
        "linear": linear,
        "dis": parts["dis"],
        "farneback": parts["farneback"],
        "dis+farneback": parts["flow"],
        "dis+farneback 50% linear": 0.5 * (parts["flow"] + linear),
        "+ pixel confidence": flow.blend(parts, 1.0)[0],
        "+ scan gate (the method)": flow.blend(parts, trust)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--resample", type=float, help="re-sample each scan to this fraction of its spacing first")
    args = parser.parse_args()
    cv2_threads(1)
    scores: dict[str, list[tuple[float, float]]] = {}
    flow_seconds = 0.0
    files = find_images(args.paths)
    for path in files:
        volume = read(path)
        if args.resample:
            spacing = list(volume.spacing)
            spacing[2] *= args.resample
            volume = volume.with_array(np.stack([resample_along_slices(f, args.resample) for f in volume.array]), tuple(spacing))
        for t in range(volume.n_frames):
            case = protocol_case(f"{volume_name(path)}_t{t}", volume.with_array(volume.array[t:t + 1]))
            kept = case.truth[::2]
            trust = flow.scan_confidence(kept)
            for j in case.scored:
                a, b, truth = kept[j // 2], kept[j // 2 + 1], case.truth[j]
                if min(a.std(), b.std(), truth.std()) < BLANK_STD:
                    continue
                started = time.process_time()
                flows = estimate_flows(a, b)
                flow_seconds += time.process_time() - started
                ref = centre_crop(truth, 128)
                parts = candidates(a, b, 0.5, flows)
                for name, image in {**variants(parts, trust), **fb_variants(parts, flows)}.items():
                    test = centre_crop(image, 128)
                    scores.setdefault(name, []).append((ssim(ref, test), psnr(ref, test)))
    base = np.array(scores["linear"])
    n = len(base)
    print(f"{len(files)} files, {n} slices; flow estimates {1000 * flow_seconds / n:.0f} ms CPU per slice pair")
    print(f"| variant | SSIM | PSNR (dB) | SSIM - linear | PSNR - linear | PSNR below linear |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in scores.items():
        v = np.array(values)
        d = v - base
        print(f"| {name} | {v[:, 0].mean():.4f} | {v[:, 1].mean():.2f} | {d[:, 0].mean():+.4f} | "
              f"{d[:, 1].mean():+.2f} | {100 * np.mean(d[:, 1] < 0):.0f} % |")


if __name__ == "__main__":
    main()
