"""DICOM folders: a 3D series, or a cine as one series or one series per slice position, read with
exact geometry; what cannot be one evenly spaced stack is refused with one line naming it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LatentSRLib import LatentSRError
from LatentSRLib.cli import main
from LatentSRLib.volume import Volume, find_images, read, to_sitk
from test_volume import write_dicom_series, write_dicom_slice

SERIES = "1.2.826.0.1.3680043.2.1125.7"
PHASES, POSITIONS = 4, 3
TRIGGER_STEP_MS, FIRST_TRIGGER_MS = 45.0, 12.0


@pytest.fixture
def cine(oblique_volume) -> Volume:
    """4 phases x 3 slice positions, every (phase, position) with its own int16 samples."""
    rng = np.random.default_rng(3)
    array = rng.integers(-500, 3000, size=(PHASES, POSITIONS, 20, 24)).astype(np.float32)
    return Volume(array, oblique_volume.spacing, oblique_volume.origin, oblique_volume.direction, np.int16,
                  time_spacing=TRIGGER_STEP_MS / 1000, time_origin=FIRST_TRIGGER_MS / 1000, is_4d=True)


def write_cine(folder, cine: Volume, one_series_per_position: bool = False, tags=None, skip=None) -> None:
    """Every (phase, position) image but ``skip`` as a file, in a shuffled order of names and
    instance numbers. ``tags(t, z)`` gives the phase tags of an image (default: its trigger time).
    """
    tags = tags or (lambda t, z: {"0018|1060": str(FIRST_TRIGGER_MS + t * TRIGGER_STEP_MS)})
    frames = [to_sitk(Volume(cine.array[t], cine.spacing, cine.origin, cine.direction, cine.pixel_type))
              for t in range(cine.n_frames)]
    order = np.random.default_rng(5).permutation([(t, z) for t in range(cine.n_frames) for z in range(cine.n_slices)])
    for number, (t, z) in enumerate(order.tolist()):
        if (t, z) == skip:
            continue
        uid = f"{SERIES}.{z + 1}" if one_series_per_position else SERIES
        write_dicom_slice(folder / f"im{number:03d}.dcm", frames[t], z,
                          {"0020|000e": uid, "0020|0013": str(number + 1), **tags(t, z)})


def assert_same(a: Volume, b: Volume) -> None:
    np.testing.assert_array_equal(a.array, b.array)
    assert (a.spacing, a.origin, a.pixel_type) == (b.spacing, b.origin, b.pixel_type)
    np.testing.assert_array_equal(a.direction, b.direction)
    assert (a.is_4d, a.time_spacing, a.time_origin) == (b.is_4d, b.time_spacing, b.time_origin)


def test_a_single_series_cine_is_read_as_4d_with_exact_geometry(tmp_path, cine):
    write_cine(tmp_path, cine)
    back = read(tmp_path)
    assert back.is_4d and back.array.shape == (PHASES, POSITIONS, 20, 24)
    np.testing.assert_array_equal(back.array, cine.array)  # every voxel at its (phase, position)
    assert back.pixel_type == np.int16
    assert back.spacing == pytest.approx(cine.spacing, abs=1e-9)  # z: the 8 mm between positions
    np.testing.assert_allclose(back.origin, cine.origin, atol=1e-9)
    np.testing.assert_allclose(back.direction, cine.direction, atol=1e-9)
    assert back.time_spacing == pytest.approx(TRIGGER_STEP_MS / 1000)
    assert back.time_origin == pytest.approx(FIRST_TRIGGER_MS / 1000)
    # Each frame has exactly the geometry ITK gives the same slices read as a 3D series.
    one_phase = tmp_path / "phase0"
    one_phase.mkdir()
    write_dicom_series(one_phase, Volume(cine.array[0], cine.spacing, cine.origin, cine.direction, np.int16))
    frame = read(one_phase)
    assert (frame.spacing, frame.origin) == (back.spacing, back.origin)
    np.testing.assert_array_equal(frame.direction, back.direction)


def test_one_series_per_slice_position_reads_as_the_same_cine(tmp_path, cine):
    (tmp_path / "one").mkdir()
    (tmp_path / "split").mkdir()
    write_cine(tmp_path / "one", cine)
    write_cine(tmp_path / "split", cine, one_series_per_position=True)
    assert_same(read(tmp_path / "split"), read(tmp_path / "one"))


def test_phases_are_ordered_by_temporal_position_without_trigger_times(tmp_path, cine):
    write_cine(tmp_path, cine, tags=lambda t, z: {"0020|0100": str(t + 1)})
    back = read(tmp_path)
    np.testing.assert_array_equal(back.array, cine.array)
    assert (back.time_spacing, back.time_origin) == (1.0, 0.0)


@pytest.mark.parametrize("split", [False, True], ids=["one series", "series per position"])
def test_an_incomplete_cine_is_refused_naming_the_counts(tmp_path, cine, split):
    write_cine(tmp_path, cine, one_series_per_position=split, skip=(3, 2))  # the last phase of the last position
    with pytest.raises(LatentSRError, match="an incomplete cine: slice positions hold 4, 4 and 3 images"):
        read(tmp_path)


def test_phases_that_cannot_be_told_apart_are_refused(tmp_path, cine):
    write_cine(tmp_path, cine, tags=lambda t, z: {"0020|0013": str(z + 1)})  # no trigger time, no phase number
    with pytest.raises(LatentSRError, match="cannot tell the cardiac phases of a slice position apart"):
        read(tmp_path)


def test_a_missing_slice_in_a_3d_series_is_refused_naming_the_gaps(tmp_path, oblique_volume):
    write_dicom_series(tmp_path, oblique_volume)
    (tmp_path / "1_002.dcm").unlink()
    with pytest.raises(LatentSRError, match=r"not evenly spaced \(gaps of 8 mm x3, 16 mm x1\)") as error:
        read(tmp_path)
    assert len(str(error.value).splitlines()) == 1


def test_a_repeated_slice_in_a_3d_series_is_refused_as_such(tmp_path, oblique_volume):
    write_dicom_series(tmp_path, oblique_volume)
    image = to_sitk(oblique_volume)
    write_dicom_slice(tmp_path / "again.dcm", image, 2, {"0020|0013": "99", "0020|000e": "1.2.826.0.1.3680043.2.1125.1"})
    with pytest.raises(LatentSRError, match="1 of 6 slice positions hold more than one image: a repeated slice"):
        read(tmp_path)


def test_mixed_orientations_in_a_series_are_refused(tmp_path, oblique_volume):
    write_dicom_series(tmp_path, oblique_volume)
    tilted = to_sitk(Volume(oblique_volume.array, oblique_volume.spacing, oblique_volume.origin, np.eye(3), np.int16))
    write_dicom_slice(tmp_path / "1_003.dcm", tilted, 3, {"0020|0013": "3", "0020|000e": "1.2.826.0.1.3680043.2.1125.1"})
    with pytest.raises(LatentSRError, match="mixes 2 slice orientations"):
        read(tmp_path)


def test_the_command_line_super_resolves_a_dicom_cine_folder(tmp_path, cine, capsys):
    folder = tmp_path / "cine"
    folder.mkdir()
    write_cine(folder, cine)
    out = tmp_path / "cine_x2.nii.gz"
    assert main(["super-resolve", str(folder), "-o", str(out), "--method", "linear", "--factor", "2", "--quiet"]) == 0
    image = sitk.ReadImage(str(out))
    assert image.GetDimension() == 4 and image.GetSize() == (24, 20, 5, PHASES)
    assert image.GetSpacing() == pytest.approx((*cine.spacing[:2], 4.0, TRIGGER_STEP_MS / 1000))
    assert image.GetOrigin()[:3] == pytest.approx(cine.origin, abs=1e-4)
    np.testing.assert_allclose(np.array(image.GetDirection()).reshape(4, 4)[:3, :3], cine.direction, atol=1e-6)
    result = sitk.GetArrayFromImage(image)
    assert result.dtype == np.int16
    np.testing.assert_array_equal(result[:, ::2], cine.array.astype(np.int16))  # acquired slices bit for bit


def test_one_slice_position_of_a_cine_is_refused_with_the_way_out(tmp_path, cine):
    write_cine(tmp_path, Volume(cine.array[:, :1], cine.spacing, cine.origin, cine.direction, cine.pixel_type,
                                is_4d=True), one_series_per_position=True)
    with pytest.raises(LatentSRError, match="one slice position \\(4 phases\\).*put the series of all its slice"):
        read(tmp_path)


def test_a_single_dicom_image_is_refused_as_a_single_slice(tmp_path, oblique_volume, capsys):
    # its slice spacing defaults to 1 mm, below the in-plane spacing: the check must not pick an in-plane axis
    write_dicom_slice(tmp_path / "one.dcm", to_sitk(oblique_volume), 0, {"0020|000e": SERIES})
    assert main(["super-resolve", str(tmp_path), "-o", str(tmp_path / "out.nii.gz"), "--method", "linear"]) == 2
    assert "single slice" in capsys.readouterr().err
    assert not (tmp_path / "out.nii.gz").exists()


def test_dicom_files_without_an_extension_are_found_and_read(tmp_path, cine):
    # scanners' exports name files IM0001 or by UID: a folder of them is a study, as with .dcm names
    for name in ("a", "b"):
        folder = tmp_path / "export" / name
        folder.mkdir(parents=True)
        write_cine(folder, cine)
        for file in folder.glob("*.dcm"):
            file.rename(file.with_suffix(""))
    (tmp_path / "export" / "notes.txt").write_text("not an image")
    (tmp_path / "export" / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + bytes(64))  # an export's index
    assert find_images([tmp_path / "export"]) == [tmp_path / "export" / "a", tmp_path / "export" / "b"]
    assert_same(read(tmp_path / "export" / "a"), read(tmp_path / "export" / "b"))
    out = tmp_path / "out"
    assert main(["super-resolve", str(tmp_path / "export"), "-o", f"{out}/", "--method", "linear", "--factor", "2",
                 "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["a_linear_x2.nii.gz", "b_linear_x2.nii.gz"]


# Scanner exports as they come (issue #29). A Siemens cine leaves the scanner as one series per slice
# position, each in a folder of its own named after the series ("ML cine - 63"), every folder naming its
# files alike (IM-0001-0001.dcm, ...), all with one StudyInstanceUID and FrameOfReferenceUID.
STUDY = "1.2.826.0.1.3680043.2.1125.29"


def write_siemens_export(root, cine: Volume, study: str = STUDY, first_series: int = 63) -> None:
    """One folder per slice position, series numbers running against the positions (the folders'
    order says nothing about where the slices are), every folder's files named alike."""
    frames = [to_sitk(Volume(cine.array[t], cine.spacing, cine.origin, cine.direction, cine.pixel_type))
              for t in range(cine.n_frames)]
    for z in range(cine.n_slices):
        number = first_series + cine.n_slices - 1 - z
        folder = root / f"ML cine - {number}"
        folder.mkdir(parents=True)
        for t in range(cine.n_frames):
            write_dicom_slice(folder / f"IM-0001-{t + 1:04d}.dcm", frames[t], z,
                              {"0020|000d": study, "0020|0052": f"{study}.0", "0020|000e": f"{study}.{number}",
                               "0020|0011": str(number), "0020|0013": str(t + 1),
                               "0018|1060": str(FIRST_TRIGGER_MS + t * TRIGGER_STEP_MS)})


