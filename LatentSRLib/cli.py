"""The ``latentsr`` command line: super-resolve, evaluate, train, models, demo."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from . import LatentSRError, __version__
from .volume import check_output, find_images, read, volume_name, write


def progress_bar(description: str, enabled: bool):
    """A tqdm bar driven by the pipeline's fraction-done callback (None when disabled)."""
    if not enabled:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=1000, desc=description, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

    def update(fraction: float) -> None:
        bar.update(int(round(fraction * 1000)) - bar.n)
    return bar, update


def _describe(volume) -> str:
    z, y, x = volume.array.shape[1:]
    sx, sy, sz = volume.spacing
    frames = f" x {volume.n_frames} frames" if volume.is_4d or volume.n_frames > 1 else ""
    return f"{x}x{y}x{z}{frames} @ {sx:.3g}x{sy:.3g}x{sz:.3g} mm"


def _output_path(source: Path, out: Path, many: bool, method: str, factor_label: str) -> Path:
    if not many:
        return out
    return out / f"{volume_name(source)}_{method}{factor_label}.nii.gz"


def _super_resolve(args: argparse.Namespace) -> int:
    from .pipeline import METHODS, Run, choose_factor, super_resolve
    if args.method not in METHODS:
        raise LatentSRError(f"unknown method '{args.method}' (choose from {', '.join(METHODS)})")
    inputs = find_images(args.input)
    if not inputs:
        raise LatentSRError(f"no images found in {', '.join(args.input)}")
    out = Path(args.output)
    many = len(inputs) > 1 or Path(args.input[0]).is_dir()
    if many and not out.is_dir():
        raise LatentSRError(f"with several inputs, -o must be an existing folder: {out}")
    axis = {"auto": None, "z": 0, "y": 1, "x": 2}[args.axis]
    for source in inputs:
        volume = read(source)
        started = time.perf_counter()
        factor = choose_factor(volume, args.factor, args.spacing, axis)
        target = _output_path(source, out, many, args.method, f"_x{factor}")
        check_output(target, args.overwrite, protect=inputs)  # fail before the work, not after
        bar, update = progress_bar(f"{volume_name(source)} {args.method} x{factor}", not args.quiet)
        try:
            result = super_resolve(volume, args.method, factor=factor, axis=axis,
                                   run=Run(device=args.device, weights=args.weights, progress=update,
                                           keep_original=not args.replace_originals, mode=args.ae_mode,
                                           ae_correction_sigma_mm=args.ae_correction_sigma,
                                           ae_correction_gain=args.ae_correction_gain,
                                           batch_slices=args.batch_slices))
        finally:
            if bar is not None:
                bar.close()
        write(result, target, overwrite=True, protect=inputs)
        print(f"{source} ({_describe(volume)}) -> {target} ({_describe(result)}), "
              f"{args.method} x{factor}, {time.perf_counter() - started:.1f} s")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    weights = {k: v for k, v in (("ae", args.ae_weights), ("contrastive", args.contrastive_weights)) if v}
    summary = evaluate(args.paths, methods, args.out, keep_every=args.keep_every, device=args.device,
                       weights=weights or None, progress=not args.quiet,
                       ae_correction_sigma_mm=args.ae_correction_sigma,
                       ae_correction_gain=args.ae_correction_gain)
    print(summary.markdown)
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import registry
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


def _set_correction(args: argparse.Namespace) -> int:
    from .models import registry
    from .synthesize.correction import correction_options
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


