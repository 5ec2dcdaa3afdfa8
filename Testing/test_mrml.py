"""LatentSRLib.mrml with Slicer's real MRML classes (slicer-core from PyPI, no Qt).

Scene and logic set-up follows shared/SLICER_CORE.md. Real-data tests read ../shared/data and skip
when it is absent; they crop or use small factors so the file runs in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")
vtk = pytest.importorskip("vtk")

import LatentSRLib.slicer as mrml  # noqa: E402  (after the importorskip above)
from LatentSRLib import LatentSRError  # noqa: E402
from LatentSRLib.slicer import layout, nodes, outputs  # noqa: E402
from LatentSRLib.pipeline import Cancelled, super_resolve  # noqa: E402
from LatentSRLib.outputs import is_output_file  # noqa: E402
from LatentSRLib.volume import Volume, read, to_pixel_type, write  # noqa: E402

pytestmark = pytest.mark.mrml

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ACDC_ED_ES = DATA / "acdc_fullfov" / "patient001"   # frames 01 (ED) and 12 (ES), 10 mm slices
ACDC_RAW = DATA / "acdc" / "patient001" / "patient001_frame01.nii.gz"  # int16 with origin/direction
ACDC_CINE = DATA / "acdc_cine" / "patient081_4d.nii.gz"  # 5 mm slices, every time frame


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


from mrml_fixtures import cine_sequence, mrml_scene, node_ids, oblique, oblique_direction  # noqa: E402,F401


def matrix(node) -> np.ndarray:
    return mrml.node_ijk_to_ras(node)


def array(node) -> np.ndarray:
    return slicer.util.arrayFromVolume(node).copy()


# ---------------------------------------------------------------------------------------------
# Geometry: Volume <-> node
# ---------------------------------------------------------------------------------------------

def test_node_geometry_is_ras_of_the_itk_geometry_including_oblique(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "oblique", mrml_scene.scene)
    # ITK: LPS point = origin + direction @ (spacing * index); Slicer: RAS = IJKToRAS @ index.
    index = np.array([3.0, 7.0, 2.0])
    lps = np.asarray(oblique.origin) + oblique.direction @ (np.asarray(oblique.spacing) * index)
    ras = matrix(node) @ np.r_[index, 1.0]
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(node.GetSpacing(), oblique.spacing)

    back = mrml.volume_from_node(node)
    np.testing.assert_array_equal(back.array, oblique.array)
    np.testing.assert_allclose(back.origin, oblique.origin, atol=1e-9)
    np.testing.assert_allclose(back.direction, oblique.direction, atol=1e-9)
    assert back.pixel_type == np.int16 and array(node).dtype == np.int16


@pytest.mark.integration
def test_volume_from_node_matches_simpleitk_on_a_raw_file(mrml_scene):
    path = need(ACDC_RAW)
    node = mrml_scene.volumes.AddArchetypeVolume(str(path), "raw")
    from_slicer, from_file = mrml.volume_from_node(node), read(path)
    np.testing.assert_array_equal(from_slicer.array, from_file.array)
    np.testing.assert_allclose(from_slicer.spacing, from_file.spacing, rtol=1e-6)
    np.testing.assert_allclose(from_slicer.origin, from_file.origin, atol=1e-4)
    np.testing.assert_allclose(from_slicer.direction, from_file.direction, atol=1e-6)


def test_volume_from_node_rejects_what_is_not_an_image(mrml_scene):
    labels = mrml_scene.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(LatentSRError, match="label map"):
        mrml.volume_from_node(labels)
    empty = mrml_scene.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(LatentSRError, match="no image data"):
        mrml.volume_from_node(empty)
    model = mrml_scene.scene.AddNewNodeByClass("vtkMRMLModelNode", "model")
    with pytest.raises(LatentSRError, match="not a scalar volume"):
        mrml.volume_from_node(model)


# ---------------------------------------------------------------------------------------------
# super_resolve_node on volumes
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,label", [("linear", "Linear"), ("bspline", "B-spline"), ("lanczos", "Lanczos")])
def test_volume_node_each_conventional_method(mrml_scene, oblique, method, label):
    node = mrml.node_from_volume(oblique, "patient", mrml_scene.scene)
    before_array, before_matrix = array(node), matrix(node)
    out = mrml.super_resolve_node(node, method, factor=3)

    assert out.GetName() == f"patient {label} x3"
    assert out.IsA("vtkMRMLScalarVolumeNode") and out.GetScene() is mrml_scene.scene
    assert out.GetImageData().GetDimensions() == (24, 20, (6 - 1) * 3 + 1)
    np.testing.assert_allclose(out.GetSpacing(), (1.5, 1.25, 8.0 / 3))
    np.testing.assert_allclose(out.GetOrigin(), node.GetOrigin(), atol=1e-9)
    out_directions, in_directions = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    out.GetIJKToRASDirectionMatrix(out_directions)
    node.GetIJKToRASDirectionMatrix(in_directions)
    np.testing.assert_allclose(nodes._matrix_to_array(out_directions), nodes._matrix_to_array(in_directions))
    # The same voxels as the library on the same Volume, in the input's pixel type.
    expected = super_resolve(mrml.volume_from_node(node), method, factor=3)
    np.testing.assert_array_equal(array(out), to_pixel_type(expected.array[0], np.int16))
    np.testing.assert_array_equal(array(out)[::3], before_array)  # acquired slices kept
    # The input is untouched.
    np.testing.assert_array_equal(array(node), before_array)
    np.testing.assert_array_equal(matrix(node), before_matrix)
    assert out.GetAttribute(mrml.ATTRIBUTE_METHOD) == method and out.GetAttribute(mrml.ATTRIBUTE_FACTOR) == "3"
    # Shown with the input's grey scale.
    assert out.GetDisplayNode().GetWindow() == pytest.approx(node.GetDisplayNode().GetWindow())


def test_target_spacing_and_isotropic_default(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    by_spacing = mrml.super_resolve_node(node, "linear", spacing=2.0)
    assert by_spacing.GetName() == "p Linear x4"
    np.testing.assert_allclose(by_spacing.GetSpacing()[2], 2.0)
    isotropic = mrml.super_resolve_node(node, "linear")
    assert isotropic.GetName() == "p Linear x6"  # round(8 / 1.25)
    assert isotropic.GetImageData().GetDimensions()[2] == 5 * 6 + 1


def test_slice_axis_along_i(mrml_scene):
    """The slice axis is the largest spacing, wherever it is; geometry follows along that axis."""
    rng = np.random.default_rng(1)
    volume = Volume(rng.random((1, 12, 10, 5), dtype=np.float32), (7.0, 1.0, 1.2), (1, 2, 3), oblique_direction())
    node = mrml.node_from_volume(volume, "sideways", mrml_scene.scene)
    out = mrml.super_resolve_node(node, "bspline", factor=2)
    assert out.GetImageData().GetDimensions() == (9, 10, 12)
    np.testing.assert_allclose(out.GetSpacing(), (3.5, 1.0, 1.2))
    expected_matrix = matrix(node)
    expected_matrix[:3, 0] /= 2
    np.testing.assert_allclose(matrix(out), expected_matrix, atol=1e-12)


@pytest.mark.integration
def test_matches_the_command_line_on_the_same_file(mrml_scene, tmp_path):
    """A file loaded with the volumes logic gives the voxels `latentsr super-resolve` writes."""
    from LatentSRLib import cli
    source = need(ACDC_RAW)
    node = mrml_scene.volumes.AddArchetypeVolume(str(source), "raw")
    out = mrml.super_resolve_node(node, "lanczos", factor=2)
    target = tmp_path / "cli.nii.gz"
    assert cli.main(["super-resolve", str(source), "-o", str(target), "--method", "lanczos",
                     "--factor", "2", "--quiet"]) == 0
    written = read(target)
    np.testing.assert_array_equal(array(out), written.array[0].astype(array(out).dtype))
    np.testing.assert_allclose(mrml.volume_from_node(out).origin, written.origin, atol=1e-4)
    np.testing.assert_allclose(mrml.volume_from_node(out).spacing, written.spacing, rtol=1e-6)
    np.testing.assert_allclose(mrml.volume_from_node(out).direction, written.direction, atol=1e-6)


def test_ae_with_bundled_weights(mrml_scene, oblique):
    pytest.importorskip("torch")
    from LatentSRLib.models import registry
    if not any(entry.get("kind") == "ae" for entry in registry.manifest().values()):
        pytest.skip("no bundled AE weights")
    small = oblique.with_array(oblique.array[:, :3, :16, :16])
    node = mrml.node_from_volume(small, "patient001", mrml_scene.scene)
    out = mrml.super_resolve_node(node, "ae", factor=2, device="cpu")
    assert out.GetName() == "patient001 AE x2"
    assert out.GetImageData().GetDimensions() == (16, 16, 5)
    expected = super_resolve(mrml.volume_from_node(node), "ae", factor=2, device="cpu")
    np.testing.assert_array_equal(array(out), to_pixel_type(expected.array[0], np.int16))


def test_errors_leave_the_scene_unchanged(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    before = node_ids(mrml_scene.scene)
    with pytest.raises(LatentSRError, match="unknown method"):
        mrml.super_resolve_node(node, "nearest", factor=2)
    with pytest.raises(LatentSRError, match="factor"):
        mrml.super_resolve_node(node, "linear", factor=0)
    assert node_ids(mrml_scene.scene) == before


def test_failure_while_making_nodes_removes_them(mrml_scene, oblique, monkeypatch):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    before = node_ids(mrml_scene.scene)

    def broken(source, target):
        raise RuntimeError("display failed")
    monkeypatch.setattr(outputs, "_copy_display", broken)
    with pytest.raises(RuntimeError):
        mrml.super_resolve_node(node, "linear", factor=2)
    assert node_ids(mrml_scene.scene) == before


# ---------------------------------------------------------------------------------------------
# ROI
# ---------------------------------------------------------------------------------------------

def test_roi_crops_in_index_space_before_processing(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "heart")
    # An ROI exactly around voxels i 5..12, j 4..9, k 1..4, in the volume's own (oblique) frame.
    ijk_to_ras = matrix(node)
    low, high = np.array([5, 4, 1]), np.array([12, 9, 4])
    centre = ijk_to_ras @ np.r_[(low + high) / 2, 1]
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    object_to_node[:3, 3] = centre[:3]
    roi.SetAndObserveObjectToNodeMatrix(nodes._array_to_matrix(object_to_node))
    roi.SetSize(*((high - low) * np.asarray(oblique.spacing)))

    description = mrml.describe_output(node, factor=2, roi=roi)
    assert (description.slices_in, description.slices_out) == (4, 7)
    out = mrml.super_resolve_node(node, "linear", factor=2, roi=roi)
    assert out.GetImageData().GetDimensions() == (8, 6, 7)
    np.testing.assert_allclose(out.GetOrigin(), (ijk_to_ras @ np.r_[low, 1])[:3], atol=1e-6)
    cropped = oblique.with_array(oblique.array[:, 1:5, 4:10, 5:13])
    expected = super_resolve(cropped, "linear", factor=2)
    np.testing.assert_array_equal(array(out), to_pixel_type(expected.array[0], np.int16))


def test_roi_outside_or_too_thin(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "away")
    roi.SetCenter(1000, 1000, 1000)
    roi.SetSize(10, 10, 10)
    before = node_ids(mrml_scene.scene)
    with pytest.raises(LatentSRError, match="holds no voxel"):
        mrml.super_resolve_node(node, "linear", factor=2, roi=roi)
    centre = matrix(node) @ np.r_[12, 10, 2, 1]
    roi.SetCenter(*centre[:3])
    roi.SetSize(5, 5, 0.5)
    with pytest.raises(LatentSRError, match="fewer than 2 slices"):
        mrml.super_resolve_node(node, "linear", factor=2, roi=roi)
    assert node_ids(mrml_scene.scene) == before


# ---------------------------------------------------------------------------------------------
# Sequences (cine)
# ---------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_sequence_of_ed_and_es_frames(mrml_scene):
    folder = need(ACDC_ED_ES)
    scene = mrml_scene.scene
    frames = [mrml_scene.volumes.AddArchetypeVolume(str(folder / f"patient001_frame{f}.nii.gz"), f"f{f}")
              for f in ("01", "12")]
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "patient001")
    for value, frame in zip(("1", "12"), frames):
        sequence.SetDataNodeAtValue(frame, value)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "patient001 browser")
    mrml.set_primary_sequence(browser, sequence)
    before = [array(sequence.GetNthDataNode(i)) for i in range(2)]

    out = mrml.super_resolve_node(sequence, "linear", factor=2)
    assert out.IsA("vtkMRMLSequenceNode") and out.GetName() == "patient001 Linear x2"
    assert [out.GetNthIndexValue(i) for i in range(out.GetNumberOfDataNodes())] == ["1", "12"]
    expected = super_resolve(mrml.volume_from_node(sequence), "linear", factor=2)
    for t, frame in enumerate(frames):
        produced = array(out.GetNthDataNode(t))
        np.testing.assert_array_equal(produced, to_pixel_type(expected.array[t], produced.dtype))
        np.testing.assert_array_equal(produced[::2], array(frame))  # frame t is input frame t
        np.testing.assert_array_equal(array(sequence.GetNthDataNode(t)), before[t])
    # Played by the input's browser, with a proxy named like the output.
    assert browser.IsSynchronizedSequenceNodeID(out.GetID())
    proxy = browser.GetProxyNode(out)
    assert proxy is not None and proxy.GetName() == out.GetName()
    browser.SetSelectedItemNumber(1)
    np.testing.assert_array_equal(array(proxy)[::2], array(frames[1]))


@pytest.mark.integration
def test_4d_cine_file_every_frame_in_order(mrml_scene):
    path = need(ACDC_CINE)
    sequence = mrml.load_file(path, mrml_scene.scene)
    assert sequence.IsA("vtkMRMLSequenceNode")
    count = sequence.GetNumberOfDataNodes()
    seen: list[float] = []
    out = mrml.super_resolve_node(sequence, "bspline", factor=2, progress=seen.append)
    assert out.GetNumberOfDataNodes() == count > 10
    assert [out.GetNthIndexValue(i) for i in range(count)] == [sequence.GetNthIndexValue(i) for i in range(count)]
    expected = super_resolve(read(path), "bspline", factor=2)   # the 4D file as the CLI reads it
    for t in range(count):
        np.testing.assert_array_equal(array(out.GetNthDataNode(t)), expected.array[t])
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= count


def test_cancel_mid_sequence_leaves_no_node(mrml_scene):
    frames = [Volume(np.full((1, 4, 8, 8), t, np.float32), (1.0, 1.0, 5.0)) for t in range(6)]
    sequence = cine_sequence(mrml_scene.scene, frames)
    before = node_ids(mrml_scene.scene)
    browser = mrml.browsers_of(sequence)[0]
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 5  # a few frames in
    with pytest.raises(Cancelled):
        mrml.super_resolve_node(sequence, "linear", factor=2, cancel=cancel)
    assert node_ids(mrml_scene.scene) == before
    assert browser.GetNumberOfSynchronizedSequenceNodes() == 0  # only the primary sequence
    assert mrml_scene.scene.GetFirstNodeByName("cine Linear x2") is None


def test_frames_of_different_geometry_are_refused(mrml_scene):
    frames = [Volume(np.zeros((1, 4, 8, 8), np.float32), (1.0, 1.0, 5.0)),
              Volume(np.zeros((1, 4, 8, 8), np.float32), (1.0, 1.0, 6.0))]
    sequence = cine_sequence(mrml_scene.scene, frames, browser=False)
    with pytest.raises(LatentSRError, match="frame 2"):
        mrml.super_resolve_node(sequence, "linear", factor=2)


# ---------------------------------------------------------------------------------------------
# Several methods, the scene, folders
# ---------------------------------------------------------------------------------------------

def test_super_resolve_and_compare_is_all_or_nothing(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    outputs = mrml.super_resolve_and_compare(node, ["linear", "bspline"], factor=2, prefix="case 7")
    assert [o.GetName() for o in outputs] == ["case 7 Linear x2", "case 7 B-spline x2"]
    before = node_ids(mrml_scene.scene)
    fractions: list[float] = []

    def cancel() -> bool:
        return bool(fractions) and fractions[-1] > 0.6  # during the second method
    with pytest.raises(Cancelled):
        mrml.super_resolve_and_compare(node, ["lanczos", "linear"], factor=2, progress=fractions.append,
                                       cancel=cancel, show=False)
    assert node_ids(mrml_scene.scene) == before


def test_proxy_input_processes_its_whole_sequence(mrml_scene):
    frames = [Volume(np.full((1, 3, 6, 6), t, np.float32), (1.0, 1.0, 4.0)) for t in range(3)]
    sequence = cine_sequence(mrml_scene.scene, frames)
    proxy = mrml.proxy_volume(sequence)
    assert proxy is not None and mrml.sequence_of_proxy(proxy) is sequence
    (out,) = mrml.super_resolve_and_compare(proxy, ["linear"], factor=2, show=False)
    assert out.IsA("vtkMRMLSequenceNode") and out.GetNumberOfDataNodes() == 3


def test_super_resolve_scene_skips_labels_outputs_and_proxies(mrml_scene, oblique):
    scene = mrml_scene.scene
    first = mrml.node_from_volume(oblique, "a", scene)
    mrml.node_from_volume(oblique.with_array(oblique.array[:, :4]), "b", scene)
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    labels.CopyOrientation(first)
    nodes._set_image(labels, np.zeros((6, 20, 24), np.uint8))
    cine_sequence(scene, [Volume(np.ones((1, 3, 5, 5), np.float32), (1.0, 1.0, 3.0))] * 2, name="cine")

    assert sorted(n.GetName() for n in mrml.scene_inputs(scene)) == ["a", "b", "cine"]
    outputs = mrml.super_resolve_scene("linear", factor=2, scene=scene)
    assert sorted(o.GetName() for o in outputs) == ["a Linear x2", "b Linear x2", "cine Linear x2"]
    assert sorted(n.GetName() for n in mrml.scene_inputs(scene)) == ["a", "b", "cine"]


def test_process_folder_writes_what_the_command_line_writes(mrml_scene, oblique, tmp_path):
    from LatentSRLib import cli
    inputs = tmp_path / "in"
    inputs.mkdir()
    write(oblique, inputs / "case1.nii.gz")
    cine = Volume(np.random.default_rng(2).random((3, 4, 6, 7), dtype=np.float32), (1.2, 1.2, 6.0),
                  (5.0, -3.0, 2.0), oblique_direction(), is_4d=True, time_spacing=0.05)
    write(cine, inputs / "cine2.nii.gz")
    write(oblique, inputs / "case1_gt.nii.gz")  # a mask beside the images: skipped
    count = mrml_scene.scene.GetNumberOfNodes()

    written = mrml.process_folder(inputs, tmp_path / "out", "linear", factor=2, scene=mrml_scene.scene)
    assert [p.name for p in written] == ["case1_linear_x2.nii.gz", "cine2_linear_x2.nii.gz"]
    assert all(is_output_file(p) for p in written)  # tagged as outputs, as the command line tags them
    assert mrml_scene.scene.GetNumberOfNodes() == count   # nothing left behind
    (tmp_path / "cli").mkdir()
    assert cli.main(["super-resolve", str(inputs), "-o", str(tmp_path / "cli"), "--method", "linear",
                     "--factor", "2", "--quiet"]) == 0
    for path in written:
        ours, theirs = read(path), read(tmp_path / "cli" / path.name)
        np.testing.assert_array_equal(ours.array, theirs.array)
        np.testing.assert_allclose(ours.origin, theirs.origin, atol=1e-6)
        np.testing.assert_allclose(ours.direction, theirs.direction, atol=1e-6)
        assert ours.pixel_type == theirs.pixel_type and ours.n_frames == theirs.n_frames


# ---------------------------------------------------------------------------------------------
# The panel's helpers
# ---------------------------------------------------------------------------------------------

def test_describe_output(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "p", mrml_scene.scene)
    isotropic = mrml.describe_output(node)
    assert (isotropic.factor, isotropic.slices_in, isotropic.slices_out) == (6, 6, 31)
    np.testing.assert_allclose(isotropic.spacing_out, (1.5, 1.25, 8.0 / 6))
    assert "6 -> 31 slices" in str(isotropic)
    assert mrml.describe_output(node, spacing=2.0).factor == 4
    frames = [Volume(np.zeros((1, 4, 8, 8), np.float32), (1.0, 1.0, 5.0))] * 3
    assert mrml.describe_output(cine_sequence(mrml_scene.scene, frames), factor=2).frames == 3


def test_devices_and_requirements():
    values = [value for value, _ in mrml.devices()]
    assert values[:2] == ["auto", "cpu"]
    assert mrml.missing_requirements(["linear", "ae"]) == []   # all installed in the test venv
    with pytest.raises(LatentSRError):
        mrml.missing_requirements(["nearest"])


# ---------------------------------------------------------------------------------------------
# Comparison layout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("direction,expected", [
    (np.eye(3), "Sagittal"),                                   # slices along S: cut with a sagittal view
    # Slices along L/R: axial and coronal planes both contain that axis and both match the volume's
    # grid (i along S, j along A); the tie goes to Coronal.
    (np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0.0]]), "Coronal"),
    # Slices along A/P (i along R, j along S): sagittal and axial planes contain A and both match
    # the grid; the tie goes to Sagittal.
    (np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0.0]]), "Sagittal"),
])
def test_through_plane_orientation(mrml_scene, direction, expected):
    volume = Volume(np.zeros((1, 5, 8, 8), np.float32), (1.0, 1.0, 8.0), direction=direction)
    node = mrml.node_from_volume(volume, "v", mrml_scene.scene)
    assert mrml.through_plane_orientation(node) == expected


def test_through_plane_orientation_oblique_contains_the_slice_axis(mrml_scene, oblique):
    node = mrml.node_from_volume(oblique, "v", mrml_scene.scene)
    chosen = mrml.through_plane_orientation(node)
    slice_direction = matrix(node)[:3, 2] / np.linalg.norm(matrix(node)[:3, 2])
    costs = {name: abs(np.dot(normal, slice_direction)) for name, normal in layout._ORIENTATION_NORMALS.items()}
    assert costs[chosen] == min(costs.values())


def test_comparison_layout_links_one_view_per_volume(mrml_scene, oblique):
    scene = mrml_scene.scene
    node = mrml.node_from_volume(oblique, "p", scene)
    outputs = [mrml.super_resolve_node(node, m, factor=2) for m in ("linear", "bspline")]
    comparison = mrml.show_comparison([node, *outputs])

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == mrml.COMPARISON_LAYOUT_ID
    assert layout.GetLayoutDescription(mrml.COMPARISON_LAYOUT_ID).count("vtkMRMLSliceNode") == 3
    assert [c.GetBackgroundVolumeID() for c in comparison.composite_nodes] == \
        [n.GetID() for n in (node, *outputs)]
    assert all(c.GetLinkedControl() == 1 for c in comparison.composite_nodes)
    assert [s.GetLayoutName() for s in comparison.slice_nodes] == ["LatentSR1", "LatentSR2", "LatentSR3"]
    assert {s.GetOrientation() for s in comparison.slice_nodes} == {comparison.orientation}
    # Fitted to the same volume: all views start at the same place with the same field of view.
    to_ras = [nodes._matrix_to_array(s.GetSliceToRAS()) for s in comparison.slice_nodes]
    np.testing.assert_allclose(to_ras[0], to_ras[2])
    np.testing.assert_allclose(comparison.slice_nodes[0].GetFieldOfView(), comparison.slice_nodes[1].GetFieldOfView())

    # Shown again with fewer views: the same layout id, updated; composite nodes re-pointed.
    again = mrml.show_comparison([outputs[1], node], orientation="Coronal")
    assert layout.GetLayoutDescription(mrml.COMPARISON_LAYOUT_ID).count("vtkMRMLSliceNode") == 2
    assert [c.GetBackgroundVolumeID() for c in again.composite_nodes] == [outputs[1].GetID(), node.GetID()]
    assert again.slice_nodes[0] is comparison.slice_nodes[0]
    assert again.slice_nodes[0].GetOrientation() == "Coronal"


def test_comparison_of_sequences_shows_their_proxies(mrml_scene):
    frames = [Volume(np.full((1, 3, 6, 6), t, np.float32), (1.0, 1.0, 4.0)) for t in range(3)]
    sequence = cine_sequence(mrml_scene.scene, frames)
    (out,) = mrml.super_resolve_and_compare(sequence, ["linear"], factor=2)   # shows the comparison
    browser = mrml.browsers_of(sequence)[0]
    composites = sorted((mrml_scene.scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                         for i in range(mrml_scene.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))),
                        key=lambda c: c.GetLayoutName())
    assert [c.GetBackgroundVolumeID() for c in composites] == \
        [browser.GetProxyNode(sequence).GetID(), browser.GetProxyNode(out).GetID()]


# ---------------------------------------------------------------------------------------------
# LatentSR.py itself, with small stand-ins for Qt, the application and the parameter node wrapper
def test_comparison_gives_unbrowsed_sequences_one_browser(mrml_scene):
    frames = [Volume(np.full((1, 3, 6, 6), t, np.float32), (1.0, 1.0, 4.0)) for t in range(3)]
    sequence = cine_sequence(mrml_scene.scene, frames, browser=False)
    (out,) = mrml.super_resolve_and_compare(sequence, ["bspline"], factor=2)
    (browser,) = mrml.browsers_of(sequence)
    assert mrml.browsers_of(out) == [browser]
    assert mrml.proxy_volume(out) is not None and mrml.proxy_volume(sequence) is not None
