"""The phantom and the demo: the embedded default a new user runs first."""

from __future__ import annotations

import csv

import numpy as np

from LatentSRLib import phantom
from LatentSRLib.demo import available_methods, run_demo
from LatentSRLib.volume import read


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


def test_demo_writes_volumes_figure_and_scores(tmp_path):
    methods = ["linear", "lanczos"]
    text = run_demo(None, tmp_path, methods=methods, progress=False, phantom_frames=2)
    for method in methods:
        out = read(tmp_path / f"phantom_{method}_x7.nii.gz")
        assert out.array.shape == (2, 64, 128, 128)
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    with open(tmp_path / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == set(methods)
    assert "Linear" in text and "Lanczos" in text


def test_conventional_methods_are_always_available():
    assert available_methods()[:3] == ["linear", "bspline", "lanczos"]
