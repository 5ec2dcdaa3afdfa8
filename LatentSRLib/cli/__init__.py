"""The ``latentsr`` command line: super-resolve, evaluate, check, train, adapt, models, demo.

One module per subcommand group; each adds its parser and the function it runs. Nothing here
imports torch: the commands import what they need when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .. import LatentSRError, __version__
from ..manifest import one_line
from . import evaluate, models, super_resolve, train


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from .options import check_device
    names = [m.strip().lower() for m in args.methods.split(",")] if args.methods else ["ae"]  # default: learned too
    check_device(args.device, names)
    report = run_demo(args.input, args.out, methods=args.methods.split(",") if args.methods else None,
                      device=args.device, progress=not args.quiet)
    print(report)
    return 0


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="super-resolve a built-in synthetic cine (or INPUT) with every method")
    demo.add_argument("input", nargs="?", help="an image file (default: the built-in beating-heart phantom)")
    demo.add_argument("--out", help="output folder (default: latentsr-demo in the system's temporary folder)")
    demo.add_argument("--methods", help="comma-separated methods (default: all available)")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(run=_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentsr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"latentsr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    super_resolve.add_parser(commands)
    evaluate.add_parsers(commands)
    models.add_parsers(commands)
    _add_demo(commands)
    train.add_parser(commands)
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
    except OSError as error:  # the file system refused (full, read-only, a name too long): one line
        where = f": {error.filename}" if error.filename else ""
        print(f"latentsr: error: {error.strerror or one_line(error)}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print("latentsr: error: out of memory (try a smaller factor, or fewer studies at once)", file=sys.stderr)
        return 2
