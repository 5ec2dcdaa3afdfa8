"""Volume I/O and geometry: every format round-trips samples and geometry exactly."""

from __future__ import annotations

import locale
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib import LatentSRError
from LatentSRLib.volume import (Volume, find_images, from_sitk, read, resample_inplane, slice_axis, to_sitk,
                                validate, write)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_samples_and_geometry(tmp_path, oblique_volume, suffix):
    oblique_volume.array = np.rint(oblique_volume.array)
    path = write(oblique_volume, tmp_path / f"v{suffix}")
    back = read(path)
    np.testing.assert_array_equal(back.array, oblique_volume.array)
    np.testing.assert_allclose(back.spacing, oblique_volume.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, oblique_volume.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-6)
    assert back.pixel_type == np.int16


def test_4d_round_trip_keeps_time_last(tmp_path):
    array = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    volume = Volume(array, (1.4, 1.4, 10.0), (1, 2, 3), np.eye(3), np.float32, time_spacing=0.04, is_4d=True)
    path = write(volume, tmp_path / "cine.nii.gz")
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 4 and image.GetSize() == (6, 5, 4, 3)
    back = read(path)
    np.testing.assert_array_equal(back.array, array)
    assert back.is_4d and back.time_spacing == pytest.approx(0.04)


def write_dicom_series(folder, volume: Volume, series_uid: str = "1.2.826.0.1.3680043.2.1125.1") -> None:
    """One DICOM file a slice, with the geometry tags GDCM orders a series by."""
    image = to_sitk(volume)
    for k in range(image.GetDepth()):
        write_dicom_slice(folder / f"{series_uid[-1]}_{k:03d}.dcm", image, k,
                          {"0020|0013": str(k), "0020|000e": series_uid})


def write_dicom_slice(file, image: sitk.Image, k: int, tags: dict[str, str]) -> None:
    """Slice ``k`` of a 3D image as one DICOM file: its position, orientation and pixel size in the
    geometry tags, plus ``tags`` (series UID, instance number, trigger time...)."""
    s = image[:, :, k]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    s.SetMetaData("0020|0032", _decimals(image.TransformIndexToPhysicalPoint((0, 0, k))))
    s.SetMetaData("0020|0037", _decimals(direction[:, 0].tolist() + direction[:, 1].tolist()))
    s.SetMetaData("0028|0030", f"{image.GetSpacing()[1]}\\{image.GetSpacing()[0]}")
    for tag, value in tags.items():
        s.SetMetaData(tag, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(file))
    saved = locale.setlocale(locale.LC_ALL)
    try:
        writer.Execute(s)
    finally:  # GDCM's writer sets the process locale to "C": later tests would read text as ASCII
        locale.setlocale(locale.LC_ALL, saved)


def _decimals(values) -> str:
    # A DICOM decimal string holds at most 16 characters (GDCM rewrites longer ones in some files).
    return "\\".join(f"{v:.12g}" for v in values)


def test_dicom_series_is_read_from_a_folder(tmp_path, oblique_volume):
    write_dicom_series(tmp_path, oblique_volume)
    back = read(tmp_path)
    np.testing.assert_array_equal(back.array, to_sitk_array(oblique_volume))
    np.testing.assert_allclose(back.spacing, oblique_volume.spacing, rtol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-4)
    assert find_images([tmp_path]) == [tmp_path]


def test_a_folder_of_two_dicom_series_is_refused_not_half_read(tmp_path, oblique_volume):
    write_dicom_series(tmp_path, oblique_volume, "1.2.826.0.1.3680043.2.1125.1")
    write_dicom_series(tmp_path, oblique_volume, "1.2.826.0.1.3680043.2.1125.2")
    n = oblique_volume.n_slices
    with pytest.raises(LatentSRError, match=f"holds 2 DICOM series \\({n} files, {n} files\\): put each"):
        read(tmp_path)


