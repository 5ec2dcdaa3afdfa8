"""Files <-> the scene on two Slicer versions whose sequence readers differ (slicer-core from PyPI).

What differs between the slicer-core versions for what LatentSRLib.slicer uses was listed by
comparing every vtkMRML*/vtkSlicer* class's Python API of 5.11.0.2, 5.12.4.0 and 5.13.31053.0: no
method LatentSR calls differs (the browser's only setter is SetAndObserveMasterSequenceNodeID in
all of them). What differs is what ``vtkMRMLVolumeSequenceStorageNode`` reads and writes:

=====================  ==========================  ===========================================
                       5.11.0.2 (as Slicer 5.10)   5.12.4.0, 5.13 (Slicer PR #9399)
=====================  ==========================  ===========================================
read/write types       .seq.nrrd .seq.nhdr         the same and .nii .nii.gz
                       .nrrd .nhdr
4D NIfTI               fails ("Cannot read the     read, index "time" "s", values from pixdim[4]
                       NRRD file")
4D NRRD, no list axis  fails ("Could not find      read
(SimpleITK's, the CLI  list kind axis")
writes these)
=====================  ==========================  ===========================================

Slicer 5.4-5.8 read NRRD only, with vtkTeemNRRDReader (Modules/Loadable/Sequences/MRML/
vtkMRMLVolumeSequenceStorageNode.cxx, ReadDataInternal), so they behave as 5.11.0.2 here for NIfTI.
These tests run under the project's slicer-core and, when ``.venv-old`` exists
(``bash scripts/setup_old_slicer.sh``), :func:`test_under_the_older_slicer_core` runs this file and
test_mrml.py again under slicer-core 5.11.0.2.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
sitk = pytest.importorskip("SimpleITK")

import LatentSRLib.slicer as lsr  # noqa: E402
from LatentSRLib.slicer import files  # noqa: E402
from LatentSRLib.volume import read  # noqa: E402

from mrml_fixtures import mrml_scene, oblique_direction  # noqa: E402,F401

pytestmark = pytest.mark.mrml

ROOT = Path(__file__).resolve().parents[1]
OLD_VENV_PYTHON = ROOT / ".venv-old" / "bin" / "python"
SLICER_CORE = tuple(int(part) for part in importlib.metadata.version("slicer-core").split(".")[:2])
#: Where Slicer's own sequence storage node reads 4D NIfTI (see the table above).
NATIVE_NIFTI = SLICER_CORE >= (5, 12)


def cine_image(direction: np.ndarray, frames: int = 3, seed: int = 0) -> "sitk.Image":
    """A small int16 4D image (x, y, z, t): anisotropic, oblique, off-origin, 0.04 s between frames."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-300, 3000, size=(frames, 5, 6, 7)).astype(np.int16)  # t, z, y, x
    image = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in array], 0.0, 0.04)
    image.SetSpacing((1.25, 1.5, 8.0, 0.04))
    image.SetOrigin((-12.0, 30.5, 4.0, 0.0))
    direction4 = np.eye(4)
    direction4[:3, :3] = direction
    image.SetDirection(direction4.ravel().tolist())
    return image


def world_samples(node) -> dict:
    """{RAS position of each voxel centre (rounded to 1 um): value} of a volume node, whatever its voxel
    order: Slicer's readers may flip an axis to make IJK right-handed (ForceRightHandedIJKCoordinateSystem),
    which changes the array but not where each value lies."""
    from vtk.util.numpy_support import vtk_to_numpy
    image = node.GetImageData()
    dims = image.GetDimensions()
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
    k, j, i = np.meshgrid(*(np.arange(n) for n in dims[::-1]), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    ras = (lsr.node_ijk_to_ras(node) @ ijk)[:3].T
    return dict(zip(map(tuple, np.round(ras, 3)), values.ravel().tolist()))


def file_samples(image: "sitk.Image", frame: int) -> dict:
    """The same map for frame ``frame`` of a 4D SimpleITK image (LPS -> RAS: x and y negated)."""
    size = image.GetSize()
    values = sitk.GetArrayFromImage(image)[frame]
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[:3][::-1]), indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel()])
    direction = np.array(image.GetDirection()).reshape(4, 4)[:3, :3]
    lps = np.array(image.GetOrigin()[:3])[:, None] + direction @ (np.array(image.GetSpacing()[:3])[:, None] * index)
    ras = (lps * np.array([[-1.0], [-1.0], [1.0]])).T
    return dict(zip(map(tuple, np.round(ras, 3)), values.ravel().tolist()))


