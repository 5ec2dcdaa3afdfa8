"""The ``latentsr`` command line: super-resolve, evaluate, train, models, demo."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import LatentSRError, __version__


def _train_ae(args: argparse.Namespace) -> int:
    from .training.autoencoder import AETrainingConfig, train
    config = AETrainingConfig(
        data=args.data, out=args.out, validation_data=args.val_data or (), epochs=args.epochs,
        steps_per_epoch=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
        learning_rate=args.lr, interp_weight=args.interp_weight, base_width=args.base_width,
        latent_channels=args.latent_channels, seed=args.seed, device=args.device, resume=args.resume,
        max_minutes=args.max_minutes, progress=not args.quiet)
    out = train(config)
    print(f"weights written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latentsr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

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
    ae.add_argument("--base-width", type=int, default=32)
    ae.add_argument("--latent-channels", type=int, default=16)
    ae.add_argument("--seed", type=int, default=0)
    ae.add_argument("--device", default="auto")
    ae.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    ae.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this wall time")
    ae.add_argument("--quiet", action="store_true")
    ae.set_defaults(run=_train_ae)
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
