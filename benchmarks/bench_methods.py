"""Speed and peak memory of every method on a cine at factor 2 (issue: 30 frames of 10x256x256).

Each (method, frames) case runs in a fresh Python process so its peak resident memory (ru_maxrss)
is its own; inside it the super-resolution is repeated and the median time is reported. Frames are
taken from the synthetic phantom (the same numbers as real data for timing purposes).

    python benchmarks/bench_methods.py                       # the default methods, 10/20/30 frames, 3 repeats
    python benchmarks/bench_methods.py --methods contrastive --frames 1,10,30 --repeats 3   # the README's contrastive rows
    python benchmarks/bench_methods.py --methods ae --frames 30 --repeats 1 --device cuda
    python benchmarks/bench_methods.py --methods contrastive --frames 1 --repeats 2 --weights contrastive-acdc   # the teacher
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def one_case(method: str, frames: int, repeats: int, device: str, size: int, slices: int,
             weights: str | None = None) -> dict:
    import numpy as np
    import torch

    from LatentSRLib import phantom
    from LatentSRLib.pipeline import Run, super_resolve

    cine = phantom.cine(frames=1, slices=slices, size=size, pixel_size=1.4, factor=1, seed=0).acquired
    volume = cine.with_array(np.repeat(cine.array, frames, axis=0))
    volume.is_4d = True
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = super_resolve(volume, method, factor=2, run=Run(device=device, weights=weights))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    assert out.array.shape == (frames, 2 * slices - 1, size, size)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "frames": frames, "median_s": statistics.median(times), "times": times,
            "per_frame_s": statistics.median(times) / frames, "peak_rss_mb": peak_mb,
            "threads": torch.get_num_threads(), "weights": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="linear,bspline,lanczos,flow,ae,contrastive,motion")
    parser.add_argument("--frames", default="10,20,30")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--weights", help="weights of the learned method(s) (default: the bundled default)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # the child process
        method, frames = args.case.split(":")
        print(json.dumps(one_case(method, int(frames), args.repeats, args.device, args.size, args.slices,
                                  args.weights)))
        return
    results = []
    for method in args.methods.split(","):
        for frames in map(int, args.frames.split(",")):
            child = subprocess.run([sys.executable, __file__, "--case", f"{method}:{frames}", "--repeats",
                                    str(args.repeats), "--device", args.device, "--size", str(args.size),
                                    "--slices", str(args.slices)] + (["--weights", args.weights] if args.weights else []),
                                   capture_output=True, text=True, check=True)
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(f"{method:12s} {frames:3d} frames: median {r['median_s']:.2f} s "
                  f"({r['per_frame_s']:.3f} s/frame), peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print(f"\n{args.slices}x{args.size}x{args.size} cine, factor 2, device {args.device}, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats} runs per case"
          f"{', weights ' + args.weights if args.weights else ''}\n")
    print("| method | frames | median time (s) | s / frame | peak memory (MB) | time vs 10 frames |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        base = next(b for b in results if b["method"] == r["method"])
        ratio = r["median_s"] / base["median_s"]
        print(f"| {r['method']} | {r['frames']} | {r['median_s']:.2f} | {r['per_frame_s']:.3f} | "
              f"{r['peak_rss_mb']:.0f} | {ratio:.2f} (frames x{r['frames'] / base['frames']:.0f}) |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
