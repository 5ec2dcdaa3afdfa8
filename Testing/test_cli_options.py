"""Command-line options shared by the methods: one correction setting for both learned methods,
case-insensitive method names, --confidence-out, --clip, and the deprecated spellings."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib.cli import main
from LatentSRLib.volume import Volume, read, write


@pytest.fixture
def scan(tmp_path):
    """A small anisotropic int16 scan: a bright disc moving from slice to slice, 1.4 mm x 8 mm."""
    yy, xx = np.mgrid[:48, :48].astype(np.float32)
    stack = [200 + 800 / (1 + np.exp((np.hypot(xx - 14 - 3 * z, yy - 24) - 9) / 0.8)) for z in range(6)]
    path = tmp_path / "scan.nii.gz"
    write(Volume(np.stack(stack)[None], (1.4, 1.4, 8.0), (3.0, -2.0, 10.0), np.eye(3), np.int16), path)
    return path


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.mark.parametrize("method", ["ae", "contrastive"])
def test_correction_gain_zero_gives_linear_for_both_learned_methods(method, scan, tmp_path):
    linear, learned, free = tmp_path / "linear.nii.gz", tmp_path / "learned.nii.gz", tmp_path / "free.nii.gz"
    assert run("super-resolve", scan, "-o", linear, "--method", "linear", "--factor", "2", "--quiet") == 0
    assert run("super-resolve", scan, "-o", learned, "--method", method, "--factor", "2", "--quiet",
               "--correction-gain", "0", "--device", "cpu") == 0
    assert run("super-resolve", scan, "-o", free, "--method", method, "--factor", "2", "--quiet",
               "--device", "cpu") == 0
    a, b, c = (read(p).array for p in (linear, learned, free))
    assert np.abs(a - b).max() <= 1.0  # int16 rounding of the same values
    assert np.abs(a - c).max() > 5.0   # without the override the method does change something


def test_correction_sigma_smooths_the_contrastive_correction(scan, tmp_path):
    sharp, smooth = tmp_path / "sharp.nii.gz", tmp_path / "smooth.nii.gz"
    for out, extra in ((sharp, ()), (smooth, ("--correction-sigma", "3"))):
        assert run("super-resolve", scan, "-o", out, "--method", "contrastive", "--factor", "2", "--quiet",
                   "--device", "cpu", "--correction-sigma", "0", *extra) == 0
    assert not np.array_equal(read(sharp).array, read(smooth).array)


def test_old_correction_flag_still_works_with_a_warning(scan, tmp_path, capsys):
    new, old = tmp_path / "new.nii.gz", tmp_path / "old.nii.gz"
    assert run("super-resolve", scan, "-o", new, "--method", "ae", "--factor", "2", "--quiet",
               "--correction-gain", "0.5", "--device", "cpu") == 0
    assert run("super-resolve", scan, "-o", old, "--method", "ae", "--factor", "2", "--quiet",
               "--ae-correction-gain", "0.5", "--device", "cpu") == 0
    assert "--ae-correction-gain is deprecated" in capsys.readouterr().err
    assert np.array_equal(read(new).array, read(old).array)


def test_method_names_are_case_insensitive(scan, tmp_path):
    upper, lower = tmp_path / "upper.nii.gz", tmp_path / "lower.nii.gz"
    assert run("super-resolve", scan, "-o", upper, "--method", "LINEAR", "--factor", "2", "--quiet") == 0
    assert run("super-resolve", scan, "-o", lower, "--method", "linear", "--factor", "2", "--quiet") == 0
    assert np.array_equal(read(upper).array, read(lower).array)


def test_confidence_out_is_a_float_map_on_the_output_grid(scan, tmp_path):
    out, confidence = tmp_path / "flow.nii.gz", tmp_path / "confidence.nii.gz"
    # --no-resampling-check: the synthetic disc is nothing like the cardiac slices the cross-fade
    # detector knows, and it calls the stack re-sampled (confidence 0 everywhere; test_crossfade.py)
    assert run("super-resolve", scan, "-o", out, "--method", "flow", "--factor", "4", "--quiet",
               "--confidence-out", confidence, "--no-resampling-check") == 0
    result, trust = sitk.ReadImage(str(out)), sitk.ReadImage(str(confidence))
    assert trust.GetPixelID() == sitk.sitkFloat32
    assert trust.GetSize() == result.GetSize() and trust.GetSpacing() == result.GetSpacing()
    assert trust.GetOrigin() == result.GetOrigin() and trust.GetDirection() == result.GetDirection()
    values = sitk.GetArrayFromImage(trust)
    assert values.min() >= 0 and values.max() <= 1 and np.all(values[::4] == 1)  # acquired slices: 1
    assert values[1::4].mean() > 0.5  # the disc moves smoothly: flow is trusted


def test_confidence_out_is_refused_for_a_method_without_one(scan, tmp_path, capsys):
    assert run("super-resolve", scan, "-o", tmp_path / "o.nii.gz", "--method", "linear",
               "--confidence-out", tmp_path / "c.nii.gz") == 2
    assert "gives no confidence" in capsys.readouterr().err
    assert not list(tmp_path.glob("[oc].nii.gz"))


def test_clip_keeps_learned_output_in_the_input_range(scan, tmp_path):
    clipped, free = tmp_path / "clipped.nii.gz", tmp_path / "free.nii.gz"
    assert run("super-resolve", scan, "-o", clipped, "--method", "ae", "--factor", "2", "--quiet", "--device", "cpu") == 0
    assert run("super-resolve", scan, "-o", free, "--method", "ae", "--factor", "2", "--quiet", "--device", "cpu",
               "--no-clip") == 0
    low, high = read(scan).array.min(), read(scan).array.max()
    c, f = read(clipped).array, read(free).array
    assert c.min() >= low and c.max() <= high
    assert np.array_equal(np.clip(f, low, high), c)
