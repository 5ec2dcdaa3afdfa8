"""Pictures of the drop-slice protocol and the demo: a through-plane comparison and box plots.

Both are drawn on matplotlib's Agg canvas (no GUI, no pyplot state), so they work on servers and
inside Slicer alike.

- :func:`comparison_figure`: per method, the through-plane view (a plane that contains the slice
  axis, where interpolation shows) and its absolute difference to the truth on one shared colour
  scale with a colour bar; the scores in each panel's title; frame, orientation letters and a
  millimetre scale bar; every panel the same physical extent (imshow ``extent`` in mm).
- :func:`boxplots`: per metric, every method's scores and the paired per-slice differences
  against the baseline (linear), with title, data set, n and a legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import atomic

#: Panels per row of the comparison figure (input, truth, then the methods); more wrap to a new band.
COLUMNS = 5
#: Letters of the LPS axes' positive directions, and of their opposites.
_POSITIVE, _NEGATIVE = "LPS", "RAI"


def orientation_letters(direction: np.ndarray, axis_xyz: int) -> tuple[str, str]:
    """(letter at the low-index end, letter at the high-index end) of an image axis (0 x, 1 y, 2 z)
    whose LPS direction is column ``axis_xyz`` of ``direction``; "" when the axis is oblique
    (no component above 0.8)."""
    column = np.asarray(direction, float)[:, axis_xyz]
    dominant = int(np.argmax(np.abs(column)))
    if abs(column[dominant]) < 0.8:
        return "", ""
    if column[dominant] > 0:
        return _NEGATIVE[dominant], _POSITIVE[dominant]
    return _POSITIVE[dominant], _NEGATIVE[dominant]


def _canvas(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def comparison_figure(truth: np.ndarray, outputs: Mapping[str, np.ndarray], spacing: Sequence[float],
                      path: str | Path, *, keep_every: int, scores: Mapping[str, str] | None = None,
                      title: str = "", letters: tuple[tuple[str, str], tuple[str, str]] | None = None,
                      crop: int | None = 128, row: int | None = None) -> Path:
    """The through-plane comparison of methods against the truth.

    Args:
        truth: (slices, rows, columns), the full (thin-slice) volume, slices along the first axis.
        outputs: label -> each method's re-creation of ``truth`` from ``truth[::keep_every]``, same shape
            (only the slices from the first to the last kept one are drawn).
        spacing: mm between slices, rows and columns of ``truth``.
        keep_every: the input is every ``keep_every``-th slice; it is drawn with nearest-neighbour slices
            (each acquired slice as thick as its spacing), so its real resolution shows.
        scores: label -> text for the panel title (e.g. "SSIM 0.912, PSNR 31.2 dB").
        title: figure title (data set, volume, frame).
        letters: ((left, right), (bottom, top)) orientation letters of the columns and slice axes.
        crop: columns drawn around the centre (None: all); row: the row whose plane is drawn
            (default the centre).
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    n = (len(truth[::keep_every]) - 1) * keep_every + 1
    ds, _, dc = (float(s) for s in spacing)
    row = truth.shape[1] // 2 if row is None else row
    start = max(truth.shape[2] - (crop or truth.shape[2]), 0) // 2
    columns = slice(start, start + min(truth.shape[2], crop or truth.shape[2]))

    def plane(volume: np.ndarray) -> np.ndarray:
        return np.asarray(volume[:n, row, columns], np.float32)

    reference = plane(truth)
    # The input with nearest-neighbour slices: each acquired slice covers the half gaps on both sides.
    acquired = reference[::keep_every][np.floor(np.arange(n) / keep_every + 0.5).astype(int)]
    views = {label: plane(volume) for label, volume in outputs.items()}
    differences = {label: np.abs(view - reference) for label, view in views.items()}
    low, high = np.percentile(reference, [0.5, 99.5])
    top = float(np.percentile(np.concatenate([d.ravel() for d in differences.values()]), 99.5)) if differences else 1.0
    top = top if top > 0 else 1.0
    extent = (0.0, reference.shape[1] * dc, -0.5 * ds, (n - 0.5) * ds)  # x mm, slice mm (centres at j * ds)

    panels = [("input (every %dth slice)" % keep_every if keep_every != 2 else "input (every other slice)",
               acquired, None), ("truth", reference, None)]
    panels += [(label, views[label], differences[label]) for label in views]
    aspect = (extent[3] - extent[2]) / (extent[1] - extent[0])
    columns_per_band = min(len(panels), COLUMNS)
    bands = -(-len(panels) // columns_per_band)  # bands of panels, each a view row and a difference row
    width = 2.3
    panel = width * aspect  # inches; margins in inches too, so titles never overlap whatever the aspect
    header, gap, footer = 1.05, 0.5, 0.15
    height = header + bands * 2 * (panel + gap) - gap + footer
    figure = _canvas(width * columns_per_band + 0.9, height)
    grid = figure.add_gridspec(2 * bands, columns_per_band + 1, width_ratios=[1] * columns_per_band + [0.06],
                               left=0.02, right=0.94, top=1 - header / height, bottom=footer / height,
                               wspace=0.06, hspace=gap / panel)
    image_map = None
    for i, (label, view, difference) in enumerate(panels):
        band, column = divmod(i, columns_per_band)
        ax = figure.add_subplot(grid[2 * band, column])
        ax.imshow(view, cmap="gray", vmin=low, vmax=high, interpolation="nearest", origin="lower",
                  extent=extent, aspect="equal")
        ax.set_title(label + (f"\n{scores[label]}" if scores and label in scores else "\n"), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.add_artist(AnchoredSizeBar(ax.transData, 20, "20 mm", "lower left", pad=0.3, color="yellow",
                                          frameon=False, size_vertical=0.6, fontproperties={"size": 7}))
            if letters:
                (left, right), (bottom, top_letter) = letters
                for text, xy, ha, va in ((left, (0.02, 0.5), "left", "center"), (right, (0.98, 0.5), "right", "center"),
                                         (top_letter, (0.5, 0.97), "center", "top"),
                                         (bottom, (0.5, 0.03), "center", "bottom")):
                    ax.text(*xy, text, transform=ax.transAxes, ha=ha, va=va, color="cyan", fontsize=8,
                            fontweight="bold")
        low_ax = figure.add_subplot(grid[2 * band + 1, column])
        low_ax.set_xticks([])
        low_ax.set_yticks([])
        if difference is None:
            low_ax.set_axis_off()
            if i == 0:
                low_ax.text(0.0, 0.5, "below each method:\n|method - truth|\n(one shared scale)", fontsize=8,
                            transform=low_ax.transAxes, va="center")
            continue
        image_map = low_ax.imshow(difference, cmap="magma", vmin=0, vmax=top, interpolation="nearest",
                                  origin="lower", extent=extent, aspect="equal")
        low_ax.set_title(f"|{label} - truth|, mean {difference.mean():.3f}", fontsize=7)
    if image_map is not None:
        bar = figure.colorbar(image_map, cax=figure.add_subplot(grid[1, -1]))
        bar.ax.tick_params(labelsize=7)
        bar.set_label("absolute difference\n(normalised intensity)", fontsize=7)
    figure.suptitle((title + "\n" if title else "") +
                    f"through-plane view (vertical: slice direction, {ds:.2f} mm; horizontal: {dc:.2f} mm pixels)",
                    fontsize=9)
    path = atomic.write_file(path, lambda staged: figure.savefig(staged, dpi=130))  # never through a symlink
    return path


def boxplots(rows: Sequence, methods: Sequence[str], path: str | Path, *, dataset: str = "",
             baseline: str = "linear", n_volumes: int | None = None) -> Path:
    """Per metric: the scores of every method (top) and the paired per-slice differences of every
    other method against ``baseline`` (bottom, where above zero means better than it).

    ``rows`` are :class:`LatentSRLib.report.Row`; only rows whose metrics are all finite are drawn,
    the same slices as the summary's statistics.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from .report import METRIC_LABELS, METRICS, label, paired

    rows = [r for r in rows if r.finite()]
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    others = [m for m in methods if m != baseline and any(r.method == baseline for r in rows)]
    figure = _canvas(4.2 * len(METRICS), 7.4 if others else 4.2)
    grid = figure.add_gridspec(2 if others else 1, len(METRICS), left=0.06, right=0.98, top=0.86, bottom=0.14,
                               hspace=0.45, wspace=0.28)
    style = dict(showmeans=True, patch_artist=True, medianprops={"color": "black"},
                 meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black"})

    def draw(ax, data, names):
        if not data:
            return
        parts = ax.boxplot(data, **style)
        for box, name in zip(parts["boxes"], names):
            box.set_facecolor(colours[name])
            box.set_alpha(0.75)
        ax.set_xticks(range(1, len(names) + 1), [label(m) for m in names], fontsize=8, rotation=20)
        ax.grid(axis="y", alpha=0.3)

    n_slices = 0
    for i, metric in enumerate(METRICS):
        ax = figure.add_subplot(grid[0, i])
        data = [np.array([getattr(r, metric) for r in rows if r.method == m], float) for m in methods]
        n_slices = max([n_slices] + [len(d) for d in data])
        draw(ax, [d for d in data if len(d)], [m for m, d in zip(methods, data) if len(d)])
        ax.set_title(f"{METRIC_LABELS[metric]} per slice", fontsize=9)
        if others:
            ax = figure.add_subplot(grid[1, i])
            differences = [np.subtract(*paired(rows, m, baseline, metric)) for m in others]
            draw(ax, differences, others)
            ax.axhline(0, color="grey", linestyle="--", linewidth=1)
            n_pairs = max((len(d) for d in differences), default=0)
            ax.set_title(f"{METRIC_LABELS[metric]}: method - {label(baseline)}, paired (n = {n_pairs})", fontsize=9)
    volumes = f" from {n_volumes} volumes" if n_volumes else ""
    figure.suptitle(f"{dataset}: drop-slice protocol, n = {n_slices} scored slices per method{volumes}", fontsize=11)
    handles = [Patch(facecolor=colours[m], alpha=0.75, label=label(m)) for m in methods]
    handles += [Line2D([], [], color="black", label="median"),
                Line2D([], [], marker="^", linestyle="", markerfacecolor="white", markeredgecolor="black", label="mean"),
                Patch(facecolor="none", edgecolor="black", label="box: quartiles, whiskers: 1.5 IQR")]
    if others:
        handles.append(Line2D([], [], color="grey", linestyle="--", label=f"no difference to {label(baseline)}"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    path = atomic.write_file(path, lambda staged: figure.savefig(staged, dpi=120))  # never through a symlink
    return path