def test_a_siemens_export_of_per_position_series_folders_is_one_cine(tmp_path, cine, capsys):
    export = tmp_path / "export"
    write_siemens_export(export, cine)
    assert find_images([export]) == [export]  # one study, whatever the folders are called
    back = read(export)
    assert back.is_4d and back.array.shape == (PHASES, POSITIONS, 20, 24)
    np.testing.assert_array_equal(back.array, cine.array)  # every position and frame in order
    np.testing.assert_allclose(back.origin, cine.origin, atol=1e-9)
    assert back.spacing == pytest.approx(cine.spacing, abs=1e-9)
    out = tmp_path / "result.nii.gz"
    assert main(["super-resolve", str(export), "-o", str(out), "--method", "linear", "--factor", "2", "--quiet"]) == 0
    result = sitk.ReadImage(str(out))
    assert result.GetSize() == (24, 20, 5, PHASES)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result)[:, ::2], cine.array.astype(np.int16))


def test_a_folder_of_several_studies_exports_runs_as_a_cohort(tmp_path, cine, capsys):
    exports = tmp_path / "exports"
    write_siemens_export(exports / "patient A", cine, study=f"{STUDY}.1")
    other = Volume(cine.array[::-1].copy(), cine.spacing, cine.origin, cine.direction, cine.pixel_type,
                   time_spacing=cine.time_spacing, time_origin=cine.time_origin, is_4d=True)
    write_siemens_export(exports / "patient B", other, study=f"{STUDY}.2")
    assert find_images([exports]) == [exports / "patient A", exports / "patient B"]
    assert main(["super-resolve", str(exports), "-o", str(tmp_path / "one.nii.gz"), "--method", "linear"]) == 2
    assert "the input holds 2 studies" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["super-resolve", str(exports), "-o", f"{out}/", "--method", "linear", "--factor", "2",
                 "--quiet"]) == 0
    for name, truth in (("patient A", cine), ("patient B", other)):
        result = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}_linear_x2.nii.gz")))
        np.testing.assert_array_equal(result[:, ::2], truth.array.astype(np.int16))


