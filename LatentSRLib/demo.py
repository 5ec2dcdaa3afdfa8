"""``latentsr demo``: every available method on the built-in phantom cine (or a user's file).

Writes the super-resolved volumes, ``comparison.png`` (a through-plane view: the input, each method
and, for the phantom, the truth) and ``summary.md`` (scores of each method against the truth for the
phantom, or the drop-slice protocol on the user's file).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import LatentSRError, phantom
from .pipeline import CONVENTIONAL, LABELS, LEARNED, Run, choose_factor, super_resolve
from .volume import Volume, read, volume_name, write

#: Phantom frames scored against the truth (all frames are super-resolved and written).
SCORED_FRAMES = 4


def available_methods() -> list[str]:
    """Conventional methods, plus each learned method whose bundled weights are present."""
    from .models import registry
    bundled = {entry["kind"] for name, entry in registry.manifest().items()
               if (registry.models_folder() / entry["file"]).exists()}
    return list(CONVENTIONAL) + [m for m in LEARNED if m in bundled]  # ae-latent is no weights kind


def through_plane_figure(panels: Sequence[tuple[str, Volume]], path: Path, frame: int = 0) -> Path:
    """Side-by-side through-plane views (the plane through the centre row) at true aspect ratio.

    The input, with fewer slices, is drawn with nearest-neighbour slices so its real resolution shows.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = panels[-1][1]
    low, high = np.percentile(reference.array[frame], [0.5, 99.5])
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.4), squeeze=False)
    for ax, (title, volume) in zip(axes[0], panels):
        frame_array = volume.array[min(frame, volume.n_frames - 1)]
        view = frame_array[:, frame_array.shape[1] // 2, :]  # (Z, X): a plane containing the slice axis
        z_extent = (volume.array.shape[1] - 1) * volume.spacing[2] + volume.spacing[2]
        x_extent = volume.array.shape[3] * volume.spacing[0]
        ax.imshow(view, cmap="gray", vmin=low, vmax=high, interpolation="nearest",
                  extent=(0, x_extent, z_extent, 0), aspect="equal")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Through-plane view (rows: slice direction)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(input_path: str | os.PathLike | None, out_dir: str | os.PathLike,
             methods: Sequence[str] | None = None, device: str = "auto", progress: bool = True,
             phantom_frames: int = 20) -> str:
    """Run the demo; returns the summary (also written to ``out_dir/summary.md``).

    Args:
        input_path: a user's image; None for the built-in phantom cine (``phantom_frames`` frames).
        methods: default every conventional method and each learned one with bundled weights.
    """
    from .cli import progress_bar
    from .evaluate import evaluate, evaluate_volume, summarise

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(methods) if methods else available_methods()
    if input_path is None:
        cine = phantom.cine(frames=phantom_frames, slices=10, slice_spacing=10.0, pixel_size=1.4, size=128, factor=7)
        volume, truth, name = cine.acquired, cine.truth, "phantom"
        write(volume, out / "phantom_input.nii.gz")
        write(truth, out / "phantom_truth.nii.gz")
        factor = cine.factor
    else:
        volume, truth, name = read(input_path), None, volume_name(input_path)
        factor = choose_factor(volume)
    lines = [f"# LatentSR demo: {name}", "",
             f"Input {volume.array.shape[3]}x{volume.array.shape[2]}x{volume.array.shape[1]}"
             f" x {volume.n_frames} frames at {volume.spacing[0]:.2f}x{volume.spacing[1]:.2f}x{volume.spacing[2]:.2f} mm;"
             f" factor {factor} to {volume.spacing[2] / factor:.2f} mm slices.", "",
             "| method | output | time (s) |", "| --- | --- | ---: |"]
    panels: list[tuple[str, Volume]] = [("input", volume)]
    for method in methods:
        bar, update = progress_bar(f"{method} x{factor}", progress)
        started = time.perf_counter()
        try:
            result = super_resolve(volume, method, factor=factor, run=Run(device=device, progress=update))
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - started
        target = write(result, out / f"{name}_{method}_x{factor}.nii.gz")
        lines.append(f"| {LABELS.get(method, method)} | {target.name} | {seconds:.1f} |")
        panels.append((LABELS.get(method, method), result))
    if truth is not None:
        panels.append(("truth", truth))
    figure = through_plane_figure(panels, out / "comparison.png")
    lines += ["", f"Comparison figure: {figure.name}", ""]
    if truth is not None:
        # The phantom's input is every k-th truth slice, so scoring the re-created slices against the
        # truth is exactly the drop-slice protocol on the truth with keep-every = factor.
        frames = np.linspace(0, truth.n_frames - 1, min(SCORED_FRAMES, truth.n_frames)).round().astype(int)
        rows, names = [], []
        for t in frames:
            names.append(f"{name}_t{t:02d}")
            rows += evaluate_volume(names[-1], truth.with_array(truth.array[t:t + 1]), methods,
                                    keep_every=factor, device=device)
        summary = summarise(rows, methods, out, keep_every=factor, volumes=names)
        lines += [f"Scores against the phantom's truth (frames {', '.join(map(str, frames))}):", "",
                  summary.markdown]
    else:
        try:
            summary = evaluate([input_path], methods, out / "evaluation", keep_every=2, device=device,
                               progress=progress)
            lines += ["Drop-slice protocol on the input (every other slice re-created):", "", summary.markdown]
        except LatentSRError as error:
            lines += [f"No evaluation: {error}"]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text + f"\nWritten to {out.resolve()}"

