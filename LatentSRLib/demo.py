"""``latentsr demo``: every available method on the built-in phantom cine (or a user's file).

On the phantom (a beating heart with known thin-slice truth: :mod:`.phantom`), each method
super-resolves the whole cine once; those outputs are written and scored against the truth with
the drop-slice protocol's rules (:mod:`.evaluate`: normalisation, centre crop, content rule), so the
demo runs every method once. Writes, into a folder outside the repository by default:

- ``phantom_input.nii``, ``phantom_truth.nii`` and ``phantom_<method>_x<k>.nii``;
- ``comparison.png``: per method the through-plane view and its difference to the truth, with scores;
- ``boxplots.png``, ``metrics.csv`` and ``summary.md`` (scores, paired tests against linear, weights).

With a user's file, the methods' outputs are written and the drop-slice protocol runs on it
(``evaluation/``).
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Sequence

from . import LatentSRError, atomic, phantom, pipeline
from .folders import check_folder
from .intensity import PercentileScaling
from .pipeline import Run, choose_factor, super_resolve
from .volume import Volume, read, volume_name, write

#: The demo phantom: frames of the cine (evenly over one beat: end-diastole and mid-contraction, as
#: ACDC's ED/ES pairs) and their geometry (10 slices 10 mm apart, 128 x 128 pixels of 1.4 mm, truth
#: at 7x finer slices). Two frames keep the demo under half a minute on two CPU cores (README, demo).
PHANTOM_FRAMES = 2
#: Output volumes are written uncompressed: noisy float32 barely compresses (16 %) and gzip took 1.6 s
#: a file.
EXTENSION = ".nii"
PHANTOM = dict(slices=10, slice_spacing=10.0, pixel_size=1.4, size=128, factor=7)
#: Learned variants left out of the default list (still available with --methods).
NOT_BY_DEFAULT = ("ae-latent",)


def default_out_dir() -> Path:
    """``latentsr-demo`` in the system's temporary folder (outside any repository)."""
    return Path(tempfile.gettempdir()) / "latentsr-demo"


def _own_folder(out: Path) -> Path:
    """The default folder, made private (0700) if new; refused unless it is a real folder of this user
    that no one else may write to: anyone can create that fixed name in a shared temporary folder and
    plant symlinks in it."""
    try:
        out.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise LatentSRError(f"cannot create {out}: {error.strerror or error}") from None
    info = os.lstat(out)
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    if not stat.S_ISDIR(info.st_mode) or not mine or info.st_mode & 0o022:
        raise LatentSRError(f"{out} is not a private folder of yours (a symlink, someone else's, or writable by "
                            "others): remove it or give --out")
    return out


def available_methods() -> list[str]:
    """The methods registered in :data:`LatentSRLib.pipeline.METHODS` at run time: every conventional
    one, plus each learned one whose bundled weights are present (variants in NOT_BY_DEFAULT aside)."""
    bundled: set[str] = set()
    if any(m in pipeline.WEIGHTS_KIND for m in pipeline.METHODS):
        from .models import registry
        bundled = {entry["kind"] for entry in registry.manifest().values()
                   if (registry.models_folder() / entry["file"]).exists()}
    return [m for m in pipeline.METHODS
            if m in pipeline.CONVENTIONAL
            or (pipeline.WEIGHTS_KIND.get(m) in bundled and m not in NOT_BY_DEFAULT)]


def _inside_repository(path: Path) -> Path | None:
    """The git work tree containing ``path``, if any."""
    for folder in [path, *path.parents]:
        if (folder / ".git").exists():
            return folder
    return None


def _run_methods(volume: Volume, methods: Sequence[str], factor: int, out: Path, name: str, device: str,
                 progress: bool) -> tuple[dict[str, Volume], list[str]]:
    from .progress import progress_bar

    results, lines = {}, []
    for method in methods:
        bar, update = progress_bar(f"{method} x{factor}", progress)
        started = time.perf_counter()
        try:
            result = super_resolve(volume, method, factor=factor, run=Run(device=device, progress=update))
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        target = write(result, out / f"{name}_{method}_x{factor}{EXTENSION}")
        lines.append(f"| {pipeline.LABELS.get(method, method)} | {target.name} | {seconds:.1f} |")
        results[method] = result
    return results, lines


