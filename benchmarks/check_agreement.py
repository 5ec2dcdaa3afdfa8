#!/usr/bin/env python3
"""How often ``latentsr check`` (a few slices of one frame, seconds) picks the same winner as the full
drop-slice protocol (``evaluate``, every slice of the same frame), and how well it ranks methods.

    .venv/bin/python benchmarks/check_agreement.py SCAN [SCAN ...] --methods linear,bspline,flow,ae,contrastive

Prints one line per scan (quick winner, full winner, Kendall tau over the methods' mean SSIM, seconds)
and the totals. Use scans that are not test patients when choosing anything from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib import check, evaluate  # noqa: E402
from LatentSRLib.volume import read  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scans", nargs="+")
    parser.add_argument("--methods", default="linear,bspline,flow,ae,contrastive")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    methods = args.methods.split(",")
    same, taus = 0, []
    print("| scan | check winner | protocol winner | Kendall tau | check s | protocol s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in args.scans:
        volume = read(path)
        frame = volume.with_array(volume.array[:1])
        started = time.perf_counter()
        quick = check.check_scan(frame, methods, max_seconds=600, device=args.device)
        quick_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rows = evaluate.evaluate_volume(Path(path).name, frame, methods, device=args.device)
        full_seconds = time.perf_counter() - started
        full = {m: float(np.nanmean([r.ssim for r in rows if r.method == m])) for m in methods}
        fast = {r.method: r.ssim for r in quick.rows}
        tau = kendalltau([fast[m] for m in methods], [full[m] for m in methods]).statistic
        winner = max(full, key=full.get)
        same += quick.winner == winner
        taus.append(tau)
        print(f"| {Path(path).name} | {quick.winner} | {winner} | {tau:.2f} | {quick_seconds:.1f} | {full_seconds:.1f} |",
              flush=True)
    print(f"\nsame winner on {same} of {len(args.scans)} scans; Kendall tau median {np.median(taus):.2f}, "
          f"mean {np.mean(taus):.2f}")


if __name__ == "__main__":
    main()