def assert_sequence_is_file(sequence, image: "sitk.Image") -> None:
    """Every frame holds the file's voxels at the file's positions, in the file's pixel type, in order."""
    frames = image.GetSize()[3]
    assert sequence.IsA("vtkMRMLSequenceNode") and sequence.GetNumberOfDataNodes() == frames
    for t in range(frames):
        node = sequence.GetNthDataNode(t)
        assert node.IsA("vtkMRMLScalarVolumeNode")
        assert slicer.util.arrayFromVolume(node).dtype == np.int16
        np.testing.assert_allclose(sorted(node.GetSpacing()), sorted(image.GetSpacing()[:3]))
        assert world_samples(node) == file_samples(image, t), f"frame {t}"
    assert [float(sequence.GetNthIndexValue(t)) for t in range(frames)] == pytest.approx([0.0, 0.04, 0.08][:frames])
    assert (sequence.GetIndexName(), sequence.GetIndexUnit()) == ("time", "s")


@pytest.mark.parametrize("handed", ["right", "left"])
def test_4d_nifti_loads_as_a_cine_on_every_slicer_version(mrml_scene, tmp_path, handed):
    # Before: on 5.11.0.2 (and Slicer 5.4-5.10) load_file handed the file to the sequence storage
    # node, which reads NRRD only: "Slicer cannot read". A left-handed LPS direction (x flipped, as
    # many NIfTI files are stored) makes Slicer's reader flip an axis; the values must stay in place.
    direction = oblique_direction() @ (np.diag([-1.0, 1.0, 1.0]) if handed == "left" else np.eye(3))
    image = cine_image(direction)
    path = tmp_path / "cine.nii.gz"
    sitk.WriteImage(image, str(path))

    sequence = lsr.load_file(path, mrml_scene.scene)

    assert sequence.GetName() == "cine"
    assert_sequence_is_file(sequence, image)
    browsers = lsr.browsers_of(sequence)
    assert len(browsers) == 1 and browsers[0].GetMasterSequenceNode() is sequence
    proxy = lsr.proxy_volume(sequence)  # the Sequences logic made the frame shown in the views
    assert proxy is not None and world_samples(proxy) == file_samples(image, 0)
    # The native reader keeps its storage node (Slicer can save the cine back); the library's path has none.
    assert (sequence.GetStorageNode() is not None) == NATIVE_NIFTI


def test_slicer_reads_sequence_lists_what_the_storage_node_reads():
    # The one capability that differs between the versions (see the module docstring).
    assert files.slicer_reads_sequence("a.seq.nrrd") and files.slicer_reads_sequence("A.NRRD")
    assert files.slicer_reads_sequence("a.nii.gz") == files.slicer_reads_sequence("a.nii") == NATIVE_NIFTI
    assert not files.slicer_reads_sequence("a.mha")


