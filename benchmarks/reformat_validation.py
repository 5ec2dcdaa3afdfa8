"""Self-supervised validation on a static anisotropic scan: the drop-slice protocol along in-plane axes.

A thick-slice scan has no truth between its slices, but its in-plane axes are finely sampled. This
script interpolates the scan along its slice axis to the in-plane pixel size (linear), turns an
in-plane axis (x or y) into the slice axis, keeps every K-th of those planes (K x the pixel size
apart) and re-creates the others at factor K, scoring them against the planes that were dropped
(SSIM, PSNR, VIF on the centre 128x128 crop, one-sided Wilcoxon; LatentSRLib.evaluate).

It selects models for a static 3D scan without its truth: the gaps are those of the real task
(K pixels, e.g. 5 mm for the Colin27 brain at 5 mm slices) and the anatomy is the scan's own. The
images are blurred along the former slice axis, so the numbers rank methods; they are not the
truth-based scores of the real task.

    python benchmarks/reformat_validation.py out/brain_thick/colin27_thick5mm.nii.gz \
        --methods linear,bspline,lanczos,ae --keep-every 5 --ae-weights runs/ae_brain_rf0.5.pt --out out/val_brain

With ``--grid SIGMAS GAINS`` it instead scores the AE for every correction smoothing (mm) and gain
against linear interpolation and writes grid.md: how the AE's inference options are chosen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.evaluate import compare, check_methods, evaluate_volume, summarise  # noqa: E402
from LatentSRLib.interpolate import upsample  # noqa: E402
from LatentSRLib.volume import Volume, read  # noqa: E402


def along_inplane_axis(volume: Volume, axis: str) -> Volume:
    """The scan, linearly interpolated along z to about its in-plane pixel size, with ``axis`` (x or y)
    as the new slice axis (array axis 1). Geometry is simplified (identity direction, zero origin):
    only the spacings matter to the protocol."""
    sx, sy, sz = volume.spacing
    factor = max(1, int(round(sz / min(sx, sy))))
    dense = upsample(volume.array[0], factor, "linear", axis=0)  # (Z', Y, X)
    sz_dense = sz / factor
    if axis == "x":  # slices are planes of constant x: (X, Z', Y); in-plane axes y (columns), z' (rows)
        array, spacing = dense.transpose(2, 0, 1), (sy, sz_dense, sx)
    elif axis == "y":  # (Y, Z', X)
        array, spacing = dense.transpose(1, 0, 2), (sx, sz_dense, sy)
    else:
        raise ValueError(f"axis must be x or y, not {axis!r}")
    return Volume(np.ascontiguousarray(array)[None], spacing)


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
    parser.add_argument("--grid", nargs=2, metavar=("SIGMAS", "GAINS"),
                        help="comma-separated correction smoothings (mm) and gains to score the AE with")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    weights = {k: v for k, v in (("ae", args.ae_weights), ("contrastive", args.contrastive_weights)) if v}
    methods = check_methods(args.methods.split(","), weights)
    scan = read(args.scan)
    volumes = {f"{Path(args.scan).name}[along {axis}]": along_inplane_axis(scan, axis) for axis in args.along}
    if args.grid:
        return grid(volumes, [float(v) for v in args.grid[0].split(",")], [float(v) for v in args.grid[1].split(",")],
                    args, weights)
    rows = []
    for name, volume in volumes.items():
        rows.extend(evaluate_volume(name, volume, methods, args.keep_every, args.device, weights,
                                    args.ae_correction_sigma, args.ae_correction_gain))
    summary = summarise(rows, methods, args.out, keep_every=args.keep_every)
    print(summary.markdown)
    return 0


def grid(volumes: dict[str, Volume], sigmas: list[float], gains: list[float], args, weights: dict) -> int:
    """Score linear once and the AE per (smoothing, gain); write and print grid.md."""
    def rows_for(methods, sigma=None, gain=None):
        return [row for name, volume in volumes.items()
                for row in evaluate_volume(name, volume, methods, args.keep_every, args.device, weights, sigma, gain)]

    linear = rows_for(["linear"])
    lines = ["| sigma (mm) | gain | SSIM mean | median diff | p | PSNR mean | median diff | p |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| linear | | {np.mean([r.ssim for r in linear]):.4f} | | | "
             f"{np.mean([r.psnr for r in linear if np.isfinite(r.psnr)]):.3f} | | |"]
    for sigma in sigmas:
        for gain in gains:
            rows = linear + rows_for(["ae"], sigma, gain)
            s, p = (compare(rows, "ae", "linear", metric) for metric in ("ssim", "psnr"))
            ae = [r for r in rows if r.method == "ae"]
            lines.append(f"| {sigma:g} | {gain:g} | {np.mean([r.ssim for r in ae]):.4f} | {s.median_difference:+.4f} | "
                         f"{s.p:.2g} | {np.mean([r.psnr for r in ae if np.isfinite(r.psnr)]):.3f} | "
                         f"{p.median_difference:+.3f} | {p.p:.2g} |")
            print(lines[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
