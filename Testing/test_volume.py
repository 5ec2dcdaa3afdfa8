"""Volume I/O and geometry: every format round-trips samples and geometry exactly."""

from __future__ import annotations

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


def test_dicom_series_is_read_from_a_folder(tmp_path, oblique_volume):
    image = to_sitk(oblique_volume)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        s.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        s.SetMetaData("0020|0037", "\\".join(map(str, oblique_volume.direction[:, 0].tolist()
                                                  + oblique_volume.direction[:, 1].tolist())))
        s.SetMetaData("0020|0013", str(k))
        s.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        s.SetMetaData("0028|0030", f"{oblique_volume.spacing[1]}\\{oblique_volume.spacing[0]}")
        writer.SetFileName(str(tmp_path / f"{k:03d}.dcm"))
        writer.Execute(s)
    back = read(tmp_path)
    np.testing.assert_array_equal(back.array, to_sitk_array(oblique_volume))
    np.testing.assert_allclose(back.spacing, oblique_volume.spacing, rtol=1e-4)
    np.testing.assert_allclose(back.direction, oblique_volume.direction, atol=1e-4)
    assert find_images([tmp_path]) == [tmp_path]


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
