"""``latentsr super-resolve``: one file, or a folder of studies (resumable, on Dask if asked)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .. import LatentSRError
from ..folders import check_name
from ..progress import progress_bar
from ..volume import WRITABLE_SUFFIXES, check_output, find_images, read, slice_axis, validate, volume_name, write
from .options import (add_cluster_flags, add_correction_flags, check_cluster, check_correction, check_device,
                      method_help, method_name)

AXES = {"auto": None, "z": 0, "y": 1, "x": 2}


def describe(volume) -> str:
    z, y, x = volume.array.shape[1:]
    sx, sy, sz = volume.spacing
    frames = f" x {volume.n_frames} frames" if volume.is_4d or volume.n_frames > 1 else ""
    return f"{x}x{y}x{z}{frames} @ {sx:.3g}x{sy:.3g}x{sz:.3g} mm"


def run(args: argparse.Namespace) -> int:
    from ..methods import get
    from ..pipeline import Run, choose_factor, super_resolve
    args.method = method_name(args.method)
    method = get(args.method)
    if args.weights is not None and not method.learned:  # an ignored option hides a mistake (wrong --method)
        raise LatentSRError(f"--weights is for learned methods; '{args.method}' uses none (drop --weights)")
    if args.confidence_out and not method.gives_confidence:
        raise LatentSRError(f"--confidence-out: '{args.method}' gives no confidence "
                            f"(methods that do: {', '.join(m.name for m in _confident())})")
    axis = AXES[args.axis]
    if not args.output.strip():  # '' would mean the current folder
        raise LatentSRError("-o is empty: name an output file or folder")
    check_name(args.output, "-o")  # before anything looks at it: a name too long fails even is_dir()
    # A folder of one study (a DICOM series, a scan) written to a file name is one job, not a cohort; the
    # cohort lists its inputs itself
    cohort = not _names_a_file(args.output) and (len(args.input) > 1 or Path(args.input[0]).is_dir()
                                                 or _names_a_folder(args.output))
    # Every option is checked before anything is read or made
    check_cluster(args, used=cohort)
    check_device(args.device, [args.method], local=not (cohort and args.scheduler))
    check_correction(args)
    if cohort:
        if args.confidence_out:
            raise LatentSRError("--confidence-out is for one input written to a file (-o result.nii.gz)")
        return run_cohort(args, axis)
    if method.weights_kind:  # a broken models.json or a missing weights file: before the input is read
        from ..models import registry
        registry.resolve(args.weights, method.weights_kind)
    if args.confidence_out:
        check_name(args.confidence_out, "--confidence-out")
    inputs = find_images(args.input)
    if not inputs:
        raise LatentSRError(f"no images found in {', '.join(args.input)}")
    if len(inputs) > 1:  # only with a file name as -o: anything else went to the cohort above
        raise LatentSRError(f"-o {args.output} names a file, but the input holds {len(inputs)} studies: "
                            "give a folder for their results")
    source, target = inputs[0], Path(args.output)
    confidence_target = Path(args.confidence_out) if args.confidence_out else None
    volume = read(source, allow_external_data=args.allow_external_data)
    validate(volume, what=str(source))  # before the progress bar: a bad input gets one line
    started = time.perf_counter()
    factor = choose_factor(volume, args.factor, args.spacing, axis, allow_copy=False)
    from ..memory import output_shape  # fail before the work, not after (format limits too)
    shape = output_shape(volume.array.shape, factor, slice_axis(volume) if axis is None else axis)
    check_output(target, args.overwrite, protect=inputs, shape=shape, direction=volume.direction)
    if confidence_target is not None:
        from ..outputs import output_files  # r.nhdr and r.mhd would share r.raw
        if {f.resolve() for f in output_files(confidence_target)} & {f.resolve() for f in output_files(target)}:
            raise LatentSRError("--confidence-out must be another file than -o, with another data file")
        check_output(confidence_target, args.overwrite, protect=inputs, shape=shape, direction=volume.direction)
    bar, update = progress_bar(f"{volume_name(source)} {args.method} x{factor}", not args.quiet)
    options = Run(device=args.device, weights=args.weights, progress=update, keep_original=not args.replace_originals,
                  mode=args.ae_mode, correction_sigma_mm=args.correction_sigma, correction_gain=args.correction_gain,
                  batch_slices=args.batch_slices, clip=args.clip, resampling_check=args.resampling_check)
    try:
        result = super_resolve(volume, args.method, factor=factor, axis=axis, run=options)
    finally:
        if bar is not None:
            bar.close()
    # Exclusive unless --overwrite: a file that appeared during the run is not replaced. Tagged, so a
    # folder input never takes it for an input.
    write(result, target, overwrite=args.overwrite, protect=inputs, tag=f"{args.method} x{factor}", like=source)
    if confidence_target is not None:
        write(options.confidence, confidence_target, overwrite=args.overwrite, protect=inputs,
              tag=f"{args.method} x{factor} confidence", like=source)
    print(f"{source} ({describe(volume)}) -> {target} ({describe(result)}), "
          f"{args.method} x{factor}, {time.perf_counter() - started:.1f} s"
          + (f"; confidence (0..1) -> {confidence_target}" if confidence_target is not None else ""))
    for line in options.notes:
        print(f"note: {line}")
    return 0


def _names_a_file(output: str) -> bool:
    """An output path that is not a folder and ends in an image suffix (``result.nii.gz``)."""
    return not _names_a_folder(output) and Path(output).name.lower().endswith(WRITABLE_SUFFIXES)


def _names_a_folder(output: str) -> bool:
    """An existing folder, or a path written as one (``results/``): results go in it, by input name."""
    return Path(output).is_dir() or output.endswith(("/", os.sep))


def _confident():
    from ..methods import REGISTRY
    return [m for m in REGISTRY if m.gives_confidence]


def run_cohort(args: argparse.Namespace, axis: int | None) -> int:
    """Several inputs or a folder: one task per study, resumable, manifest.csv; exit 0 when every
    study is done or skipped, 1 when some failed, 2 when all failed (or before any work: bad options)."""
    from ..cohort import MANIFEST_NAME, Options, run_super_resolve
    from ..manifest import DONE, FAILED, SKIPPED
    options = Options(method=args.method, factor=args.factor, spacing=args.spacing, axis=axis,
                      weights=args.weights, device=args.device, keep_original=not args.replace_originals,
                      mode=args.ae_mode, correction_sigma_mm=args.correction_sigma,
                      correction_gain=args.correction_gain, batch_slices=args.batch_slices,
                      overwrite=args.overwrite, clip=args.clip, resampling_check=args.resampling_check,
                      allow_external_data=args.allow_external_data)
    records = run_super_resolve(args.input, args.output, options, workers=args.workers, scheduler=args.scheduler,
                                progress=not args.quiet)
    count = {status: sum(r.status == status for r in records) for status in (DONE, SKIPPED, FAILED)}
    print(f"{len(records)} stud{'y' if len(records) == 1 else 'ies'}: {count[DONE]} done, {count[SKIPPED]} skipped (done before or nothing to do), "
          f"{count[FAILED]} failed; {Path(args.output) / MANIFEST_NAME}")
    return 0 if count[FAILED] == 0 else 2 if count[FAILED] == len(records) else 1


def add_parser(commands) -> None:
    from ..methods import DEFAULT
    sr = commands.add_parser("super-resolve", help="super-resolve volumes through-plane",
                             description="Super-resolve 3D volumes or 4D cines along their slice axis.")
    sr.add_argument("input", nargs="+", help="image files (NIfTI, NRRD, MHA), DICOM folders, or folders of images")
    sr.add_argument("-o", "--output", required=True,
                    help="output file (its suffix picks the format), or a folder (existing, or written with a "
                         "trailing /) for one or several inputs: results named after them, and manifest.csv")
    sr.add_argument("--method", default=DEFAULT, help=f"{method_help()} (any case; default: {DEFAULT})")
    size = sr.add_mutually_exclusive_group()
    size.add_argument("--factor", type=int, help="integer upsampling factor along the slice axis")
    size.add_argument("--spacing", type=float, help="target slice spacing in mm (factor = round(spacing ratio))")
    sr.add_argument("--axis", choices=tuple(AXES), default="auto",
                    help="slice axis (default: the axis with the largest spacing)")
    sr.add_argument("--weights", help="bundled model name or weights file (learned methods)")
    sr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    sr.add_argument("--confidence-out", metavar="FILE",
                    help="flow, motion: also write where the method trusts its motion estimate, a 0..1 volume on "
                         "the output grid (1: its own estimate, 0: linear interpolation)")
    clip = sr.add_mutually_exclusive_group()
    clip.add_argument("--clip", dest="clip", action="store_true", default=None,
                      help="clip the result to the input's value range (default for learned methods)")
    clip.add_argument("--no-clip", dest="clip", action="store_false",
                      help="keep values outside the input's range (default for conventional methods)")
    sr.add_argument("--ae-mode", choices=("latent", "corrected"),
                    help="autoencoder inference: the paper's decoded mixed code (latent) or linear "
                         "interpolation plus the latent correction (corrected); default: as the weights record")
    add_correction_flags(sr)
    sr.add_argument("--batch-slices", type=int, default=16, help="slices per network batch (memory bound)")
    sr.add_argument("--replace-originals", action="store_true",
                    help="learned methods: replace acquired slices by their reconstruction")
    sr.add_argument("--overwrite", action="store_true",
                    help="replace existing output files (folders: redo studies a re-run would skip as done)")
    sr.add_argument("--allow-external-data", action="store_true",
                    help="read a header's data file (NRRD 'data file', MetaImage ElementDataFile, a NIfTI pair's "
                         ".img) that lies outside the header's folder; refused by default")
    sr.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_flags(sr)
    sr.set_defaults(run=run)
