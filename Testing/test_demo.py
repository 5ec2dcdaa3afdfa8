"""The phantom and the demo: the embedded default a new user runs first."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from LatentSRLib import LatentSRError, pipeline, phantom
from LatentSRLib.demo import available_methods, default_out_dir, run_demo
from LatentSRLib.intensity import clip_to_input_range
from LatentSRLib.volume import read

REPOSITORY = Path(__file__).resolve().parents[1]


def test_phantom_is_a_cine_with_thin_slice_truth():
    cine = phantom.cine(frames=4, slices=6, size=64, factor=3)
    assert cine.acquired.array.shape == (4, 6, 64, 64) and cine.acquired.is_4d
    assert cine.truth.array.shape == (4, 16, 64, 64)
    assert cine.acquired.spacing == (1.4, 1.4, 10.0)
    assert cine.truth.spacing[2] * 3 == cine.acquired.spacing[2]
    np.testing.assert_array_equal(cine.acquired.array, cine.truth.array[:, ::3])
    # The heart beats: end-systole differs from end-diastole, most in the blood pool.
    assert np.abs(cine.acquired.array[1] - cine.acquired.array[0]).mean() > 0.005
    # Blood (bright), myocardium (dark) and lungs (darkest) are all present in a mid slice.
    mid = cine.truth.array[0, 8]
    assert (mid > 0.8).mean() > 0.02 and (mid < 0.1).mean() > 0.1


def test_demo_writes_volumes_figures_and_scores(tmp_path):
    methods = ["linear", "lanczos"]
    text = run_demo(None, tmp_path, methods=methods, progress=False, phantom_frames=2)
    for method in methods:
        out = read(tmp_path / f"phantom_{method}_x7.nii")
        assert out.array.shape == (2, 64, 128, 128)
    assert read(tmp_path / "phantom_truth.nii").array.shape == (2, 64, 128, 128)
    for figure in ("comparison.png", "boxplots.png"):
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == set(methods)
    # Every frame is scored, 6 hidden slices in each of the 9 gaps; the same slices for every method.
    assert {r["volume"] for r in rows} == {"phantom_t00", "phantom_t01"}
    assert len(rows) == 2 * 9 * 6 * len(methods)
    # Linear beats Lanczos on the phantom as on ACDC, and the summary says where the results are.
    linear = np.mean([float(r["ssim"]) for r in rows if r["method"] == "linear"])
    lanczos = np.mean([float(r["ssim"]) for r in rows if r["method"] == "lanczos"])
    assert linear > lanczos
    assert "Linear" in text and "Lanczos" in text and f"Results in {tmp_path.resolve()}" in text
    assert "Excluded: 0 hidden slices" in (tmp_path / "summary.md").read_text()


def test_demo_figure_has_a_view_and_a_difference_panel_per_method(tmp_path, monkeypatch):
    """The comparison figure: input and truth, then per method a view titled with its scores and a
    difference panel, and one shared colour bar."""
    from LatentSRLib import figures

    captured = {}
    original = figures.comparison_figure

    def spy(truth, outputs, spacing, path, **options):
        captured.update(outputs=dict(outputs), scores=dict(options["scores"]), spacing=spacing, letters=options["letters"])
        return original(truth, outputs, spacing, path, **options)

    monkeypatch.setattr(figures, "comparison_figure", spy)
    run_demo(None, tmp_path, methods=["linear", "bspline"], progress=False, phantom_frames=1)
    assert list(captured["outputs"]) == ["Linear", "B-spline"]
    assert all(text.startswith("SSIM 0.") and "PSNR" in text and text.endswith("dB")
               for text in captured["scores"].values())
    assert captured["spacing"] == pytest.approx((10 / 7, 1.4, 1.4))
    assert captured["letters"] == (("R", "L"), ("I", "S"))  # identity direction: x to the left, z up
    from PIL import Image
    width, height = Image.open(tmp_path / "comparison.png").size
    assert width > 2 * height  # one band: 4 panels side by side (input, truth, 2 methods) and a colour bar


def test_default_output_is_outside_the_repository(tmp_path, monkeypatch):
    """The demo writes nothing into the repository when run from it without --out."""
    assert REPOSITORY not in default_out_dir().resolve().parents
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.chdir(REPOSITORY)
    before = set(REPOSITORY.iterdir())
    text = run_demo(None, None, methods=["linear"], progress=False, phantom_frames=1)
    assert (tmp_path / "latentsr-demo" / "comparison.png").exists()
    assert set(REPOSITORY.iterdir()) == before
    assert str(tmp_path / "latentsr-demo") in text


def test_git_ignores_a_demo_folder_in_the_repository():
    assert "latentsr-demo/" in (REPOSITORY / ".gitignore").read_text().split()


def test_default_methods_follow_the_method_registry():
    methods = available_methods()
    conventional = [m for m in pipeline.METHODS if m in pipeline.CONVENTIONAL]
    assert methods[:len(conventional)] == conventional and methods[:3] == ["linear", "bspline", "lanczos"]
    assert set(methods) <= set(pipeline.METHODS) and "ae-latent" not in methods


def test_unknown_method_fails_before_any_work(tmp_path):
    with pytest.raises(LatentSRError, match="unknown method"):
        run_demo(None, tmp_path, methods=["linear", "cubic"], progress=False, phantom_frames=1)
    assert not any(tmp_path.iterdir())


def test_clip_to_input_range():
    source = np.array([[0.0, 10.0], [4.0, 2.0]], np.float32)
    result = np.array([-3.0, 0.0, 5.0, 12.5], np.float32)
    clipped = clip_to_input_range(result, source)
    np.testing.assert_array_equal(clipped, [0.0, 0.0, 5.0, 10.0])
    assert clipped.dtype == np.float32 and result[0] == -3.0  # a new array
    # NaNs in the input are ignored when finding its range; an input without values is refused.
    np.testing.assert_array_equal(clip_to_input_range(result, np.array([np.nan, 1.0, 3.0])), [1, 1, 3, 3])
    with pytest.raises(LatentSRError):
        clip_to_input_range(result, np.array([np.nan]))
