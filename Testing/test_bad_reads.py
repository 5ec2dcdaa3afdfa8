"""Read only what was given, and all of it: the reader gate every format passes (issue #29, read side).

Real command-line runs in-process (``LatentSRLib.cli.main``), as in test_bad_inputs.py: a bad input
gets one line and exit code 2, and no output; a good one is read whole, in its own type. Each group
names the item of issue #29 it covers; every one of them failed (exit 0 with a wrong result, or a
refusal of a good input) before the reading work.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib.cli import main
from test_volume import write_dicom_series

SPACING = (1.5, 1.25, 8.0)


def image(array: np.ndarray, spacing=SPACING) -> sitk.Image:
    result = sitk.GetImageFromArray(array)
    result.SetSpacing(spacing)
    return result


def samples(dtype=np.float32, shape=(6, 20, 24)) -> np.ndarray:
    return np.random.default_rng(0).normal(100, 20, shape).astype(dtype)


def run(capsys, source, output, *extra) -> tuple[int, str]:
    code = main(["super-resolve", str(source), "-o", str(output), "--method", "linear", "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    return code, err


def refused(capsys, source, output: Path, fragment: str, *extra) -> str:
    """Exit 2, one line holding ``fragment``, no traceback, no output."""
    code, err = run(capsys, source, output, *extra)
    assert code == 2, err
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not output.exists() and not [p for p in output.parent.iterdir() if p.name.startswith(".latentsr")]
    return err


# --- #3: NIfTI pairs (.hdr + .img) pass the same checks as single-file NIfTI --------------------------

def nifti_pair(folder: Path, array: np.ndarray | None = None) -> Path:
    """A NIfTI pair written by ITK (as Slicer would write one): ``scan.hdr`` + ``scan.img``."""
    path = folder / "scan.hdr"
    sitk.WriteImage(image(samples() if array is None else array), str(path))
    assert (folder / "scan.img").exists()
    return path


def test_a_short_pair_image_file_is_refused_not_zero_filled(tmp_path, capsys):
    header = nifti_pair(tmp_path)
    data = (tmp_path / "scan.img").read_bytes()
    (tmp_path / "scan.img").write_bytes(data[: len(data) // 2])
    refused(capsys, header, tmp_path / "out.nii.gz", "truncated")


def test_nan_in_a_pair_is_refused_not_read_as_zero(tmp_path, capsys):
    array = samples()
    array.flat[37] = np.nan
    refused(capsys, nifti_pair(tmp_path, array), tmp_path / "out.nii.gz", "NaN")


@pytest.mark.parametrize("value", [0.0, np.nan])
def test_a_pair_without_a_slice_spacing_is_refused_not_read_as_1_mm(tmp_path, capsys, value):
    header = nifti_pair(tmp_path)
    raw = bytearray(header.read_bytes())
    # NIfTI-1: pixdim is float32[8] at byte 76; pixdim[3] is the slice spacing (little-endian as ITK writes)
    assert struct.unpack_from("<f", raw, 76 + 3 * 4)[0] == pytest.approx(8.0)
    struct.pack_into("<f", raw, 76 + 3 * 4, value)
    header.write_bytes(bytes(raw))
    refused(capsys, header, tmp_path / "out.nii.gz", "no usable voxel spacing")


def test_a_good_pair_is_super_resolved_with_its_slices_bit_for_bit(tmp_path, capsys):
    array = samples()
    out = tmp_path / "out.nii.gz"
    code, err = run(capsys, nifti_pair(tmp_path, array), out, "--factor", "2")
    assert code == 0, err
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    np.testing.assert_array_equal(result[::2], array)


def test_a_folder_run_takes_a_pair_by_its_header_once(tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    array = samples()
    nifti_pair(folder, array)
    code = main(["super-resolve", str(folder), "-o", f"{tmp_path / 'out'}/", "--method", "linear", "--factor", "2",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").glob("*.nii.gz")] == ["scan_linear_x2.nii.gz"]
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "scan_linear_x2.nii.gz")))
    np.testing.assert_array_equal(result[::2], array)


# --- #4: every DICOM slice is read, or the run is refused naming the damaged file ---------------------

def dicom_series(folder: Path, slices: int = 16) -> list[Path]:
    from LatentSRLib.volume import Volume
    array = np.random.default_rng(1).integers(0, 1000, (slices, 20, 24)).astype(np.float32)
    write_dicom_series(folder, Volume(array, SPACING, pixel_type=np.int16))
    return sorted(folder.glob("*.dcm"))


@pytest.mark.parametrize("which", [0, -1], ids=["first", "last"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "zeroed"])
def test_a_damaged_first_or_last_dicom_file_is_named_not_left_out(tmp_path, capsys, which, damage):
    folder = tmp_path / "series"
    folder.mkdir()
    victim = dicom_series(folder)[which]
    data = victim.read_bytes()
    victim.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                        "zeroed": data[:300] + bytes(len(data) - 300)}[damage])
    err = refused(capsys, folder, tmp_path / "out.nii.gz", victim.name)
    assert "refusing to leave a slice out" in err


def test_a_whole_dicom_series_is_still_read(tmp_path, capsys):
    folder = tmp_path / "series"
    folder.mkdir()
    dicom_series(folder)
    code, err = run(capsys, folder, tmp_path / "out.nii.gz", "--factor", "2")
    assert code == 0, err
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetSize()[2] == 31  # all 16 slices, (16 - 1) * 2 + 1


# --- #6: a header's detached data file only beside or below it, unless allowed ------------------------

def detached(folder: Path, suffix: str) -> tuple[Path, np.ndarray]:
    """An uncompressed ``scan.nhdr`` / ``scan.mhd`` with its ``scan.raw`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    array = samples()
    path = folder / f"scan{suffix}"
    sitk.WriteImage(image(array), str(path), useCompression=False)
    assert (folder / "scan.raw").exists()
    return path, array


def point_data_file(header: Path, target: str) -> None:
    """Make the header name ``target`` as its data file."""
    text = header.read_text()
    field = "data file: scan.raw" if header.suffix == ".nhdr" else "ElementDataFile = scan.raw"
    assert field in text, text
    header.write_text(text.replace(field, field.replace("scan.raw", target)))


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_a_data_file_outside_the_header_folder_is_refused_unless_allowed(tmp_path, capsys, suffix, where):
    header, _ = detached(tmp_path / "given", suffix)
    # Someone else's file of the right size (here: another scan) outside what was given
    _, theirs = detached(tmp_path / "elsewhere", suffix)
    (tmp_path / "given" / "scan.raw").unlink()
    target = str(tmp_path / "elsewhere" / "scan.raw") if where == "absolute" else "../elsewhere/scan.raw"
    point_data_file(header, target)
    out = tmp_path / "out" / "result.nrrd"
    out.parent.mkdir()
    err = refused(capsys, header, out, "outside the header's folder")
    assert target in err and "--allow-external-data" in err
    # The user may allow it: then the bytes are read and the run goes through
    code, err = run(capsys, header, out, "--factor", "2", "--allow-external-data")
    assert code == 0, err
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out)))[::2], theirs)


@pytest.mark.parametrize("suffix, field", [
    (".nhdr", "data file: LIST\nscan.raw\n../elsewhere/scan.raw"),
    (".nhdr", "data file: ../elsewhere/slice%d.raw 1 6 1 2"),
    (".mhd", "ElementDataFile = LIST\nscan.raw\n../elsewhere/scan.raw"),
    (".mhd", "ElementDataFile = ../elsewhere/slice%d.raw 1 6 1")], ids=["nrrd-list", "nrrd-pattern", "mhd-list",
                                                                      "mhd-pattern"])
def test_data_file_lists_and_patterns_are_checked_too(tmp_path, capsys, suffix, field):
    header, _ = detached(tmp_path / "given", suffix)
    detached(tmp_path / "elsewhere", suffix)
    point_data_file(header, "PLACEHOLDER")
    header.write_text(header.read_text().replace(
        "data file: PLACEHOLDER" if suffix == ".nhdr" else "ElementDataFile = PLACEHOLDER", field))
    refused(capsys, header, tmp_path / "result.nrrd", "outside the header's folder")


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_a_data_file_that_is_a_link_out_of_the_folder_is_refused(tmp_path, capsys, suffix):
    header, _ = detached(tmp_path / "given", suffix)
    _, _ = detached(tmp_path / "elsewhere", suffix)
    (tmp_path / "given" / "scan.raw").unlink()
    os.symlink(tmp_path / "elsewhere" / "scan.raw", tmp_path / "given" / "scan.raw")
    refused(capsys, header, tmp_path / "result.nrrd", "outside the header's folder")


def test_a_pair_image_file_that_is_a_link_out_of_the_folder_is_refused(tmp_path, capsys):
    (tmp_path / "given").mkdir()
    (tmp_path / "elsewhere").mkdir()
    header = nifti_pair(tmp_path / "given")
    nifti_pair(tmp_path / "elsewhere")
    (tmp_path / "given" / "scan.img").unlink()
    os.symlink(tmp_path / "elsewhere" / "scan.img", tmp_path / "given" / "scan.img")
    refused(capsys, header, tmp_path / "result.nrrd", "outside the header's folder")


@pytest.mark.parametrize("suffix", [".nhdr", ".mhd"])
def test_a_data_file_below_the_header_is_read(tmp_path, capsys, suffix):
    header, array = detached(tmp_path / "given", suffix)
    (tmp_path / "given" / "data").mkdir()
    (tmp_path / "given" / "scan.raw").rename(tmp_path / "given" / "data" / "scan.raw")
    point_data_file(header, "data/scan.raw")
    out = tmp_path / "result.nrrd"
    code, err = run(capsys, header, out, "--factor", "2")
    assert code == 0, err
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out)))[::2], array)


# --- #10: NRRD headers are read whole ---------------------------------------------------------------

def long_header(folder: Path, directions: str | None) -> Path:
    """A detached NRRD whose fields follow 100 KB of comments (past the 64 KB once read)."""
    header, _ = detached(folder, ".nhdr")
    lines = header.read_text().splitlines()
    comments = [f"# acquisition note {k}: " + "x" * 90 for k in range(1000)]
    body = [line if directions is None or not line.startswith("space directions:")
            else f"space directions: {directions}" for line in lines[1:]]
    header.write_text("\n".join([lines[0], *comments, *body]) + "\n")
    assert header.stat().st_size > 100_000
    return header


def test_a_nan_spacing_after_a_long_nrrd_header_is_refused(tmp_path, capsys):
    header = long_header(tmp_path / "in", "(1.5,0,0) (0,1.25,0) (0,0,nan)")
    refused(capsys, header, tmp_path / "out.nrrd", "no usable voxel spacing")


def test_a_long_nrrd_header_with_a_good_spacing_is_read(tmp_path, capsys):
    code, err = run(capsys, long_header(tmp_path / "in", None), tmp_path / "out.nrrd", "--factor", "2")
    assert code == 0, err
    assert sitk.ReadImage(str(tmp_path / "out.nrrd")).GetSpacing() == pytest.approx((1.5, 1.25, 4.0))


# --- #11: samples in their own type: exact round trips, checks in the input's dtype --------------------

EXACT = {  # values float32 cannot hold: each would be rounded, flushed to 0, overflow, or collapse
    "float64": lambda rng, shape: rng.normal(100, 20, shape) * (1 + 1e-12),
    "float64-tiny": lambda rng, shape: rng.normal(100, 20, shape) * 1e-302,
    "float64-huge": lambda rng, shape: rng.normal(100, 20, shape) * 1e300,
    "int32": lambda rng, shape: rng.integers(2**24, 2**24 + 4000, shape, dtype=np.int32) | 1,
    "int64": lambda rng, shape: rng.integers(2**40, 2**40 + 4000, shape, dtype=np.int64) | 1,
    "int64-few-float32-values": lambda rng, shape: rng.integers(2**50, 2**50 + 100, shape, dtype=np.int64),
}


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("kind", list(EXACT))
def test_acquired_slices_come_back_bit_for_bit_in_the_input_type(tmp_path, capsys, kind, suffix):
    array = EXACT[kind](np.random.default_rng(0), (6, 20, 24))
    source, out = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    sitk.WriteImage(image(array), str(source))
    code, err = run(capsys, source, out, "--factor", "2")
    assert code == 0, err  # before: "NaN or infinite" (huge), "a label map" (int64), or a wrong result
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert result.dtype == array.dtype
    np.testing.assert_array_equal(result[::2], array)  # the acquired slices, bit for bit
    between = result[1::2].astype(np.float64)
    assert np.isfinite(between).all()
    # the new slices lie between their neighbours (linear interpolation), in the input's own units
    low, high = np.minimum(array[:-1], array[1:]), np.maximum(array[:-1], array[1:])
    scale = np.abs(array).max()
    assert (between >= low - 1e-6 * scale).all() and (between <= high + 1e-6 * scale).all()


def test_int64_beyond_what_float64_holds_is_refused(tmp_path, capsys):
    array = np.full((6, 20, 24), 2**60, np.int64) + np.arange(6 * 20 * 24).reshape(6, 20, 24)
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(image(array), str(source))
    refused(capsys, source, tmp_path / "out.nrrd", "beyond 2**53")


# --- also seen: a factor of 1 is nothing to do ----------------------------------------------------

@pytest.mark.parametrize("spacing, extra", [(SPACING, ["--spacing", "10"]), (SPACING, ["--spacing", "6"]),
                                            ((1.0, 1.0, 1.0), []), ((1.0, 1.0, 1.2), [])],
                         ids=["spacing-above-slice-spacing", "spacing-rounding-to-1", "isotropic", "near-isotropic"])
def test_a_run_that_would_copy_the_input_is_refused(tmp_path, capsys, spacing, extra):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(image(samples(), spacing), str(source))
    refused(capsys, source, tmp_path / "out.nrrd", "nothing to do", *extra)


def test_an_explicit_factor_1_still_copies_and_a_folder_run_records_nothing_to_do(tmp_path, capsys):
    source = tmp_path / "in" / "iso.nrrd"
    source.parent.mkdir()
    sitk.WriteImage(image(samples(), (1.0, 1.0, 1.0)), str(source))
    sitk.WriteImage(image(samples()), str(tmp_path / "in" / "scan.nrrd"))
    code, err = run(capsys, source, tmp_path / "copy.nrrd", "--factor", "1")  # asked for: a copy
    assert code == 0, err
    # In a folder run the isotropic study is skipped with the reason (not a failure, not a copy); the other is done
    code = main(["super-resolve", str(source.parent), "-o", f"{tmp_path / 'out'}/", "--method", "linear", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "1 done, 1 skipped" in printed and f"note: {source}: nothing to do" in printed, printed
    rows = {row.split(",")[0]: row for row in (tmp_path / "out" / "manifest.csv").read_text().splitlines()}
    assert "skipped" in rows[str(source)] and "nothing to do" in rows[str(source)]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["scan_linear_x6.nii.gz"]  # round(8 / 1.25)
