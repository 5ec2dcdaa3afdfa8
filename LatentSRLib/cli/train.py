"""``latentsr train ae | contrastive | contrastive-fast | motion``: train a model on anisotropic scans only."""

from __future__ import annotations

import argparse

from .. import LatentSRError
from .options import add_deprecated, add_exclude_flag


def run_ae(args: argparse.Namespace) -> int:
    from ..training.autoencoder import AETrainingConfig, train
    config = AETrainingConfig(
        data=args.data, out=args.out, validation_data=args.val_data or (), epochs=args.epochs,
        steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
        learning_rate=args.learning_rate, interp_weight=args.interp_weight, interp_target=args.interp_target,
        base_width=args.base_width, latent_channels=args.latent_channels, seed=args.seed, device=args.device,
        resume=args.resume, max_minutes=args.max_minutes, progress=not args.quiet, init_weights=args.init,
        temporal_fraction=args.temporal_fraction, reformat_fraction=args.reformat_fraction,
        correction_sigma_mm=args.correction_sigma, correction_gain=args.correction_gain, exclude=tuple(args.exclude))
    print(f"weights written to {train(config)}")
    return 0


def run_contrastive(args: argparse.Namespace) -> int:
    from ..models.contrastive import LossWeights
    from ..training.contrastive import ContrastiveTrainingConfig, train
    if not args.lr_scans:
        raise LatentSRError("give --lr-scans: the scans whose through-plane reformats are the LR domain")
    defaults = LossWeights()
    weights = LossWeights(**{name: getattr(args, name) if getattr(args, name) is not None else getattr(defaults, name)
                             for name in ("source", "cycle", "target", "adv_image", "adv_feature", "nce",
                                          "temperature") if hasattr(defaults, name)})
    config = ContrastiveTrainingConfig(
        hr=args.hr, lr=args.lr_scans, out=args.out, hr_count=args.hr_count, validation_patients=args.val_patients,
        epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
        learning_rate=args.learning_rate, weights=weights, use_contrastive=not args.no_contrastive,
        width=args.width, encoder_blocks=args.encoder_blocks, thickness_range=tuple(args.thickness),
        seed=args.seed, device=args.device, resume=args.resume, max_minutes=args.max_minutes,
        progress=not args.quiet, exclude=tuple(args.exclude))
    print(f"weights written to {train(config)}")
    return 0


def run_contrastive_fast(args: argparse.Namespace) -> int:
    from ..training.distill import DistillConfig, train
    config = DistillConfig(data=args.data, out=args.out, teacher=args.teacher, exclude=tuple(args.exclude),
                           validation=tuple(args.val_patients or ()), steps=args.steps, cache=args.cache,
                           max_minutes=args.max_minutes, seed=args.seed, resume=args.resume, progress=not args.quiet)
    print(f"weights written to {train(config)}")
    return 0


