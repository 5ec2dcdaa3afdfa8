#!/usr/bin/env python3
"""How the ``flow`` method was chosen: its variants on VALIDATION patients, with the papers' protocol.

Each variant re-creates the dropped slices of every volume (percentile-normalised, every other slice
kept, factor 2, 128 x 128 centre crop); blank slices are left out. Printed: mean SSIM / PSNR gain
over linear, the share of slices where PSNR is below linear, and CPU seconds for the flow estimates.

    .venv/bin/python benchmarks/flow_design.py ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}

Never run it on the test patients to choose anything (ACDC 035 075 081 082 084 085, CMRxMotion).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.evaluate import protocol_case  # noqa: E402
from LatentSRLib.methods import flow  # noqa: E402
from LatentSRLib.metrics import centre_crop, psnr, ssim  # noqa: E402
from LatentSRLib.opticalflow import BLANK_STD, candidates, cv2_threads, estimate_flows  # noqa: E402
from LatentSRLib.volume import find_images, read, volume_name  # noqa: E402


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
    args = parser.parse_args()
    cv2_threads(1)
    scores: dict[str, list[tuple[float, float]]] = {}
    flow_seconds = 0.0
    files = find_images(args.paths)
    for path in files:
        volume = read(path)
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
                for name, image in variants(candidates(a, b, 0.5, flows), trust).items():
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
