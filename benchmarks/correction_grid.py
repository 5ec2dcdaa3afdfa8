"""Choose a learned method's correction smoothing and gain on validation data (never the test set).

Runs LatentSRLib.calibrate.correction_grid and prints/writes grid.md with the setting that
LatentSRLib.calibrate.choose picks in bold; record it with ``latentsr set-correction``
(``latentsr adapt`` does all of this for a static scan).

Validation data:
- files or folders: the drop-slice protocol on them, as ``latentsr evaluate`` runs it (e.g. a
  training run's held-out patients, as benchmarks/validation_protocol.sh uses);
- ``--reformat``: each path is a static anisotropic scan, scored along its in-plane axes without truth
  (LatentSRLib.calibrate.reformat_cases; K defaults to the slice spacing in pixels).

    python benchmarks/correction_grid.py ../shared/data/acdc_fullfov/patient0{10,14,37,49,70} \\
        --method contrastive --sigmas 0,1,2,3 --gains 0.25,0.5,0.75,1 --out out/cgrid_co_acdc
    python benchmarks/correction_grid.py out/brain_thick/colin27_thick5mm.nii.gz --reformat \\
        --method ae --weights runs/ae_brain_rf0.5.pt --sigmas 0,2,3 --gains 0.5,0.75,1 --out out/grid_rf0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LatentSRLib.calibrate import choose, correction_grid, grid_markdown, reformat_cases  # noqa: E402
from LatentSRLib.evaluate import _frames, protocol_case  # noqa: E402
from LatentSRLib.volume import find_images, read  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--method", choices=("ae", "contrastive"), required=True)
    parser.add_argument("--weights", help="uncalibrated weights (default: the bundled default)")
    parser.add_argument("--keep-every", type=int, help="K (default: 2, or the slice spacing in pixels with --reformat)")
    parser.add_argument("--reformat", action="store_true", help="paths are static scans, scored along in-plane axes")
    parser.add_argument("--sigmas", default="0,1,2,3", help="comma-separated smoothings, mm")
    parser.add_argument("--gains", default="0.25,0.5,0.75,1", help="comma-separated gains")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    cases = []
    for path in find_images(args.paths):
        if args.reformat:
            cases += reformat_cases(read(path), args.keep_every, Path(path).name)
        else:
            cases += [protocol_case(name, volume, args.keep_every or 2) for name, volume in _frames(Path(path))
                      if volume.array.shape[1] > (args.keep_every or 2)]
    linear, rows = correction_grid(cases, args.method, args.weights, [float(v) for v in args.sigmas.split(",")],
                                   [float(v) for v in args.gains.split(",")], args.device)
    chosen, qualified = choose(rows)
    text = (f"{args.method} ({args.weights or 'bundled default'}) against linear on {len(cases)} volumes"
            f"{' along in-plane axes' if args.reformat else ''}; one-sided Wilcoxon. Chosen (bold): "
            f"{'largest median SSIM gain with SSIM and PSNR gains significant' if qualified else 'NO setting beats linear in both; largest SSIM gain'}."
            "\n\n" + grid_markdown(linear, rows, chosen))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