def run_motion(args: argparse.Namespace) -> int:
    from ..training.motion import MotionTrainingConfig, train
    config = MotionTrainingConfig(
        out=args.out, slices=args.slices or (), cines=args.cines or (), validation=args.val_data or (),
        exclude=tuple(args.exclude), resampled_fraction=args.resampled_fraction, time_fraction=args.time_fraction,
        max_examples=args.max_examples, batch=args.batch_size, learning_rate=args.learning_rate,
        max_minutes=args.max_minutes, max_steps=args.max_steps, seed=args.seed, device=args.device,
        threads=args.threads, cache=args.cache, init=args.init, gap_input=args.gap_input,
        farneback=args.farneback, zoom_fraction=args.zoom_fraction,
        flow_prior=args.flow_prior, residual_scale=args.residual_scale)
    print(f"weights written to {train(config, progress=not args.quiet)}")
    return 0


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model on anisotropic scans")
    models = train.add_subparsers(dest="model", required=True)

    ae = models.add_parser("ae", help="the latent-interpolation autoencoder")
    ae.add_argument("--data", nargs="+", required=True, help="training files or folders")
    ae.add_argument("--val-data", nargs="+", help="validation files or folders (default: hold out 8 patients)")
    ae.add_argument("--out", required=True, help="weights file to write (a resumable .ckpt is kept beside it)")
    add_exclude_flag(ae)
    ae.add_argument("--epochs", type=int, default=20)
    ae.add_argument("--steps", type=int, default=100, help="steps per epoch")
    ae.add_argument("--batch-size", type=int, default=16)
    ae.add_argument("--patch-size", type=int, default=128)
    ae.add_argument("--learning-rate", type=float, default=1e-3)
    add_deprecated(ae, "--lr", "--learning-rate", "learning_rate", type=float)
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
    ae.set_defaults(run=run_ae)

    co = models.add_parser("contrastive", help="unpaired contrastive SR (Li et al. 2023), through-plane")
    co.add_argument("--hr", nargs="+", required=True, help="scans whose in-plane slices are the HR domain")
    co.add_argument("--lr-scans", nargs="+",
                    help="scans whose through-plane reformats are the LR domain (may be the same)")
    add_deprecated(co, "--lr", "--lr-scans", "lr_scans", nargs="+")
    co.add_argument("--out", required=True, help="weights file to write (a resumable .ckpt is kept beside it)")
    add_exclude_flag(co)
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
    co.set_defaults(run=run_contrastive)

    fa = models.add_parser("contrastive-fast", help="distil a contrastive model into its fast student",
                           description="Knowledge distillation (CPU): the student learns the teacher's correction "
                                       "on the new rows of through-plane reformats of --data, from their acquired "
                                       "rows alone (Resources/Models/contrastive.md, contrastive-acdc-fast). No "
                                       "truth is used.")
    fa.add_argument("--data", nargs="+", required=True, help="scans (files or folders) whose reformats it learns on")
    fa.add_argument("--teacher", default="contrastive-acdc", help="the contrastive weights to distil (bundled name "
                                                                  "or file; default contrastive-acdc)")
    fa.add_argument("--out", required=True, help="weights file to write (a resumable .ckpt is kept beside it)")
    add_exclude_flag(fa)
    fa.add_argument("--val-patients", nargs="+", help="patients (file-name prefixes, e.g. patient001) held out to "
                                                      "choose the step with the lowest student-teacher difference")
    fa.add_argument("--steps", type=int, default=24000)
    fa.add_argument("--cache", help="keep the teacher's targets in this .npz and reuse it")
    fa.add_argument("--max-minutes", type=float)
    fa.add_argument("--seed", type=int, default=0)
    fa.add_argument("--resume", action="store_true")
    fa.add_argument("--quiet", action="store_true")
    fa.set_defaults(run=run_contrastive_fast)

    mo = models.add_parser("motion", help="the motion-aware refiner (blends flow-warped neighbours)",
                           description="Train on triplets of acquired slices (--slices: 3D scans or cines, "
                                       "slice n from n-1 and n+1) and of cine frames (--cines: 4D files, frame f "
                                       "from f-i and f+j); never on high-resolution truth.")
    mo.add_argument("--slices", nargs="+", help="scans (files or folders) for slice triplets")
    mo.add_argument("--cines", nargs="+", help="4D cines (files or folders) for time triplets")
    mo.add_argument("--val-data", nargs="+", help="scans whose slice triplets choose the best checkpoint")
    mo.add_argument("--out", required=True, help="weights file to write")
    add_exclude_flag(mo)
    mo.add_argument("--init", help="start from these weights (bundled name or file): adapt to your scans")
    mo.add_argument("--resampled-fraction", type=float, default=0.0,
                    help="share of triplets from stacks re-sampled linearly along the slice axis (default 0: the "
                         "cross-fade detector sends such stacks to linear interpolation; motion.md)")
    mo.add_argument("--gap-input", action="store_true",
                    help="give the network the distance between the two slices (mm) as an input (motion.md)")
    mo.add_argument("--farneback", choices=("fast", "fine"), default="fine",
                    help="Farneback settings of the flow candidates: fine (the default: the flow method's and the "
                         "bundled refiner's, full resolution, larger window) or fast (half resolution; opticalflow.py)")
    mo.add_argument("--flow-prior", action="store_true",
                    help="start the per-pixel blend from the flow method's own weights, so that the untrained "
                         "network is flow and training learns where to depart from it (motion.md)")
    mo.add_argument("--residual-scale", type=float, default=0.1,
                    help="bound of the network's residual in normalised intensity (0: a pure blend; default 0.1)")
    mo.add_argument("--time-fraction", type=float, default=0.5, help="share of time triplets (default 0.5)")
    mo.add_argument("--zoom-fraction", type=float, default=0.0,
                    help="share of slice triplets shrunk in-plane to 0.4-0.7, imitating gaps narrower than your "
                         "scans' own (default 0; motion.md)")
    mo.add_argument("--max-examples", type=int, default=6000)
    mo.add_argument("--batch-size", type=int, default=16)
    mo.add_argument("--learning-rate", type=float, default=1e-3)
    mo.add_argument("--max-minutes", type=float, default=30.0)
    mo.add_argument("--max-steps", type=int, default=100_000)
    mo.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    mo.add_argument("--cache", help="keep the computed examples in this .npz and reuse it")
    mo.add_argument("--seed", type=int, default=0)
    mo.add_argument("--device", default="auto")
    mo.add_argument("--quiet", action="store_true")
    mo.set_defaults(run=run_motion)