@pytest.mark.skipif(not NATIVE_NIFTI, reason="this slicer-core's sequence storage node cannot read NIfTI")
def test_library_path_agrees_with_slicers_own_nifti_reader(mrml_scene, tmp_path):
    # Where both exist, the fallback (the library's reader) gives what Slicer's reader gives.
    image = cine_image(oblique_direction() @ np.diag([-1.0, 1.0, 1.0]), seed=3)
    path = tmp_path / "both.nii.gz"
    sitk.WriteImage(image, str(path))
    native = files._read_sequence_with_slicer(path, "native", files._header(path), mrml_scene.scene)
    library = files._read_sequence_with_library(path, "library", mrml_scene.scene)
    assert native is not None
    for t in range(3):
        assert world_samples(native.GetNthDataNode(t)) == world_samples(library.GetNthDataNode(t))
        assert native.GetNthIndexValue(t) == library.GetNthIndexValue(t)
    assert (native.GetIndexName(), native.GetIndexUnit()) == (library.GetIndexName(), library.GetIndexUnit())


def test_4d_nrrd_as_the_command_line_writes_it_loads(mrml_scene, tmp_path):
    # SimpleITK writes every axis of a 4D NRRD as "domain": Slicer 5.10's ITK sequence reader (and
    # slicer-core 5.11.0.2) refuse it ("Could not find list kind axis"); the library reads it then.
    image = cine_image(oblique_direction(), seed=1)
    path = tmp_path / "cine.nrrd"
    sitk.WriteImage(image, str(path))
    sequence = lsr.load_file(path, mrml_scene.scene)
    frames = image.GetSize()[3]
    assert sequence.GetNumberOfDataNodes() == frames
    for t in range(frames):
        assert world_samples(sequence.GetNthDataNode(t)) == file_samples(image, t)


def test_slicers_own_seq_nrrd_loads_with_its_index_values(mrml_scene, tmp_path):
    # A .seq.nrrd saved by Slicer's storage node (every version reads and writes it) keeps its index
    # values, which a plain 4D file cannot carry.
    image = cine_image(oblique_direction(), frames=2, seed=2)
    source = tmp_path / "source.nii.gz"
    sitk.WriteImage(image, str(source))
    cine = lsr.sequence_from_volume(read(source), "saved", mrml_scene.scene, index_values=["10", "250"])
    storage = mrml_scene.scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(tmp_path / "saved.seq.nrrd"))
    assert storage.WriteData(cine)

    loaded = lsr.load_file(tmp_path / "saved.seq.nrrd", mrml_scene.scene)
    assert loaded.GetStorageNode() is not None  # Slicer's reader, not the fallback
    assert [loaded.GetNthIndexValue(t) for t in range(2)] == ["10", "250"]
    for t in range(2):
        assert world_samples(loaded.GetNthDataNode(t)) == file_samples(image, t)


def test_3d_nifti_and_nrrd_load_as_volumes(mrml_scene, tmp_path):
    image = cine_image(oblique_direction(), frames=1)[:, :, :, 0]
    for suffix in (".nii.gz", ".nrrd"):
        path = tmp_path / f"volume{suffix}"
        sitk.WriteImage(image, str(path))
        node = lsr.load_file(path, mrml_scene.scene)
        assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "volume"
        as_4d = sitk.JoinSeries([image])
        assert world_samples(node) == file_samples(as_4d, 0)


def test_process_folder_and_save_node_write_4d_nifti_on_every_version(mrml_scene, tmp_path):
    # The whole console path for a folder of 4D NIfTI cines: load, super-resolve, save as 4D NIfTI
    # (SimpleITK writes it, also where the storage node writes NRRD only), nothing left in the scene.
    image = cine_image(oblique_direction(), seed=4)
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "case.nii.gz"))
    count = mrml_scene.scene.GetNumberOfNodes()
    written = lsr.process_folder(tmp_path / "in", tmp_path / "out", "linear", factor=2, scene=mrml_scene.scene)
    assert [p.name for p in written] == ["case_linear_x2.nii.gz"]
    assert mrml_scene.scene.GetNumberOfNodes() == count
    out = sitk.ReadImage(str(written[0]))
    assert out.GetSize() == (7, 6, 9, 3)  # (5 - 1) * 2 + 1 slices, every frame
    np.testing.assert_allclose(out.GetSpacing(), (1.25, 1.5, 4.0, 0.04))
    np.testing.assert_allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    # The acquired slices come back bit for bit, in the input's type.
    assert out.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out)[:, ::2], sitk.GetArrayFromImage(image))

    # save_node of a loaded cine writes the same file the library would.
    cine = lsr.load_file(tmp_path / "in" / "case.nii.gz", mrml_scene.scene)
    saved = lsr.save_node(cine, tmp_path / "saved.nii.gz")
    again = sitk.ReadImage(str(saved))
    for t in range(3):
        assert file_samples(again, t) == file_samples(image, t)