def _adapt(args: argparse.Namespace) -> int:
    from .training.adapt import AdaptConfig, adapt
    result = adapt(AdaptConfig(scan=args.scan, out=args.out, init=args.init, max_minutes=args.max_minutes,
                               seed=args.seed, device=args.device, progress=not args.quiet))
    print(result.table)
    verdict = ("beats linear interpolation in SSIM and PSNR on this scan's in-plane protocol" if result.beats_linear
               else "WARNING: no setting beat linear interpolation in both SSIM and PSNR on this scan; "
                    "prefer --method linear for it")
    print(f"{result.weights}: correction smoothing {result.chosen.sigma_mm:g} mm, gain {result.chosen.gain:g}; "
          f"{verdict}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    report = run_demo(args.input, args.out, methods=args.methods.split(",") if args.methods else None,
                      device=args.device, progress=not args.quiet)
    print(report)
    return 0


def _train_ae(args: argparse.Namespace) -> int:
    from .training.autoencoder import AETrainingConfig, train
    config = AETrainingConfig(
        data=args.data, out=args.out, validation_data=args.val_data or (), epochs=args.epochs,
        steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
        learning_rate=args.lr, interp_weight=args.interp_weight, interp_target=args.interp_target,
        base_width=args.base_width,
        latent_channels=args.latent_channels, seed=args.seed, device=args.device, resume=args.resume,
        max_minutes=args.max_minutes, progress=not args.quiet, init_weights=args.init,
        temporal_fraction=args.temporal_fraction, reformat_fraction=args.reformat_fraction,
        correction_sigma_mm=args.correction_sigma, correction_gain=args.correction_gain)
    out = train(config)
    print(f"weights written to {out}")
    return 0


