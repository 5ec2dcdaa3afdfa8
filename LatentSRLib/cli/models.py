"""``latentsr models``, ``set-correction`` and ``adapt``: the weights a user has and makes fit a scan."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import LatentSRError


def run_models(args: argparse.Namespace) -> int:
    from ..models import registry
    entries = registry.manifest()
    if not entries:
        print(f"no bundled models in {registry.models_folder()}")
        return 0
    for name, entry in sorted(entries.items()):
        path = registry.models_folder() / entry["file"]
        state = "missing" if not path.exists() else (
            "ok" if registry.sha256(path) == entry["sha256"] else "CORRUPT (sha256 mismatch)")
        default = " (default)" if entry.get("default") else ""
        print(f"{name}{default}: {entry['kind']}, {path}, {state}\n    {entry['description']}")
    return 0


def run_set_correction(args: argparse.Namespace) -> int:
    from ..models import registry
    from ..synthesize.correction import correction_options
    correction_options({}, args.correction_sigma, args.correction_gain)  # checks the values
    updates = {key: value for key, value in (("correction_sigma_mm", args.correction_sigma),
                                             ("correction_gain", args.correction_gain)) if value is not None}
    if not updates:
        raise LatentSRError("nothing to set: give --correction-sigma and/or --correction-gain")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise LatentSRError(f"{out} exists (use --overwrite to replace it)")
    source, _ = registry.resolve(args.weights, args.kind)
    if out.resolve() == source.resolve():
        raise LatentSRError("--out must be another file than the weights it copies")
    registry.copy_with_meta(args.weights, out, args.kind, **updates)
    print(f"{out}: {args.weights} with " + ", ".join(f"{k} = {v:g}" for k, v in updates.items()))
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    from ..adapt import AdaptConfig, adapt
    from .options import check_device
    check_device(args.device, ["ae"])
    result = adapt(AdaptConfig(scan=args.scan, out=args.out, init=args.init, max_minutes=args.max_minutes,
                               seed=args.seed, device=args.device, progress=not args.quiet))
    print(result.table)
    verdict = ("beats linear interpolation in SSIM and PSNR on this scan's in-plane protocol" if result.beats_linear
               else "WARNING: no setting beat linear interpolation in both SSIM and PSNR on this scan; "
                    "prefer --method linear for it")
    print(f"{result.weights}: correction smoothing {result.chosen.sigma_mm:g} mm, gain {result.chosen.gain:g}; "
          f"{verdict}")
    return 0


def add_parsers(commands) -> None:
    md = commands.add_parser("models", help="list bundled models and check their sha256")
    md.set_defaults(run=run_models)

    ad = commands.add_parser("adapt", help="adapt the autoencoder to one static thick-slice scan (self-supervised) "
                                           "and calibrate its correction on that scan")
    ad.add_argument("scan", help="a 3D anisotropic image file")
    ad.add_argument("--out", required=True, help="weights file to write (use with super-resolve --weights)")
    ad.add_argument("--init", help="weights to start from (default: the bundled default autoencoder)")
    ad.add_argument("--max-minutes", type=float, default=40.0, help="training time (default 40)")
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--device", default="auto")
    ad.add_argument("--quiet", action="store_true")
    ad.set_defaults(run=run_adapt)

    so = commands.add_parser("set-correction",
                             help="copy learned weights with the correction smoothing/gain chosen on validation "
                                  "(benchmarks/correction_grid.py)")
    so.add_argument("weights", help="bundled model name or weights file")
    so.add_argument("--kind", choices=("ae", "contrastive"), default="ae", help="the weights' method (default ae)")
    so.add_argument("--correction-sigma", type=float, metavar="MM", help="in-plane Gaussian sigma of the correction")
    so.add_argument("--correction-gain", type=float, help="factor on the correction (1 keeps it, 0 gives linear)")
    so.add_argument("--out", required=True, help="weights file to write")
    so.add_argument("--overwrite", action="store_true")
    so.set_defaults(run=run_set_correction)
