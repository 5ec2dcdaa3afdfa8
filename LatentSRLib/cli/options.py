"""Flags several subcommands share, and the deprecated spellings accepted for one release."""

from __future__ import annotations

import argparse
import sys

from .. import LatentSRError


class DeprecatedAlias(argparse.Action):
    """An old flag that stores into the new one's destination and says so on stderr."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"latentsr: warning: {option_string} is deprecated and will be removed; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs) -> None:
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, help=argparse.SUPPRESS, **kwargs)


def add_correction_flags(parser: argparse.ArgumentParser) -> None:
    """--correction-sigma / --correction-gain: the learned methods' correction to linear interpolation
    (ae in corrected mode and contrastive), overriding what their weights record; and
    --no-resampling-check, the motion-compensated methods' fall-back to linear interpolation."""
    parser.add_argument("--correction-sigma", type=float, metavar="MM",
                        help="smooth a learned method's correction in-plane (Gaussian sigma, mm; default: the weights')")
    parser.add_argument("--correction-gain", type=float,
                        help="scale a learned method's correction (1 keeps it, 0 gives linear; default: the weights')")
    add_deprecated(parser, "--ae-correction-sigma", "--correction-sigma", "correction_sigma", type=float)
    add_deprecated(parser, "--ae-correction-gain", "--correction-gain", "correction_gain", type=float)
    parser.add_argument("--no-resampling-check", dest="resampling_check", action="store_false",
                        help="flow and motion: do not fall back to linear on stacks the cross-fade detector "
                             "(trained on cardiac cines) calls re-sampled along the slice axis; for other "
                             "anatomy, e.g. brain (Resources/Models/crossfade.md)")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=1, metavar="N",
                         help="folders: N >= 2 runs one task per study on a local Dask cluster of N worker "
                              "processes (one per GPU when GPUs are used); 0 or 1: in this process (default)")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="folders: run on an existing dask.distributed scheduler (tcp://host:8786)")


def add_exclude_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exclude", nargs="+", default=(), metavar="TEXT",
                        help="skip data files whose path contains any of these (e.g. the test patients of "
                             "an evaluation); by default every file given is used")


def method_name(name: str) -> str:
    """The registered name of a method given in any case ("AE" -> "ae")."""
    from ..methods import get
    return get(name).name


def method_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise LatentSRError("no methods given")
    return [method_name(m) for m in names]


def method_help() -> str:
    from ..methods import REGISTRY
    return ", ".join(m.name for m in REGISTRY)


def note(text: str) -> None:
    """An option given where it does nothing: said in one line (stderr), and the run goes on."""
    print(f"latentsr: note: {text}", file=sys.stderr)


def check_device(device: str, methods: list[str], local: bool = True) -> None:
    """Refuse a device LatentSR cannot use, before any work and whatever the methods; with learned
    methods among ``methods`` run here (``local``), also one that this machine lacks. A device other
    than auto or cpu for conventional methods only is noted: they always run on the CPU."""
    from ..devices import check_device_name, pick_device
    from ..pipeline import WEIGHTS_KIND
    device = check_device_name(device)
    learned = [m for m in methods if m in WEIGHTS_KIND]
    if learned and local:
        pick_device(device)  # imports torch, which the learned methods need anyway
    elif not learned and device not in ("auto", "cpu"):
        note(f"--device {device} is not used: these methods run on the CPU (only learned methods use a GPU)")


def check_cluster(args: argparse.Namespace, used: bool) -> None:
    """--workers / --scheduler: refused when invalid even where unused (a typo must not pass); noted
    when given where nothing runs on a cluster (``used`` False: one input written to one file)."""
    from ..engine import check_engine
    check_engine(args.workers, args.scheduler)
    if not used and (args.workers >= 2 or args.scheduler):
        flag = f"--scheduler {args.scheduler}" if args.scheduler else f"--workers {args.workers}"
        note(f"{flag} is not used: one input runs in this process (a cluster runs folders of studies)")


def check_correction(args: argparse.Namespace) -> None:
    """--correction-sigma / --correction-gain, checked before any work (numpy and scipy only)."""
    if args.correction_sigma is not None or args.correction_gain is not None:
        from ..synthesize.correction import correction_options
        correction_options({}, args.correction_sigma, args.correction_gain)
