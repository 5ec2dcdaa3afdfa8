"""The ``latentsr`` command line end to end: real files in, files out, readable errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib.cli import main
from LatentSRLib.interpolate import upsample
from LatentSRLib.volume import Volume, read, write


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def small_file(tmp_path, oblique_volume):
    oblique_volume.array = np.rint(oblique_volume.array)
    return write(oblique_volume, tmp_path / "small.nii.gz")


def no_leftovers(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".latentsr-")]


@pytest.mark.parametrize("args, message", [
    (["--method", "cubic"], "unknown method 'cubic'"),
    (["--factor", "0"], "factor must be an integer of at least 1"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, small_file, capsys, args, message):
    out = tmp_path / "out.nii.gz"
    assert run_cli("super-resolve", small_file, "-o", out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and no_leftovers(tmp_path)


def test_bad_inputs_exit_2(tmp_path, capsys):
    cases = {
        "flat.nii.gz": sitk.Image(16, 16, sitk.sitkFloat32),                                  # 2D
        "one.nii.gz": sitk.GetImageFromArray(np.zeros((1, 16, 16), np.float32)),             # one slice
        # (ITK's NIfTI reader turns NaN into 0, so the NaN case is a MetaImage)
        "nan.mha": sitk.GetImageFromArray(np.where(np.eye(16) > 0, np.nan, 1).astype(np.float32)[None].repeat(4, 0)),
    }
    expected = {"flat.nii.gz": "2D image", "one.nii.gz": "single slice", "nan.mha": "NaN"}
    for name, image in cases.items():
        if name == "one.nii.gz":
            image.SetSpacing((1.4, 1.4, 10.0))
        sitk.WriteImage(image, str(tmp_path / name))
        out = tmp_path / f"out_{name}.nrrd"
        assert run_cli("super-resolve", tmp_path / name, "-o", out, "--method", "linear") == 2
        assert expected[name] in capsys.readouterr().err
        assert not out.exists()
    assert run_cli("super-resolve", tmp_path / "missing.nii.gz", "-o", tmp_path / "o.nii.gz") == 2
    assert "no such file" in capsys.readouterr().err
    assert no_leftovers(tmp_path)


def test_unwritable_output_fails_before_any_work(small_file, capsys):
    assert run_cli("super-resolve", small_file, "-o", "/proc/latentsr.nii.gz", "--method", "linear") == 2
    assert "not writable" in capsys.readouterr().err
    assert run_cli("super-resolve", small_file, "-o", small_file.parent / "nope" / "o.nii.gz") == 2
    assert "does not exist" in capsys.readouterr().err


def test_refuses_to_overwrite_the_input(small_file, capsys):
    before = small_file.read_bytes()
    assert run_cli("super-resolve", small_file, "-o", small_file, "--method", "linear", "--overwrite") == 2
    assert "input" in capsys.readouterr().err
    assert small_file.read_bytes() == before


def test_default_output_is_near_isotropic(tmp_path, small_file, capsys):
    out = tmp_path / "iso.nrrd"
    assert run_cli("super-resolve", small_file, "-o", out, "--method", "linear", "--quiet") == 0
    result = read(out)
    # 8 mm slices over 1.25 mm pixels: factor round(6.4) = 6.
    assert result.array.shape[1] == (6 - 1) * 6 + 1
    assert result.spacing[2] == pytest.approx(8.0 / 6)
    assert "x6" in capsys.readouterr().out


def test_console_script_runs(tmp_path, small_file):
    out = tmp_path / "o.mha"
    done = subprocess.run([sys.executable, "-m", "LatentSRLib.cli", "super-resolve", str(small_file), "-o", str(out),
                           "--method", "bspline", "--factor", "2"], capture_output=True, text=True,
                          encoding="utf-8", errors="replace", timeout=120)  # tqdm draws Unicode blocks
    assert done.returncode == 0, done.stderr
    assert "->" in done.stdout and out.exists()


@pytest.mark.integration
def test_raw_acdc_file_keeps_geometry_dtype_and_acquired_slices(tmp_path, data_dir):
    source = data_dir / "acdc" / "patient001" / "patient001_frame01.nii.gz"
    out = tmp_path / "p001_x2.nii.gz"
    assert run_cli("super-resolve", source, "-o", out, "--method", "linear", "--factor", "2", "--quiet") == 0
    image_in, image_out = sitk.ReadImage(str(source)), sitk.ReadImage(str(out))
    assert image_out.GetSize()[:2] == image_in.GetSize()[:2]
    assert image_out.GetSize()[2] == (image_in.GetSize()[2] - 1) * 2 + 1
    assert image_out.GetSpacing()[2] == pytest.approx(image_in.GetSpacing()[2] / 2)
    assert image_out.GetSpacing()[:2] == pytest.approx(image_in.GetSpacing()[:2])
    assert image_out.GetOrigin() == pytest.approx(image_in.GetOrigin(), abs=1e-4)
    assert image_out.GetDirection() == pytest.approx(image_in.GetDirection(), abs=1e-6)
    assert image_out.GetPixelID() == image_in.GetPixelID()
    a_in, a_out = sitk.GetArrayFromImage(image_in), sitk.GetArrayFromImage(image_out)
    np.testing.assert_array_equal(a_out[::2], a_in)
    # Synthesised slices: linear interpolation in the input's units, rounded to its integer type.
    expected = 0.5 * (a_in[:-1].astype(np.float64) + a_in[1:])
    assert np.abs(a_out[1::2] - expected).max() <= 1.0
    # The last slice position is unchanged: first + (n - 1) * spacing is the same physical point.
    last_in = image_in.TransformIndexToPhysicalPoint((0, 0, image_in.GetSize()[2] - 1))
    last_out = image_out.TransformIndexToPhysicalPoint((0, 0, image_out.GetSize()[2] - 1))
    assert last_out == pytest.approx(last_in, abs=1e-3)


@pytest.mark.integration
def test_4d_cine_every_frame_processed(tmp_path, data_dir):
    source = data_dir / "acdc_cine" / "patient001_4d.nii.gz"
    out = tmp_path / "cine_x2.nii.gz"
    assert run_cli("super-resolve", source, "-o", out, "--method", "lanczos", "--factor", "2", "--quiet") == 0
    image_in, image_out = sitk.ReadImage(str(source)), sitk.ReadImage(str(out))
    assert image_out.GetDimension() == 4
    size_in, size_out = image_in.GetSize(), image_out.GetSize()
    assert size_out == (size_in[0], size_in[1], (size_in[2] - 1) * 2 + 1, size_in[3])
    assert image_out.GetSpacing() == pytest.approx((*image_in.GetSpacing()[:2], image_in.GetSpacing()[2] / 2,
                                                    image_in.GetSpacing()[3]))
    a_in, a_out = sitk.GetArrayFromImage(image_in), sitk.GetArrayFromImage(image_out)
    np.testing.assert_array_equal(a_out[:, ::2], a_in)
    # Every frame was re-created from its own slices (independent 1D Lanczos per frame).
    for t in (0, size_in[3] // 2, size_in[3] - 1):
        expected = upsample(a_in[t], 2, "lanczos", axis=0)
        np.testing.assert_allclose(a_out[t, 1::2], expected[1::2], rtol=1e-4, atol=1e-2)


def test_folder_in_folder_out(tmp_path, oblique_volume):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        write(oblique_volume, inputs / f"{name}.nrrd")
    write(Volume(np.zeros((1, 6, 20, 24)), oblique_volume.spacing), inputs / "a_gt.nrrd")  # a mask: skipped
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli("super-resolve", inputs, "-o", out, "--method", "linear", "--factor", "2", "--quiet") == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["a_linear_x2.nii.gz", "b_linear_x2.nii.gz"]
    assert (out / "manifest.csv").is_file()  # folder runs are cohorts (Testing/test_cohort.py)


@pytest.mark.integration
def test_train_contrastive_command_writes_loadable_weights(tmp_path, data_dir):
    from LatentSRLib.models import registry
    scans = [data_dir / "cmrxmotion" / name for name in ("P001-1", "P002-1", "P003-1")]
    out = tmp_path / "c.pt"
    code = run_cli("train", "contrastive", "--hr", *scans, "--lr", *scans, "--out", out, "--epochs", "1",
                   "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--width", "8",
                   "--val-patients", "1", "--w-nce", "0.5", "--quiet")
    assert code == 0
    content = registry.load(str(out), "contrastive")
    assert content["config"]["width"] == 8


def test_set_correction_records_the_correction_options(tmp_path, small_file, capsys):
    """The copy carries the options (and super-resolves as the same run options would); bad values and
    overwriting are refused with one line."""
    import torch
    from LatentSRLib.models import registry
    from LatentSRLib.models.autoencoder import LatentInterpolationAE
    torch.manual_seed(0)
    model = LatentInterpolationAE(base_width=4, bottleneck_width=8, latent_channels=4)
    tiny = registry.save(tmp_path / "tiny.pt", "ae", model.config, model.state_dict(),
                         {"pixel_size": 1.4, "mode": "corrected"})
    out = tmp_path / "tuned.pt"
    assert run_cli("set-correction", tiny, "--correction-sigma", "2", "--correction-gain", "0.5", "--out", out) == 0
    meta = registry.load(out, "ae")["meta"]
    assert (meta["correction_sigma_mm"], meta["correction_gain"], meta["mode"]) == (2.0, 0.5, "corrected")
    recorded, explicit = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert run_cli("super-resolve", small_file, "-o", recorded, "--method", "ae", "--weights", out,
                   "--factor", "2", "--quiet") == 0
    assert run_cli("super-resolve", small_file, "-o", explicit, "--method", "ae", "--weights", tiny, "--factor", "2",
                   "--ae-correction-sigma", "2", "--ae-correction-gain", "0.5", "--quiet") == 0
    np.testing.assert_array_equal(read(recorded).array, read(explicit).array)
    capsys.readouterr()
    for args, message in [(["--correction-sigma", "-1"], "non-negative"), ([], "nothing to set"),
                          (["--correction-gain", "1"], "exists"), (["--kind", "contrastive", "--correction-gain", "1",
                                                                     "--overwrite"], "not for 'contrastive'")]:
        assert run_cli("set-correction", tiny, "--out", out, *args) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("gap_input", [False, True])
def test_train_motion_command_writes_loadable_weights_without_the_trainers_folders(tmp_path, gap_input):
    """Slice and time triplets of a small synthetic cine, two steps: a weights file the method loads,
    whose metadata names the data but not the folders it lay in; with --gap-input one more input
    channel (and --flow-prior and --residual-scale 0 recorded in its config; without, --farneback fast instead
    of the default fine), and a start from weights of the other kind is refused."""
    from LatentSRLib import phantom
    from LatentSRLib.models import registry
    from LatentSRLib.pipeline import Run, super_resolve
    cine = phantom.cine(frames=6, slices=5, size=48).acquired
    data = tmp_path / "private-folder"
    data.mkdir()
    write(cine, data / "cine.nii.gz")
    write(cine.with_array(cine.array[:1]), data / "scan.nii.gz")
    out = tmp_path / "m.pt"
    code = run_cli("train", "motion", "--slices", data / "scan.nii.gz", "--cines", data / "cine.nii.gz",
                   "--val-data", data / "scan.nii.gz", "--out", out, "--max-steps", "2", "--batch-size", "2",
                   "--max-examples", "12", "--threads", "1", "--quiet", *(["--gap-input", "--flow-prior", "--residual-scale", "0"] if gap_input else ["--farneback", "fast"]))
    assert code == 0
    content = registry.load(str(out), "motion")
    assert content["config"]["in_channels"] == 9 + gap_input
    assert content["config"]["farneback"] == ("fine" if gap_input else "fast")
    assert content["config"]["flow_prior"] is gap_input
    assert content["config"]["residual_scale"] == (0.0 if gap_input else 0.1)
    recorded = content["meta"]["config"]
    assert recorded["slices"] == ["scan.nii.gz"] and recorded["cines"] == ["cine.nii.gz"]
    assert "private-folder" not in repr(content["meta"])
    result = super_resolve(cine.with_array(cine.array[:1]), "motion", factor=2, run=Run(weights=str(out)))
    assert result.array.shape[1] == 9 and np.isfinite(result.array).all()
    if gap_input:  # the bundled refiner takes no gap: fine-tuning it with --gap-input is refused
        code = run_cli("train", "motion", "--slices", data / "scan.nii.gz", "--out", tmp_path / "n.pt",
                       "--init", "motion-acdc", "--gap-input", "--farneback", "fine", "--max-steps", "1", "--max-examples", "4", "--quiet")
        assert code == 2


def test_train_contrastive_fast_distils_a_teacher_into_a_student_the_method_loads(tmp_path):
    """`latentsr train contrastive-fast`: a small teacher, a few steps; the student file carries its
    teacher's digest and runs through the contrastive method; a student is refused as a teacher."""
    import torch
    from LatentSRLib import phantom
    from LatentSRLib.models import registry
    from LatentSRLib.models.contrastive import ContrastiveSR
    from LatentSRLib.pipeline import Run, super_resolve
    torch.manual_seed(0)
    teacher = ContrastiveSR(width=8, encoder_blocks=1, decoder_blocks=1, projection_dim=8)
    teacher_file = registry.save(tmp_path / "teacher.pt", "contrastive", teacher.config, teacher.state_dict(),
                                 {"pixel_size": 1.4})
    cine = phantom.cine(frames=2, slices=5, size=104, pixel_size=1.4, factor=1).acquired  # windows of 96 pixels
    (tmp_path / "scans").mkdir()
    write(cine.with_array(cine.array[:1]), tmp_path / "scans" / "patient001_frame01.nii.gz")
    write(cine.with_array(cine.array[1:]), tmp_path / "scans" / "patient002_frame01.nii.gz")
    out = tmp_path / "fast.pt"
    assert run_cli("train", "contrastive-fast", "--data", tmp_path / "scans", "--teacher", teacher_file, "--out", out,
                   "--val-patients", "patient002", "--steps", "3", "--quiet") == 0
    content = registry.load(str(out), "contrastive")
    assert content["config"]["architecture"] == "in-between"
    assert content["meta"]["teacher"]["sha256"] == registry.sha256(teacher_file)
    result = super_resolve(cine.with_array(cine.array[:1]), "contrastive", factor=2, run=Run(weights=str(out)))
    assert result.array.shape[1] == 9 and np.isfinite(result.array).all()
    assert run_cli("train", "contrastive-fast", "--data", tmp_path / "scans", "--teacher", out,
                   "--out", tmp_path / "again.pt", "--steps", "1", "--quiet") == 2
