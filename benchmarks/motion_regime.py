#!/usr/bin/env python3
"""Issue 28's variants of ``motion`` on the VALIDATION patient 082 (ED/ES volumes and cine), with the protocol.

The drop-slice protocol of ``latentsr evaluate`` (every other slice kept, factor 2: 10 mm gaps; every gate
as shipped) on 082's two ED/ES volumes and every frame of its cine (65 scored slices). Printed: each
method's mean SSIM / PSNR, and the variant against the bundled ``motion`` and against ``flow`` (mean
difference, one-sided Wilcoxon p, paired per slice). The acceptance rule (Resources/Models/motion.md,
"In-regime retraining and better warps") asks of a variant +0.1 dB PSNR over the bundled file and no
loss of SSIM.

    .venv/bin/python benchmarks/motion_regime.py                                  # bundled motion and flow
    .venv/bin/python benchmarks/motion_regime.py --weights runs/motion_r2.pt      # a retrained refiner
    .venv/bin/python benchmarks/motion_regime.py --warp runs/motion_w1.pt         # the warp-correcting refiner

Never run it on the test patients (081 084 085) to choose anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib import evaluate  # noqa: E402
from LatentSRLib.volume import find_images  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VALIDATION = find_images([str(DATA / "acdc_fullfov" / "patient082"), str(DATA / "acdc_cine" / "patient082_4d.nii.gz")])


def use_warp_refiner(path: str) -> None:
    """Make ``motion``'s inference run the warp-correcting refiner of scripts/train_motion_warp.py."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_motion_warp import WarpRefiner, example

    from LatentSRLib.synthesize import motion

    saved = torch.load(path, weights_only=False)
    model = WarpRefiner(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    model.eval()

    def refine(_model, _device, a, b, positions, gap_mm, flows=None):
        flows = flows or _model.estimate_flows(a, b)
        built = [example(a, b, t, flows) for t in positions]
        tensors = [torch.from_numpy(np.stack([row[k] for row in built])) for k in range(5)]
        with torch.inference_mode():
            images, weights = model(*tensors)
        return [(images[k, 0].numpy(), weights[k, 0].numpy(), ((1 - t) * a + t * b).astype(np.float32))
                for k, t in enumerate(positions)]

    motion._refine = refine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="a motion refiner weights file (default: the bundled file)")
    parser.add_argument("--warp", help="a warp-correcting refiner from scripts/train_motion_warp.py")
    parser.add_argument("--out", help="keep the per-slice rows in this .csv")
    args = parser.parse_args()
    methods = ["linear", "flow", "motion"]
    bundled = []
    for path in VALIDATION:
        bundled += evaluate.evaluate_file(path, methods, device="cpu").rows
    rows = [r for r in bundled if r.method != "motion"] + [r for r in bundled if r.method == "motion"]
    if args.weights or args.warp:
        if args.warp:
            use_warp_refiner(args.warp)
        for path in VALIDATION:
            variant = evaluate.evaluate_file(path, ["motion"], device="cpu", weights={"motion": args.weights}).rows
            rows += [dataclasses.replace(row, method="variant") for row in variant]
    names = sorted({r.method for r in rows}, key=["linear", "flow", "motion", "variant"].index)
    scores = {m: np.array([(r.ssim, min(r.psnr, 60.0)) for r in rows if r.method == m]) for m in names}
    print(f"{len(scores['linear'])} slices of 082")
    for method in names:
        print(f"{method:8s} SSIM {scores[method][:, 0].mean():.4f}  PSNR {scores[method][:, 1].mean():.3f} dB")
    for first, second in [("motion", "flow"), ("variant", "motion"), ("variant", "flow")]:
        if first in scores and second in scores:
            d = scores[first] - scores[second]
            p = [wilcoxon(d[:, k], alternative="greater").pvalue if np.any(d[:, k]) else 1.0 for k in (0, 1)]
            print(f"{first} - {second}: SSIM {d[:, 0].mean():+.4f} (p {p[0]:.2g}), PSNR {d[:, 1].mean():+.3f} dB "
                  f"(p {p[1]:.2g})")
    if args.out:
        with open(args.out, "w") as f:
            f.write("volume,slice,method,ssim,psnr\n")
            f.writelines(f"{r.volume},{r.slice},{r.method},{r.ssim},{r.psnr}\n" for r in rows)


if __name__ == "__main__":
    main()