def test_per_position_folders_of_two_studies_side_by_side_are_not_mixed(tmp_path, cine, capsys):
    # Same geometry, other StudyInstanceUIDs: what the DICOM says decides, so neither is read into the other
    # (nor are they one study): each folder is its own study, and one position cannot be super-resolved.
    mixed = tmp_path / "mixed"
    write_siemens_export(mixed, cine, study=f"{STUDY}.1", first_series=10)
    write_siemens_export(mixed, cine, study=f"{STUDY}.2", first_series=20)
    assert len(find_images([mixed])) == 2 * POSITIONS
    with pytest.raises(LatentSRError, match=f"holds {2 * POSITIONS} DICOM series .* in {2 * POSITIONS} folders, "
                                            "not one study's cine"):
        read(mixed)


@pytest.mark.parametrize("keep", [0, 400, -100], ids=["empty", "header-cut", "pixels-cut"])
def test_a_per_position_export_with_a_damaged_file_names_it(tmp_path, cine, capsys, keep):
    export = tmp_path / "export"
    write_siemens_export(export, cine)
    victim = export / "ML cine - 64" / "IM-0001-0001.dcm"
    victim.write_bytes(victim.read_bytes()[:keep])
    assert find_images([export]) == [export]  # still the one study: reading it names the file
    with pytest.raises(LatentSRError, match="IM-0001-0001.dcm: a DICOM file that cannot be read") as error:
        read(export)
    assert "ML cine - 64" in str(error.value)
    assert main(["super-resolve", str(export), "-o", str(tmp_path / "out.nii.gz"), "--method", "linear"]) == 2
    err = capsys.readouterr().err
    assert "ML cine - 64/IM-0001-0001.dcm" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.nii.gz").exists()