def test_browser_api_is_the_same_on_every_version():
    # sequences.set_primary_sequence relies on it: "Primary" was never added to the browser node.
    browser = slicer.vtkMRMLSequenceBrowserNode()
    assert hasattr(browser, "SetAndObserveMasterSequenceNodeID")
    assert not hasattr(browser, "SetAndObservePrimarySequenceNodeID")


@pytest.mark.skipif(os.environ.get("LATENTSR_OLD_SLICER_RUN") == "1", reason="already the older slicer-core")
def test_under_the_older_slicer_core():
    """Runs this file and test_mrml.py again under .venv-old (slicer-core 5.11.0.2), where it exists.

    Create it with ``bash scripts/setup_old_slicer.sh`` (about 20 s; CI does so in .ci/run)."""
    if not OLD_VENV_PYTHON.exists():
        pytest.skip("no .venv-old: bash scripts/setup_old_slicer.sh creates it")
    version = subprocess.run([str(OLD_VENV_PYTHON), "-c", "import importlib.metadata as m; print(m.version('slicer-core'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert tuple(int(p) for p in version.split(".")[:2]) < (5, 12), f".venv-old has slicer-core {version}"
    env = dict(os.environ, LATENTSR_OLD_SLICER_RUN="1", OMP_NUM_THREADS="1")
    # This file, and test_mrml.py: every scene, sequence, browser and playback test of the Slicer glue.
    run = subprocess.run([str(OLD_VENV_PYTHON), "-m", "pytest", __file__, str(ROOT / "Testing" / "test_mrml.py"),
                          "-q", "-p", "no:cacheprovider",
                          "-W", "ignore::DeprecationWarning"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail


def test_add_data_as_volume_of_a_4d_nifti(mrml_scene, tmp_path):
    # What "Add data" with Description "Volume" does to a 4D NIfTI (the volumes logic's archetype
    # reader, which qSlicerVolumesReader calls): before 4D NIfTI sequences it silently loads the first
    # frame only; with them it refuses the file (the sequence reader takes it). The README's click path
    # for 4D NIfTI on older Slicer versions rests on this.
    image = cine_image(np.eye(3), seed=5)
    path = tmp_path / "cine4d.nii.gz"
    sitk.WriteImage(image, str(path))
    node = mrml_scene.volumes.AddArchetypeVolume(str(path), "as_volume")
    if NATIVE_NIFTI:
        assert node is None
    else:
        assert node is not None and node.GetImageData().GetNumberOfScalarComponents() == 1
        assert world_samples(node) == file_samples(image, 0)  # frame 0 only, frames 1 and 2 dropped


def test_4d_nifti_loads_in_a_stock_slicer_without_nibabel(mrml_scene, tmp_path, monkeypatch):
    # A stock Slicer's Python has no nibabel (SuperBuild/External_python-*.cmake has none): the
    # library's path then reads the NIfTI with SimpleITK, as Slicer's own readers do.
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel raises ImportError
    monkeypatch.setattr(files, "slicer_reads_sequence", lambda path: False)  # the 5.4-5.10 path
    image = cine_image(oblique_direction(), seed=6)
    path = tmp_path / "stock.nii.gz"
    sitk.WriteImage(image, str(path))
    sequence = lsr.load_file(path, mrml_scene.scene)
    assert_sequence_is_file(sequence, image)
