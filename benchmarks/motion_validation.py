#!/usr/bin/env python3
"""How the bundled ``motion`` file was chosen: linear, flow and motion on VALIDATION patients, with the
papers' drop-slice protocol, as they are and re-sampled linearly along the slice axis.

``--resample R`` first re-samples each scan to R times its slice spacing (linear interpolation along z),
the way some public data sets are distributed (CMRxMotion is): there the truth between two slices is a
cross-fade, and a motion-aware method must not fall below linear. ``--no-gate`` switches the scan
self-check off (trust 1 everywhere) to see what it changes, ``--no-resampling-check`` the cross-fade
detector only. ``--zoom F`` above 1 enlarges each scan in-plane (a finer reconstruction grid, bilinearly),
``--zero-fill F`` by zero-filling k-space (as scanners reconstruct on a finer grid). ``--ablate residual`` drops the network's
residual, ``--ablate linear`` takes linear interpolation out of its blend (the other weights renormalised),
``--ablate symmetric`` ties each estimator's two one-sided warps into its distance-weighted blend,
to see what each part contributes (Resources/Models/motion.md, Limits). ``--linear-offset B`` adds B to the
linear candidate's logit (how the bundled file's ``linear_logit_offset`` was chosen: motion.md, Choice).

    .venv/bin/python benchmarks/motion_validation.py --weights runs/motion_v3.pt \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,043,050,060,093}
    .venv/bin/python benchmarks/motion_validation.py --weights runs/motion_v3.pt --resample 0.8 \\
        ../shared/data/acdc_fullfov/patient{001,002,010,020,030,040,050,060}

Never run it on the test patients to choose anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib import evaluate  # noqa: E402
from LatentSRLib.bandlimit import zero_fill  # noqa: E402
from LatentSRLib.interpolate import resample_along_slices, shrink_in_plane  # noqa: E402
from LatentSRLib.synthesize import gates  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402

METHODS = ["linear", "flow", "motion"]


def ablate(parts: set[str], linear_offset: float = 0.0) -> None:
    """Replace the refiner's output rule by one without the residual and/or the linear candidate, and/or
    with ``linear_offset`` added to the linear candidate's logit (above 0: more fall-back to linear), on top
    of the weights' own ``linear_logit_offset``. ``symmetric`` in ``parts``: each estimator's two one-sided
    weights act together on its distance-weighted blend of both warps, as in ``flow`` (no one-sided choice)."""
    import torch

    from LatentSRLib.models.motion import CANDIDATES, INPUTS, MotionRefiner

    def forward(self, inputs, candidates):
        out = self.head_output(inputs)
        logits = self.blend_logits(inputs, out)
        logits[:, CANDIDATES.index("linear")] += linear_offset
        if "linear" in parts:
            logits[:, CANDIDATES.index("linear")] = float("-inf")
        weights = torch.softmax(logits, 1)
        image = (weights * candidates).sum(1, keepdim=True)
        if "symmetric" in parts:
            t = inputs[:, INPUTS.index("t")].unsqueeze(1)
            image = weights[:, :1] * candidates[:, :1]
            for k in (1, 3):  # (E_a, E_b) of each estimator, in CANDIDATES' order
                both = weights[:, k:k + 2].sum(1, keepdim=True)
                image = image + both * ((1 - t) * candidates[:, k:k + 1] + t * candidates[:, k + 1:k + 2])
        if "residual" not in parts:
            image = image + self.residual_scale * torch.tanh(out[:, -1:])
        return image, weights

    MotionRefiner.forward = forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--weights", help="motion weights file or bundled name (default: the bundled file)")
    parser.add_argument("--resample", type=float, help="re-sample each scan to this fraction of its spacing first")
    parser.add_argument("--zoom", type=float, help="shrink each scan in-plane to this fraction first (its slice gaps "
                        "then show the pixel displacements of gaps this fraction as wide)")
    parser.add_argument("--zero-fill", type=float, help="enlarge each scan in-plane this many times by zero-filling "
                        "k-space first (a scanner's finer reconstruction grid)")
    parser.add_argument("--no-gate", action="store_true", help="scan self-check off (trust 1)")
    parser.add_argument("--no-resampling-check", dest="resampling_check", action="store_false",
                        help="cross-fade detector off, the self-check on (as the command line's option)")
    parser.add_argument("--ablate", choices=("residual", "linear", "symmetric"), action="append", default=[],
                        help="drop a part of the refiner's output (repeatable)")
    parser.add_argument("--linear-offset", type=float, default=0.0,
                        help="add this to the linear candidate's blend logit (the calibration motion.md chose)")
    args = parser.parse_args()
    if args.ablate or args.linear_offset:
        ablate(set(args.ablate), args.linear_offset)
    if args.no_gate:
        gates.scan_confidence = lambda slices, recreate=None, resampling_check=True, run=None: 1.0  # flow's and motion's
    rows = []
    for path in find_images(args.paths):
        volume = read(path)
        x, y, z = volume.spacing
        if args.resample:
            volume = volume.with_array(resample_along_slices(volume.array[0], args.resample)[None],
                                       (x, y, z * args.resample))
        if args.zoom:
            volume = volume.with_array(shrink_in_plane(volume.array[0], args.zoom)[None],
                                       (x / args.zoom, y / args.zoom, volume.spacing[2]))
        if args.zero_fill:
            volume = volume.with_array(zero_fill(volume.array[0], args.zero_fill)[None],
                                       (x / args.zero_fill, y / args.zero_fill, volume.spacing[2]))
        rows += evaluate.evaluate_volume(Path(path).name, volume, METHODS, device="cpu",
                                         weights={"motion": args.weights}, resampling_check=args.resampling_check)
    scores = {m: np.array([(r.ssim, min(r.psnr, 60.0)) for r in rows if r.method == m]) for m in METHODS}
    print(f"{len(scores['linear'])} slices")
    for method, values in scores.items():
        d_linear = values.mean(0) - scores["linear"].mean(0)
        d_flow = values.mean(0) - scores["flow"].mean(0)
        print(f"{method:7s} SSIM {values[:, 0].mean():.4f} PSNR {values[:, 1].mean():.2f} dB | vs linear "
              f"{d_linear[0]:+.5f} {d_linear[1]:+.2f} dB | vs flow {d_flow[0]:+.5f} {d_flow[1]:+.2f} dB")


if __name__ == "__main__":
    main()