def to_sitk_array(volume: Volume) -> np.ndarray:
    return sitk.GetArrayFromImage(to_sitk(volume))[None].astype(np.float32)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(LatentSRError, match="no such file"):
        read(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(LatentSRError, match="cannot read"):
        read(tmp_path / "junk.nii.gz")
    with pytest.raises(LatentSRError, match="2D image"):
        from_sitk(sitk.Image(8, 8, sitk.sitkFloat32))
    one_slice = Volume(np.zeros((1, 1, 8, 8)), (1, 1, 5))
    with pytest.raises(LatentSRError, match="single slice"):
        validate(one_slice)
    nans = Volume(np.full((1, 3, 8, 8), np.nan), (1, 1, 5))
    with pytest.raises(LatentSRError, match="NaN"):
        validate(nans)
    with pytest.raises(LatentSRError, match="file format"):
        write(Volume(np.zeros((1, 3, 4, 4)), (1, 1, 1)), tmp_path / "out.xyz")


def test_write_never_replaces_the_input(tmp_path, oblique_volume):
    path = write(oblique_volume, tmp_path / "in.nrrd")
    with pytest.raises(LatentSRError, match="input"):
        write(oblique_volume, path, protect=[path])


def test_slice_axis_is_the_largest_spacing():
    assert slice_axis(Volume(np.zeros((1, 3, 4, 5)), (1.4, 1.4, 10))) == 0
    assert slice_axis(Volume(np.zeros((1, 3, 4, 5)), (8.0, 1.4, 1.4))) == 2


def test_inplane_resampling_keeps_field_of_view_and_returns_to_the_grid(oblique_volume):
    there = resample_inplane(oblique_volume, 1.0)
    assert there.spacing == (1.0, 1.0, 8.0)
    assert there.array.shape == (1, 6, 25, 36)  # 20 * 1.25 and 24 * 1.5
    # The field of view's centre stays where it was.
    def centre(v):
        size = np.array(v.array.shape[:0:-1]) - 1
        return np.asarray(v.origin) + v.direction @ (size / 2 * np.asarray(v.spacing))
    np.testing.assert_allclose(centre(there), centre(oblique_volume), atol=1e-6)
    back = resample_inplane(there, 1.0, reference=oblique_volume)
    assert back.array.shape == oblique_volume.array.shape
    np.testing.assert_allclose(back.origin, oblique_volume.origin)


def test_acdc_files_read_quietly_with_their_geometry(data_dir, capfd):
    path = data_dir / "acdc" / "patient001" / "patient001_frame01.nii.gz"
    volume = read(path)
    assert volume.array.shape[1] == 10 and volume.spacing[2] == pytest.approx(10.0)
    assert "sform" not in capfd.readouterr().err  # ITK's warning about ACDC's sform is silenced


# --- reading whole files (issue #16) ---------------------------------------------------------------

def _sitk_volume(path) -> Volume:
    """What reading gave before nibabel: SimpleITK's own reader (the reference for valid files)."""
    return from_sitk(sitk.ReadImage(str(path)))


def _assert_same(a: Volume, b: Volume) -> None:
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == b.spacing and a.origin == b.origin and a.pixel_type == b.pixel_type
    np.testing.assert_array_equal(a.direction, b.direction)
    assert (a.is_4d, a.time_spacing, a.time_origin) == (b.is_4d, b.time_spacing, b.time_origin)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_reads_exactly_as_simpleitk_for_valid_files(tmp_path, oblique_volume, suffix):
    import nibabel
    oblique_volume.array = np.rint(oblique_volume.array)
    cine = Volume(np.random.default_rng(1).random((3, 4, 5, 6)), (1.4, 1.3, 10.0), (1, 2, 3), np.eye(3), np.float32,
                  time_spacing=0.04, is_4d=True)
    paths = [write(oblique_volume, tmp_path / f"oblique{suffix}"), write(cine, tmp_path / f"cine{suffix}")]
    # Scaled integers (scl_slope/inter): ITK and nibabel both return float32 samples.
    scaled = nibabel.Nifti1Image(np.arange(24 * 20 * 6, dtype=np.int16).reshape(24, 20, 6), np.diag([1.5, 1.2, 7, 1]))
    scaled.header.set_slope_inter(0.37, -3.0)
    nibabel.save(scaled, str(tmp_path / f"scaled{suffix}"))
    paths.append(tmp_path / f"scaled{suffix}")
    for path in paths:
        _assert_same(read(path), _sitk_volume(path))


@pytest.mark.integration
def test_real_nifti_files_read_exactly_as_simpleitk(data_dir):
    paths = [data_dir / "acdc" / "patient001" / "patient001_frame01.nii.gz",      # int16, oblique sform
             data_dir / "acdc" / "patient001" / "patient001_frame01_gt.nii.gz",   # uint8 mask
             sorted((data_dir / "acdc_cine").glob("*.nii.gz"))[0],                 # 4D float
             data_dir / "cmrxmotion" / "P001-1" / sorted(p.name for p in (data_dir / "cmrxmotion" / "P001-1").iterdir()
                                                          if p.name.endswith(".nii.gz"))[0]]
    for path in paths:
        _assert_same(read(path), _sitk_volume(path))


def test_validate_refuses_nan_and_infinite_spacing():
    for spacing in ((1.0, 1.0, np.nan), (1.0, np.inf, 5.0), (0.0, 1.0, 5.0)):
        with pytest.raises(LatentSRError, match="unusable voxel spacing"):
            validate(Volume(np.zeros((1, 3, 8, 8)), spacing))


def test_reading_refuses_nan_values_in_every_format(tmp_path):
    image = sitk.GetImageFromArray(np.where(np.eye(8) > 0, np.nan, 1).astype(np.float32)[None].repeat(3, 0))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        sitk.WriteImage(image, str(tmp_path / f"nan{suffix}"))
        with pytest.raises(LatentSRError, match=" 24 NaN or infinite values"):
            read(tmp_path / f"nan{suffix}")


# --- writing: exclusive, atomic, tagged, usual permissions ------------------------------------------

def test_header_and_data_formats_are_written_whole_with_the_usual_permissions(tmp_path, oblique_volume):
    mask = os.umask(0o027)
    try:
        for suffix, data in ((".nhdr", "v.raw"), (".mhd", "v.raw")):
            folder = tmp_path / suffix[1:]
            folder.mkdir()
            write(oblique_volume, folder / f"v{suffix}")
            assert sorted(p.name for p in folder.iterdir()) == sorted([f"v{suffix}", data])
            for path in folder.iterdir():
                assert path.stat().st_mode & 0o777 == 0o640  # 0666 under the umask, as open() gives
            np.testing.assert_array_equal(read(folder / f"v{suffix}").array, np.rint(oblique_volume.array))
    finally:
        os.umask(mask)


def test_write_is_exclusive_without_overwrite(tmp_path, oblique_volume):
    path = write(oblique_volume, tmp_path / "v.nrrd")
    with pytest.raises(LatentSRError, match="exists"):
        write(oblique_volume, path, overwrite=False)
    assert write(oblique_volume, path, overwrite=True) == path
    assert [p.name for p in tmp_path.iterdir()] == ["v.nrrd"]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".nhdr"])
