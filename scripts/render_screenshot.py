"""Render the extension's screenshot: the comparison layout's through-plane views, side by side.

What the LatentSR panel shows after a run on the demo's built-in phantom cine (`latentsr demo`'s
input: 10 slices 10 mm apart, 1.4 mm pixels): the input, then Flow (the default method), B-spline
and Lanczos, each super-resolved near-isotropic (x7), in the orientation
that cuts across the slices (sagittal), with the same grey scale, nearest-neighbour voxels as Slice
views draw them. The views are drawn with matplotlib, not grabbed from Slicer (no display here).

    .venv/bin/python scripts/render_screenshot.py [--out Resources/Screenshots/LatentSR-comparison.png]

About 20 s on a CPU. The PNG is kept small (a palette image, under 300 KB; Testing/test_extension.py checks it).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from LatentSRLib import phantom  # noqa: E402
from LatentSRLib.demo import PHANTOM  # noqa: E402
from LatentSRLib.pipeline import Run, choose_factor, super_resolve  # noqa: E402

DEFAULT_OUT = ROOT / "Resources" / "Screenshots" / "LatentSR-comparison.png"
#: The comparison layout's views, in its order: input, the chosen method, then "Compare with".
METHODS = (("flow", "Flow"), ("bspline", "B-spline"), ("lanczos", "Lanczos"))
FRAME = 1  # the second phantom frame: mid-contraction, where slices differ most


def through_plane(array: np.ndarray, column: int) -> np.ndarray:
    """The sagittal view of a (Z, Y, X) frame: rows are slices (top: highest z, as Slicer shows S up)."""
    return array[::-1, :, column]


def render(out: Path) -> Path:
    cine = phantom.cine(frames=2, **PHANTOM)
    volume = cine.acquired
    factor = choose_factor(volume)  # near-isotropic, the panel's default
    column = volume.array.shape[3] // 2 - 8  # through the left ventricle
    views = [("Input (10 mm slices)", volume.array[FRAME], volume.spacing[2])]
    for method, label in METHODS:
        result = super_resolve(volume, method, factor=factor, run=Run())
        views.append((f"{label} x{factor}", result.array[FRAME], result.spacing[2]))
    low, high = np.percentile(volume.array[FRAME], [1, 99.5])

    pixel = volume.spacing[1]
    figure, axes = plt.subplots(1, len(views), figsize=(2.9 * len(views), 2.45), facecolor="black")
    for number, (axis, (title, array, slice_spacing)) in enumerate(zip(axes, views), start=1):
        image = through_plane(array, column)
        # Voxel centres at k * spacing (mm from the first slice), each drawn as its own box, as Slicer does.
        extent = (0, image.shape[1] * pixel, -slice_spacing / 2, (image.shape[0] - 0.5) * slice_spacing)
        axis.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest", extent=extent,
                    aspect="equal")
        axis.set_facecolor("black")
        axis.set_ylim(-volume.spacing[2] / 2, (volume.array.shape[1] - 0.5) * volume.spacing[2])
        axis.set_title(f"{number}  {title}", color="white", fontsize=10, loc="left")
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_color("#e0c000")
    figure.suptitle("LatentSR comparison layout: linked through-plane (sagittal) views of a cine frame",
                    color="white", fontsize=10, y=0.99)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, facecolor=figure.get_facecolor())
    plt.close(figure)
    buffer.seek(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette: grey views and the frame colour, a fraction of the RGBA size.
    Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    path = render(args.out)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
