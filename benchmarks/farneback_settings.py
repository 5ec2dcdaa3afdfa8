#!/usr/bin/env python3
"""How the ``flow`` method's Farneback settings were chosen: the method with each candidate setting on
VALIDATION patients, with the papers' drop-slice protocol (``latentsr evaluate``'s rules).

Printed per setting: mean SSIM and PSNR gain over linear and over the motion refiner's setting
(``FARNEBACK_FAST``, the method's setting before), and the median time of both flow estimates (both
directions) for the 9 slice pairs of a 10 x 256 x 256 frame on one thread.

    .venv/bin/python benchmarks/farneback_settings.py \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}
    .venv/bin/python benchmarks/farneback_settings.py ../shared/data/acdc_fullfov/patient{043,093}

Never run it on the test patients to choose anything (ACDC 035 075 081 082 084 085, CMRxMotion).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib import evaluate  # noqa: E402
from LatentSRLib.intensity import normalise  # noqa: E402
from LatentSRLib.methods import flow  # noqa: E402
from LatentSRLib.opticalflow import FARNEBACK_FAST, FARNEBACK_FINE, Farneback, cv2_threads, estimate_flows  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402

SETTINGS = {
    "fast (motion refiner's; flow's before)": FARNEBACK_FAST,
    "half resolution, 15 px window": Farneback(True, 4, 15, 5, 1.1),
    "half resolution, 15 px window, 7 px polynomial": Farneback(True, 4, 15, 7, 1.5),
    "full resolution": Farneback(False, 3, 9, 5, 1.1),
    "full resolution, 7 px polynomial": Farneback(False, 3, 9, 7, 1.5),
    "full resolution, 15 px window": Farneback(False, 4, 15, 5, 1.1),
    "full resolution, 21 px window, 7 px polynomial": Farneback(False, 5, 21, 7, 1.5),
    "fine (flow's): full resolution, 15 px window, 7 px polynomial": FARNEBACK_FINE,
}


def seconds_per_frame(frame: np.ndarray, setting: Farneback, repeats: int = 5) -> float:
    cv2_threads(1)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(len(frame) - 1):
            estimate_flows(frame[i], frame[i + 1], setting)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    cases = [(Path(p).name, read(p)) for p in find_images(args.paths)]
    linear = np.array([(r.ssim, min(r.psnr, 60.0)) for name, volume in cases
                       for r in evaluate.evaluate_volume(name, volume, ["linear"], device="cpu")])
    timing = normalise(cases[0][1].array[0], clip=True)[0][:10, :256, :256].astype(np.float32)
    reference = None
    print(f"{len(linear)} slices")
    for label, setting in SETTINGS.items():
        flow.FARNEBACK = setting
        scores = np.array([(r.ssim, min(r.psnr, 60.0)) for name, volume in cases
                           for r in evaluate.evaluate_volume(name, volume, ["flow"], device="cpu")])
        reference = scores if reference is None else reference
        gain, over_fast = scores.mean(0) - linear.mean(0), scores.mean(0) - reference.mean(0)
        print(f"{label:62s} vs linear {gain[0]:+.4f} SSIM {gain[1]:+.2f} dB | vs fast {over_fast[0]:+.4f} "
              f"{over_fast[1]:+.3f} dB | flows {seconds_per_frame(timing, setting):.2f} s a frame")


if __name__ == "__main__":
    main()
