"""Self-supervised validation on a static anisotropic scan: the drop-slice protocol along in-plane axes.

Every method of ``latentsr evaluate`` on the volumes of LatentSRLib.calibrate.reformat_cases: the
scan interpolated along z, an in-plane axis made the slice axis, every K-th plane kept and the others
re-created and scored (SSIM, PSNR, VIF on the centre 128x128 crop, one-sided Wilcoxon). It selects
models for a static 3D scan without its truth: the gaps are those of the real task (K pixels, e.g.
5 mm for the Colin27 brain at 5 mm slices) and the anatomy is the scan's own; the images are blurred
along the former slice axis, so the numbers rank methods rather than score them.

    python benchmarks/reformat_validation.py out/brain_thick/colin27_thick5mm.nii.gz \
        --methods linear,bspline,lanczos,ae --keep-every 5 --ae-weights runs/ae_brain_rf0.5.pt --out out/val_brain

``benchmarks/correction_grid.py --reformat`` uses the same volumes to choose a learned method's
correction smoothing and gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.calibrate import along_inplane_axis  # noqa: E402
from LatentSRLib.evaluate import check_methods, evaluate_volume, summarise  # noqa: E402
from LatentSRLib.volume import read  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scan", help="a static anisotropic scan (3D image file)")
    parser.add_argument("--methods", default="linear,ae")
    parser.add_argument("--keep-every", type=int, default=5)
    parser.add_argument("--along", nargs="+", default=["x", "y"], choices=("x", "y"))
    parser.add_argument("--ae-weights")
    parser.add_argument("--contrastive-weights")
    parser.add_argument("--ae-correction-sigma", type=float, help="override the AE weights' correction smoothing (mm)")
    parser.add_argument("--ae-correction-gain", type=float, help="override the AE weights' correction gain")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    weights = {k: v for k, v in (("ae", args.ae_weights), ("contrastive", args.contrastive_weights)) if v}
    methods = check_methods(args.methods.split(","), weights)
    scan = read(args.scan)
    volumes = {f"{Path(args.scan).name}[along {axis}]": along_inplane_axis(scan, axis) for axis in args.along}
    rows = []
    for name, volume in volumes.items():
        rows.extend(evaluate_volume(name, volume, methods, args.keep_every, args.device, weights,
                                    args.ae_correction_sigma, args.ae_correction_gain))
    summary = summarise(rows, methods, args.out, keep_every=args.keep_every)
    print(summary.markdown)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