def _train_contrastive(args: argparse.Namespace) -> int:
    from .models.contrastive import LossWeights
    from .training.contrastive import ContrastiveTrainingConfig, train
    defaults = LossWeights()
    weights = LossWeights(**{name: getattr(args, name) if getattr(args, name) is not None else getattr(defaults, name)
                             for name in ("source", "cycle", "target", "adv_image", "adv_feature", "nce",
                                          "temperature") if hasattr(defaults, name)})
    config = ContrastiveTrainingConfig(
        hr=args.hr, lr=args.lr, out=args.out, hr_count=args.hr_count, validation_patients=args.val_patients,
        epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
        learning_rate=args.learning_rate, weights=weights, use_contrastive=not args.no_contrastive,
        width=args.width, encoder_blocks=args.encoder_blocks, thickness_range=tuple(args.thickness),
        seed=args.seed, device=args.device, resume=args.resume, max_minutes=args.max_minutes,
        progress=not args.quiet)
    out = train(config)
    print(f"weights written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latentsr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    sr = commands.add_parser("super-resolve", help="super-resolve volumes through-plane",
                             description="Super-resolve 3D volumes or 4D cines along their slice axis.")
    sr.add_argument("input", nargs="+", help="image files (NIfTI, NRRD, MHA), DICOM folders, or folders of images")
    sr.add_argument("-o", "--output", required=True, help="output file (its suffix picks the format), or a folder for several inputs")
    sr.add_argument("--method", default="ae",
                    help="linear, bspline, lanczos, ae, ae-latent (the paper's pure latent decode) or contrastive (default: ae)")
    size = sr.add_mutually_exclusive_group()
    size.add_argument("--factor", type=int, help="integer upsampling factor along the slice axis")
    size.add_argument("--spacing", type=float, help="target slice spacing in mm (factor = round(spacing ratio))")
    sr.add_argument("--axis", choices=("auto", "z", "y", "x"), default="auto",
                    help="slice axis (default: the axis with the largest spacing)")
    sr.add_argument("--weights", help="bundled model name or weights file (learned methods)")
    sr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sr.add_argument("--ae-mode", choices=("latent", "corrected"),
                    help="autoencoder inference: the paper's decoded mixed code (latent) or linear "
                         "interpolation plus the latent correction (corrected); default: as the weights record")
    sr.add_argument("--ae-correction-sigma", type=float, metavar="MM",
                    help="smooth the autoencoder's correction in-plane (Gaussian sigma, mm; default: the weights')")
    sr.add_argument("--ae-correction-gain", type=float,
                    help="scale the autoencoder's correction (1 keeps it, 0 gives linear; default: the weights')")
    sr.add_argument("--batch-slices", type=int, default=16, help="slices per network batch (memory bound)")
    sr.add_argument("--replace-originals", action="store_true",
                    help="learned methods: replace acquired slices by their reconstruction")
    sr.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sr.add_argument("--quiet", action="store_true", help="no progress bar")
    sr.set_defaults(run=_super_resolve)

    ev = commands.add_parser("evaluate", help="the papers' drop-slice protocol",
                             description="Keep every K-th slice, re-create the others with each method, "
                                         "score them against the originals (SSIM, PSNR, VIF on the 128x128 centre crop).")
    ev.add_argument("paths", nargs="+", help="files or folders (searched recursively; _gt masks skipped)")
    ev.add_argument("--methods", default="linear,bspline,lanczos,ae", help="comma-separated methods")
    ev.add_argument("--keep-every", type=int, default=2, help="keep every K-th slice (default 2)")
    ev.add_argument("--out", required=True, help="folder for metrics.csv, summary.md, boxplots.png")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--ae-weights", help="weights for the ae method (default: bundled)")
    ev.add_argument("--ae-correction-sigma", type=float, metavar="MM",
                    help="smooth the autoencoder's correction in-plane (Gaussian sigma, mm; default: the weights')")
    ev.add_argument("--ae-correction-gain", type=float,
                    help="scale the autoencoder's correction (1 keeps it, 0 gives linear; default: the weights')")
    ev.add_argument("--contrastive-weights", help="weights for the contrastive method (default: bundled)")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(run=_evaluate)

    md = commands.add_parser("models", help="list bundled models and check their sha256")
    md.set_defaults(run=_models)

    ad = commands.add_parser("adapt", help="adapt the autoencoder to one static thick-slice scan (self-supervised) "
                                           "and calibrate its correction on that scan")
    ad.add_argument("scan", help="a 3D anisotropic image file")
    ad.add_argument("--out", required=True, help="weights file to write (use with super-resolve --weights)")
    ad.add_argument("--init", help="weights to start from (default: the bundled default autoencoder)")
    ad.add_argument("--max-minutes", type=float, default=40.0, help="training time (default 40)")
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--device", default="auto")
    ad.add_argument("--quiet", action="store_true")
    ad.set_defaults(run=_adapt)

    so = commands.add_parser("set-correction",
                             help="copy learned weights with the correction smoothing/gain chosen on validation "
                                  "(benchmarks/correction_grid.py)")
    so.add_argument("weights", help="bundled model name or weights file")
    so.add_argument("--kind", choices=("ae", "contrastive"), default="ae", help="the weights' method (default ae)")
    so.add_argument("--correction-sigma", type=float, metavar="MM", help="in-plane Gaussian sigma of the correction")
    so.add_argument("--correction-gain", type=float, help="factor on the correction (1 keeps it, 0 gives linear)")
    so.add_argument("--out", required=True, help="weights file to write")
    so.add_argument("--overwrite", action="store_true")
    so.set_defaults(run=_set_correction)

    demo = commands.add_parser("demo", help="super-resolve a built-in synthetic cine (or INPUT) with every method")
    demo.add_argument("input", nargs="?", help="an image file (default: the built-in beating-heart phantom)")
    demo.add_argument("--out", default="latentsr-demo", help="output folder (default: latentsr-demo)")
    demo.add_argument("--methods", help="comma-separated methods (default: all available)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="train a model on anisotropic scans")
    models = train.add_subparsers(dest="model", required=True)
    ae = models.add_parser("ae", help="the latent-interpolation autoencoder")
    ae.add_argument("--data", nargs="+", required=True, help="training files or folders (5 mm ACDC test patients are always excluded)")
    ae.add_argument("--val-data", nargs="+", help="validation files or folders (default: hold out 8 patients)")
    ae.add_argument("--out", required=True, help="weights file to write (a resumable .ckpt is kept beside it)")
    ae.add_argument("--epochs", type=int, default=20)
    ae.add_argument("--steps", type=int, default=100, help="steps per epoch")
    ae.add_argument("--batch-size", type=int, default=16)
    ae.add_argument("--patch-size", type=int, default=128)
    ae.add_argument("--lr", type=float, default=1e-3)
    ae.add_argument("--interp-weight", type=float, default=0.0,
                    help="weight of the follow-up paper's interpolation loss (0: the 2020 paper's loss only)")
    ae.add_argument("--interp-target", choices=("latent", "corrected"), default="latent",
                    help="what the interpolation loss scores: the decoded mixed code (paper) or the "
                         "detail-preserving prediction used at inference")
    ae.add_argument("--base-width", type=int, default=32)
    ae.add_argument("--latent-channels", type=int, default=16)
    ae.add_argument("--seed", type=int, default=0)
    ae.add_argument("--device", default="auto")
    ae.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    ae.add_argument("--init", help="start from these weights (bundled name or file) instead of random ones")
    ae.add_argument("--temporal-fraction", type=float, default=0.0,
                    help="share of interpolation triplets taken over time from 4D cines (small changes)")
    ae.add_argument("--reformat-fraction", type=float, default=0.0,
                    help="share of interpolation triplets taken from through-plane reformats along the in-plane "
                         "axes (small changes in static 3D scans)")
    ae.add_argument("--correction-sigma", type=float, default=0.0, metavar="MM",
                    help="correction smoothing recorded in the weights for inference (choose it on validation)")
    ae.add_argument("--correction-gain", type=float, default=1.0,
                    help="correction gain recorded in the weights for inference (choose it on validation)")
    ae.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this wall time")
    ae.add_argument("--quiet", action="store_true")
    ae.set_defaults(run=_train_ae)

    co = models.add_parser("contrastive", help="unpaired contrastive SR (Li et al. 2023), through-plane")
    co.add_argument("--hr", nargs="+", required=True, help="scans whose in-plane slices are the HR domain")
    co.add_argument("--lr", nargs="+", required=True, help="scans whose through-plane reformats are the LR domain (may be the same)")
    co.add_argument("--out", required=True, help="weights file to write (a resumable .ckpt is kept beside it)")
    co.add_argument("--hr-count", type=int, help="use at most N HR volumes (the paper's few-HR experiment)")
    co.add_argument("--val-patients", type=int, default=6)
    co.add_argument("--epochs", type=int, default=10)
    co.add_argument("--steps", type=int, default=40, help="steps per epoch")
    co.add_argument("--batch-size", type=int, default=8)
    co.add_argument("--patch-size", type=int, default=64)
    co.add_argument("--learning-rate", type=float, default=5e-4)
    co.add_argument("--no-contrastive", action="store_true", help="drop the InfoNCE loss (the paper's ablation)")
    co.add_argument("--width", type=int, default=32)
    co.add_argument("--encoder-blocks", type=int, default=3, help="residual blocks of the encoder f")
    co.add_argument("--thickness", type=float, nargs=2, default=(0.5, 1.0), metavar=("LOW", "HIGH"),
                    help="synthetic slice thickness as a fraction of the spacing, drawn per patch")
    for name in ("source", "cycle", "target", "adv-image", "adv-feature", "nce"):
        co.add_argument(f"--w-{name}", dest=name.replace("-", "_"), type=float, help=f"weight of the {name} loss")
    co.add_argument("--temperature", type=float, help="InfoNCE temperature")
    co.add_argument("--seed", type=int, default=0)
    co.add_argument("--device", default="auto")
    co.add_argument("--resume", action="store_true")
    co.add_argument("--max-minutes", type=float)
    co.add_argument("--quiet", action="store_true")
    co.set_defaults(run=_train_contrastive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LatentSRError as error:
        print(f"latentsr: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
