"""Choose a learned method's correction smoothing and gain on validation data (never the test set).

Both learned methods return linear interpolation plus a correction; the weights can record a
Gaussian smoothing (mm, in-plane) and a gain for it (LatentSRLib.synthesize.correction). This script
runs the drop-slice protocol once per volume with the uncalibrated weights, then scores
``linear + gain * smooth_sigma(method - linear)`` for every (sigma, gain) pair against linear
interpolation (the same metrics and one-sided Wilcoxon tests as ``latentsr evaluate``), and writes
grid.md. Record the chosen pair with ``latentsr set-correction``.

Validation data:
- files or folders: the protocol on them as ``latentsr evaluate`` runs it (e.g. a training run's
  held-out patients, as benchmarks/validation_protocol.sh uses);
- ``--reformat``: each path is a static anisotropic scan, scored along its in-plane axes without
  truth (benchmarks/reformat_validation.py).

    python benchmarks/correction_grid.py ../shared/data/acdc_fullfov/patient0{10,14,37,49,70} \
        --method contrastive --sigmas 0,2 --gains 0.5,1 --out out/grid_contrastive
    python benchmarks/correction_grid.py out/brain_thick/colin27_thick5mm.nii.gz --reformat --keep-every 5 \
        --method ae --weights runs/ae_brain_rf0.5.pt --sigmas 0,2,3 --gains 0.5,0.75,1 --out out/grid_rf0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from LatentSRLib import LatentSRError, pipeline  # noqa: E402
from LatentSRLib.evaluate import _frames, compare, protocol_case  # noqa: E402
from LatentSRLib.models import registry  # noqa: E402
from LatentSRLib.synthesize.correction import adjust_correction  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402
from reformat_validation import along_inplane_axis  # noqa: E402


def cases(paths: list[str], keep_every: int, reformat: bool):
    for path in find_images(paths):
        if reformat:
            scan = read(path)
            for axis in ("x", "y"):
                yield protocol_case(f"{Path(path).name}[along {axis}]", along_inplane_axis(scan, axis), keep_every)
        else:
            for name, volume in _frames(Path(path)):
                if volume.array.shape[1] > keep_every:
                    yield protocol_case(name, volume, keep_every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--method", choices=("ae", "contrastive"), required=True)
    parser.add_argument("--weights", help="uncalibrated weights (default: the bundled default)")
    parser.add_argument("--keep-every", type=int, default=2)
    parser.add_argument("--reformat", action="store_true", help="paths are static scans, scored along in-plane axes")
    parser.add_argument("--sigmas", default="0,1,2,3", help="comma-separated smoothings, mm")
    parser.add_argument("--gains", default="0.25,0.5,0.75,1", help="comma-separated gains")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sigmas = [float(v) for v in args.sigmas.split(",")]
    gains = [float(v) for v in args.gains.split(",")]
    meta = registry.load(args.weights, args.method).get("meta", {})
    calibrated = meta.get("correction_sigma_mm", 0) != 0 or meta.get("correction_gain", 1) != 1
    if calibrated and args.method == "contrastive":  # (the AE's run options switch it off)
        raise LatentSRError(f"{args.weights} already records a correction calibration: give the uncalibrated weights")

    linear_rows, outputs = [], []
    for case in tqdm(list(cases(args.paths, args.keep_every, args.reformat)), desc="protocol", unit="volume"):
        if case.axis != 0:
            raise LatentSRError(f"{case.name}: the slice axis must be the last image axis (z)")
        run = pipeline.Run(device=args.device, weights=args.weights, ae_correction_sigma_mm=0.0, ae_correction_gain=1.0)
        method = pipeline.super_resolve(case.kept_volume, args.method, factor=args.keep_every, run=run).array
        linear = pipeline.super_resolve(case.kept_volume, "linear", factor=args.keep_every).array
        linear_rows += case.score("linear", linear)
        sx, sy, _ = case.kept_volume.spacing
        outputs.append((case, linear, method - linear, (sy, sx)))

    lines = [f"{args.method} ({args.weights or 'bundled default'}) against linear on {len(outputs)} volumes, "
             f"keep every {args.keep_every}{', along in-plane axes' if args.reformat else ''}; one-sided Wilcoxon.",
             "", "| sigma (mm) | gain | SSIM mean | median diff | p | PSNR mean | median diff | p |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| linear | | {np.mean([r.ssim for r in linear_rows]):.4f} | | | "
             f"{np.mean([r.psnr for r in linear_rows if np.isfinite(r.psnr)]):.3f} | | |"]
    for sigma in sigmas:
        for gain in gains:
            rows = [row for case, linear, correction, spacing_yx in outputs
                    for row in case.score("x", linear + adjust_correction(correction, spacing_yx, sigma, gain))]
            both = linear_rows + rows
            s, p = (compare(both, "x", "linear", metric) for metric in ("ssim", "psnr"))
            lines.append(f"| {sigma:g} | {gain:g} | {np.mean([r.ssim for r in rows]):.4f} | {s.median_difference:+.4f} | "
                         f"{s.p:.2g} | {np.mean([r.psnr for r in rows if np.isfinite(r.psnr)]):.3f} | "
                         f"{p.median_difference:+.3f} | {p.p:.2g} |")
            print(lines[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