def score_phantom(truth: Volume, results: dict[str, Volume], factor: int, out: Path, figure_frame: int = 0):
    """Score every method's output against the phantom's truth, frame by frame, with the protocol's
    rules; write metrics.csv, summary.md (returned), boxplots.png and comparison.png."""
    from .evaluate import CONTENT_RULE, CROP, case_figure, protocol_case, summarise

    rows, names, excluded = [], [], 0
    for t in range(truth.n_frames):
        name = f"phantom_t{t:02d}"
        frame = truth.with_array(truth.array[t:t + 1])
        # The input is every factor-th truth slice: exactly the protocol with keep_every = factor.
        case = protocol_case(name, frame, keep_every=factor, content_rule=True)
        scaling = PercentileScaling.fit(truth.array[t])  # the case's normalisation of the truth
        outputs = {m: scaling.forward(result.array[t]) for m, result in results.items()}
        for method, output in outputs.items():
            rows += case.score(method, output[None])
        names.append(name)
        excluded += len(case.excluded)
        if t == figure_frame:
            figure_case, figure_outputs = case, outputs
    summary = summarise(rows, list(results), out, keep_every=factor, volumes=names, dataset="phantom",
                        excluded=excluded, rule=CONTENT_RULE, crop=CROP)
    summary.figure_path = case_figure(figure_case, figure_outputs, rows, out / "comparison.png",
                                      f"phantom cine, frame {figure_frame} of {truth.n_frames} (end-diastole), "
                                      f"x{factor} from {truth.spacing[2] * factor:.0f} mm slices")
    return summary


def run_demo(input_path: str | os.PathLike | None, out_dir: str | os.PathLike | None = None,
             methods: Sequence[str] | None = None, device: str = "auto", progress: bool = True,
             phantom_frames: int = PHANTOM_FRAMES) -> str:
    """Run the demo; returns the summary (also written to ``out_dir/summary.md``) and where it is.

    Args:
        input_path: a user's image; None for the built-in phantom cine (``phantom_frames`` frames).
        out_dir: default :func:`default_out_dir`.
        methods: default :func:`available_methods`.
    """
    out = check_folder(out_dir, "--out") if out_dir is not None else _own_folder(check_folder(default_out_dir(), "--out"))
    out.mkdir(parents=True, exist_ok=True)
    methods = [m.strip().lower() for m in methods] if methods else available_methods()
    for method in methods:
        pipeline.method_function(method)  # unknown names fail before any work
    started = time.perf_counter()
    if input_path is None:
        cine = phantom.cine(frames=phantom_frames, **PHANTOM)
        volume, truth, name, factor = cine.acquired, cine.truth, "phantom", cine.factor
        write(volume, out / f"phantom_input{EXTENSION}")
        write(truth, out / f"phantom_truth{EXTENSION}")
    else:
        volume, truth, name = read(input_path), None, volume_name(input_path)
        factor = choose_factor(volume)
    lines = [f"# LatentSR demo: {name}", "",
             f"Input {volume.array.shape[3]}x{volume.array.shape[2]}x{volume.array.shape[1]}"
             f" x {volume.n_frames} frames at {volume.spacing[0]:.2f}x{volume.spacing[1]:.2f}x{volume.spacing[2]:.2f} mm;"
             f" factor {factor} to {volume.spacing[2] / factor:.2f} mm slices.", "",
             "| method | output | time (s) |", "| --- | --- | ---: |"]
    results, table = _run_methods(volume, methods, factor, out, name, device, progress)
    lines += table + [""]
    if truth is not None:
        summary = score_phantom(truth, results, factor, out)
        lines += ["Scores against the phantom's truth (every frame; comparison.png: frame 0):", "", summary.markdown]
    else:
        from .evaluate import evaluate
        try:
            summary = evaluate([input_path], methods, out / "evaluation", keep_every=2, device=device,
                               progress=progress)
            lines += ["Drop-slice protocol on the input (every other slice re-created; evaluation/):", "",
                      summary.markdown]
        except LatentSRError as error:
            lines += [f"No evaluation: {error}"]
    text = "\n".join(lines) + "\n"
    atomic.write_text(out / "summary.md", text)  # never through a symlink planted in the folder
    repository = _inside_repository(out.resolve())
    note = f" (inside the git work tree {repository}: consider --out outside it)" if repository else ""
    figures = ", ".join(p for p in ("comparison.png", "boxplots.png", "evaluation/comparison.png")
                        if (out / p).exists())
    return (text + f"\nDone in {time.perf_counter() - started:.0f} s. Results in {out.resolve()}{note}: "
            f"{figures}, summary.md and the super-resolved volumes.")