def test_folder_inputs_skip_tagged_outputs_and_staging_entries(tmp_path, oblique_volume, suffix):
    write(oblique_volume, tmp_path / f"scan{suffix}")
    write(oblique_volume, tmp_path / f"scan_linear_x2{suffix}", tag="linear x2")
    staging = tmp_path / ".latentsr-1-abc"
    staging.mkdir()
    write(oblique_volume, staging / f"partial{suffix}")
    (tmp_path / f".latentsr-old{suffix}").write_bytes(b"partial")
    assert find_images([tmp_path]) == [tmp_path / f"scan{suffix}"]
    assert read(tmp_path / f"scan_linear_x2{suffix}").array.shape == oblique_volume.array.shape  # still readable


def test_stale_staging_entries_are_cleaned_only_when_dead_and_old(tmp_path):
    from LatentSRLib import atomic
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    entries = {"mine": tmp_path / f".latentsr-{os.getpid()}-a", "dead": tmp_path / f".latentsr-{dead.pid}-b",
               "unknown": tmp_path / ".latentsr-xyz.tmp"}
    for entry in entries.values():
        entry.mkdir() if entry.name != ".latentsr-xyz.tmp" else entry.write_bytes(b"")
    now = time.time()
    assert atomic.clean_stale(tmp_path, now=now + 10) == []                     # all fresh
    assert atomic.clean_stale(tmp_path, now=now + 120) == [entries["dead"]]    # dead and a minute old
    assert atomic.clean_stale(tmp_path, now=now + 7200) == [entries["unknown"]]  # no pid: an hour
    assert entries["mine"].exists()                                              # a live owner's: never


# --- memory ------------------------------------------------------------------------------------------

def test_memory_check_names_the_limit_and_the_largest_factor():
    from LatentSRLib import memory
    shape = (1, 10, 256, 256)
    need = memory.estimate_bytes(shape, 4)
    assert need == memory.OUTPUT_COPIES * 4 * 37 * 256 * 256
    assert memory.check_output_fits(shape, 4, available=need) == need
    with pytest.raises(LatentSRError, match=r"factor 100000 .* more than the 1.0 GB available: the largest "
                                            r"factor that fits is about \d+") as error:
        memory.check_output_fits(shape, 100000, available=10 ** 9)
    largest = int(str(error.value).split("about ")[-1].split()[0])
    assert memory.check_output_fits(shape, largest, available=10 ** 9) <= 10 ** 9
    with pytest.raises(LatentSRError):
        memory.check_output_fits(shape, largest + 1, available=10 ** 9)
    assert memory.estimate_bytes(shape, 4, learned=True) > need
    assert memory.available_bytes() is None or memory.available_bytes() > 0
