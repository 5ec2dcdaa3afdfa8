"""``latentsr evaluate`` (the papers' drop-slice protocol) and ``latentsr check`` (the same, quickly,
on one scan of the user's)."""

from __future__ import annotations

import argparse

from ..volume import read
from .options import (add_cluster_flags, add_correction_flags, check_cluster, check_correction, check_device,
                      method_list)

#: Learned methods whose weights ``evaluate`` takes as ``--<kind>-weights``.
WEIGHTS_FLAGS = ("ae", "contrastive", "motion")


def run_evaluate(args: argparse.Namespace) -> int:
    from ..folders import check_folder
    methods = method_list(args.methods)
    weights = {kind: getattr(args, f"{kind}_weights") for kind in WEIGHTS_FLAGS if getattr(args, f"{kind}_weights")}
    check_cluster(args, used=True)  # before any work and any file: evaluate writes only once all is scored
    check_device(args.device, methods, local=not args.scheduler)
    check_correction(args)
    check_folder(args.out, "--out")
    common = dict(keep_every=args.keep_every, device=args.device, weights=weights or None,
                  correction_sigma_mm=args.correction_sigma, correction_gain=args.correction_gain,
                  progress=not args.quiet, resampling_check=args.resampling_check)
    if args.workers >= 2 or args.scheduler:
        from ..cohort import run_evaluate as evaluate_on_cluster  # one task per volume file on Dask
        summary = evaluate_on_cluster(args.paths, methods, args.out, workers=args.workers,
                                      scheduler=args.scheduler, **common)
    else:
        from ..evaluate import evaluate
        summary = evaluate(args.paths, methods, args.out, **common)
    print(summary.markdown)
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..check import check_scan
    methods = method_list(args.methods) if args.methods else None
    check_device(args.device, methods or ["ae"])  # default: every method, learned ones too
    result = check_scan(read(args.scan), methods, args.max_seconds, frame=args.frame, device=args.device)
    print(result.table())
    return 0


def add_parsers(commands) -> None:
    ev = commands.add_parser("evaluate", help="the papers' drop-slice protocol",
                             description="Keep every K-th slice, re-create the others with each method, "
                                         "score them against the originals (SSIM, PSNR, VIF on the 128x128 centre crop).")
    ev.add_argument("paths", nargs="+", help="files or folders (searched recursively; _gt masks skipped)")
    ev.add_argument("--methods", default="linear,bspline,lanczos,flow,ae", help="comma-separated methods")
    ev.add_argument("--keep-every", type=int, default=2, help="keep every K-th slice (default 2)")
    ev.add_argument("--out", required=True, help="folder for metrics.csv, summary.md, the figures")
    ev.add_argument("--device", default="auto")
    for kind in WEIGHTS_FLAGS:
        ev.add_argument(f"--{kind}-weights", help=f"weights for the {kind} method (default: bundled)")
    add_correction_flags(ev)
    ev.add_argument("--quiet", action="store_true")
    add_cluster_flags(ev)
    ev.set_defaults(run=run_evaluate)

    ck = commands.add_parser("check", help="which method re-creates this scan's own slices best (within seconds)",
                             description="Hide every other slice of one frame (a few slices around the middle, the "
                                         "centre 128x128), re-create them with each method, score against the hidden "
                                         "slices (SSIM, PSNR) and name the winner.")
    ck.add_argument("scan", help="an image file (3D, or a 4D cine: one frame is checked)")
    ck.add_argument("--methods", help="comma-separated methods (default: every available one but lanczos, ae-latent)")
    ck.add_argument("--max-seconds", type=float, default=30.0, help="stop methods still running then (default 30)")
    ck.add_argument("--frame", type=int, default=0, help="frame of a cine to check (default 0)")
    ck.add_argument("--device", default="auto")
    ck.set_defaults(run=run_check)
