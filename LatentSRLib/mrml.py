"""3D Slicer's scene <-> the library: everything below the LatentSR panel, without Qt.

This is the only module of the library that imports Slicer (its MRML and logic classes, all of which
also work headless with ``slicer-core`` from PyPI). The Slicer module ``LatentSR.py`` is a thin
shell: each of its buttons calls one function here.

Geometry. A Slicer volume node maps voxel (i, j, k) to RAS millimetres with its IJKToRAS matrix
(directions x spacing, plus origin). A :class:`~LatentSRLib.volume.Volume` holds the same
geometry in ITK's LPS convention. The two differ only by the sign of the first two world axes, so
``direction_lps = diag(-1, -1, 1) @ direction_ras`` and ``origin_lps = diag(-1, -1, 1) @ origin_ras``;
array axes (Z, Y, X) are (k, j, i). Oblique directions convert exactly.

Outputs are new nodes named "<input> <LABEL> x<factor>" (e.g. "patient001 AE x4"); the input is
never modified. A cine (``vtkMRMLSequenceNode`` of volumes) becomes a new sequence with the same
index values, added to the input's sequence browser so both play in sync. Nodes are made only
after processing has succeeded, and removed again if making them fails: a cancelled or failed run
leaves the scene as it was.

ROI cropping (optional, ``roi=`` a ``vtkMRMLMarkupsROINode``): before processing, the input is
cropped to the voxels whose centres lie inside the box that the ROI's eight corners span *in the
input's own index space* (corners taken in the input's coordinate system, after any parent
transforms). Nothing is resampled: the crop keeps the input's spacing, directions and voxel values,
and its origin moves to the first kept voxel. For an ROI that is rotated relative to the volume's
grid, that box is somewhat larger than the ROI. The crop must keep at least two slices.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from . import LatentSRError
from .pipeline import LABELS, LEARNED, METHODS, Cancelled, Run, choose_factor, output_geometry, \
    super_resolve
from .volume import Volume, find_images, slice_axis, to_pixel_type, volume_name, write

#: LPS <-> RAS: negate the first two world axes (the map is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Node attributes that mark LatentSR outputs (and so keep them out of "every volume in the scene").
ATTRIBUTE_METHOD = "LatentSR.Method"
ATTRIBUTE_FACTOR = "LatentSR.Factor"
ATTRIBUTE_SOURCE = "LatentSR.SourceNodeID"
#: Layout id of the comparison layout (any id not used by Slicer's built-in layouts).
COMPARISON_LAYOUT_ID = 15150
#: Layout names of the comparison views: LatentSR1, LatentSR2, ...
COMPARISON_VIEW_PREFIX = "LatentSR"
#: View group of the comparison views, so linking them does not also drive Slicer's Red/Yellow/Green.
COMPARISON_VIEW_GROUP = 7
_VIEW_COLORS = ("#3D7A99", "#E17012", "#6E9E4A", "#B8529A", "#C9A227", "#7A6BB0")
_ORIENTATION_NORMALS = {"Sagittal": (1.0, 0.0, 0.0), "Coronal": (0.0, 1.0, 0.0), "Axial": (0.0, 0.0, 1.0)}
#: Slice logics made here when no application creates them (headless); kept alive per scene and view.
_HEADLESS_SLICE_LOGICS: dict[tuple[int, str], "slicer.vtkMRMLSliceLogic"] = {}

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]


# ---------------------------------------------------------------------------------------------
# Volume nodes <-> Volume
# ---------------------------------------------------------------------------------------------

def _matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(volume: Volume) -> np.ndarray:
    """The 4x4 IJKToRAS matrix of a volume (Slicer's voxel-to-world map)."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ volume.direction @ np.diag(volume.spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(volume.origin)
    return matrix


def node_ijk_to_ras(node: "slicer.vtkMRMLVolumeNode") -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _matrix_to_array(matrix)


def _node_array(node: "slicer.vtkMRMLVolumeNode") -> np.ndarray:
    """A copy of a volume node's voxels as a (k, j, i) array in the node's own scalar type."""
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise LatentSRError(f"volume '{node.GetName()}' has no image data")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise LatentSRError(f"volume '{node.GetName()}' has {scalars.GetNumberOfComponents()} components per "
                            "voxel; a scalar (grey-level) volume is needed")
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(dims[::-1]).copy()


def _volume_from_scalar_node(node: "slicer.vtkMRMLVolumeNode") -> Volume:
    array = _node_array(node)
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    direction_ras = _matrix_to_array(directions)[:3, :3]
    return Volume(array[None].astype(np.float32), node.GetSpacing(),
                  tuple(LPS_TO_RAS @ np.asarray(node.GetOrigin())), LPS_TO_RAS @ direction_ras, array.dtype)


def _sequence_frames(sequence: "slicer.vtkMRMLSequenceNode") -> list:
    frames = [sequence.GetNthDataNode(i) for i in range(sequence.GetNumberOfDataNodes())]
    if not frames:
        raise LatentSRError(f"sequence '{sequence.GetName()}' is empty")
    for frame in frames:
        if frame is None or not frame.IsA("vtkMRMLScalarVolumeNode") or frame.IsA("vtkMRMLLabelMapVolumeNode"):
            kind = frame.GetClassName() if frame is not None else "nothing"
            raise LatentSRError(f"sequence '{sequence.GetName()}' holds {kind}, not grey-level volumes")
    return frames


def _index_spacing(sequence: "slicer.vtkMRMLSequenceNode") -> tuple[float, float]:
    """(origin, spacing) of a sequence's index values when they are evenly spaced numbers, else (0, 1)."""
    try:
        values = [float(sequence.GetNthIndexValue(i)) for i in range(sequence.GetNumberOfDataNodes())]
    except ValueError:
        return 0.0, 1.0
    if len(values) < 2:
        return (values[0] if values else 0.0), 1.0
    steps = np.diff(values)
    if np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-3):
        return values[0], float(steps[0])
    return values[0], 1.0


def volume_from_node(node: "slicer.vtkMRMLNode") -> Volume:
    """A scalar volume node, or a sequence of them, as a :class:`Volume` (a copy; LPS geometry).

    A sequence becomes one 4D volume (T = its number of items, in index order), the way a 4D file
    is read, so every frame is normalised together exactly as ``latentsr super-resolve`` does.

    Raises:
        LatentSRError: not a scalar volume (or a sequence of them), no image data, several
            components, or frames of a sequence that differ in size or geometry.
    """
    if node is None:
        raise LatentSRError("no input node was given")
    if node.IsA("vtkMRMLSequenceNode"):
        frames = _sequence_frames(node)
        first = _volume_from_scalar_node(frames[0])
        reference = node_ijk_to_ras(frames[0])
        arrays = [first.array[0]]
        for number, frame in enumerate(frames[1:], start=2):
            if not np.allclose(node_ijk_to_ras(frame), reference, atol=1e-6):
                raise LatentSRError(f"frame {number} of '{node.GetName()}' has another geometry than frame 1")
            array = _node_array(frame)
            if array.shape != arrays[0].shape:
                raise LatentSRError(f"frame {number} of '{node.GetName()}' has another size than frame 1")
            arrays.append(array.astype(np.float32))
        time_origin, time_spacing = _index_spacing(node)
        return dataclasses.replace(first, array=np.stack(arrays), time_origin=time_origin,
                                   time_spacing=time_spacing, is_4d=True, direction=first.direction.copy())
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise LatentSRError(f"'{node.GetName()}' is a label map (segmentation), not an image")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise LatentSRError(f"'{node.GetName()}' is a {node.GetClassName()}, not a scalar volume or a sequence")
    return _volume_from_scalar_node(node)


def _set_image(node: "slicer.vtkMRMLScalarVolumeNode", array_kji: np.ndarray) -> None:
    array_kji = np.ascontiguousarray(array_kji)
    image = vtk.vtkImageData()
    image.SetDimensions(*array_kji.shape[::-1])
    scalars = numpy_support.numpy_to_vtk(array_kji.ravel(), deep=True,
                                         array_type=numpy_support.get_vtk_array_type(array_kji.dtype))
    image.GetPointData().SetScalars(scalars)
    node.SetAndObserveImageData(image)


def _set_geometry(node: "slicer.vtkMRMLVolumeNode", volume: Volume) -> None:
    directions = np.eye(4)
    directions[:3, :3] = LPS_TO_RAS @ volume.direction
    node.SetIJKToRASDirectionMatrix(_array_to_matrix(directions))
    node.SetSpacing(*volume.spacing)
    node.SetOrigin(*(LPS_TO_RAS @ np.asarray(volume.origin)))


def _frame_node(volume: Volume, t: int, cast: bool) -> "slicer.vtkMRMLScalarVolumeNode":
    node = slicer.vtkMRMLScalarVolumeNode()
    array = volume.array[t]
    _set_image(node, to_pixel_type(array, volume.pixel_type) if cast else array)
    _set_geometry(node, volume)
    return node


def node_from_volume(volume: Volume, name: str, scene: "slicer.vtkMRMLScene | None" = None,
                     frame: int | None = None, cast: bool = True) -> "slicer.vtkMRMLScalarVolumeNode":
    """A new scalar volume node in ``scene`` holding one frame of ``volume`` with its exact geometry.

    Args:
        frame: which frame of a 4D volume (needed when it has several; see :func:`sequence_from_volume`).
        cast: store samples in the volume's source pixel type (rounded and clipped for integer
            types, as files written by the command line are); else float32.
    """
    scene = scene or slicer.mrmlScene
    if frame is None:
        if volume.n_frames != 1:
            raise LatentSRError(f"the volume has {volume.n_frames} frames: pick one, or make a sequence")
        frame = 0
    node = _frame_node(volume, frame, cast)
    node.SetName(name)
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    return node


def sequence_from_volume(volume: Volume, name: str, scene: "slicer.vtkMRMLScene | None" = None,
                         index_values: Sequence[str] | None = None, cast: bool = True,
                         like: "slicer.vtkMRMLSequenceNode | None" = None) -> "slicer.vtkMRMLSequenceNode":
    """A new sequence node with one scalar volume per frame of ``volume``, in order.

    Args:
        index_values: one string per frame (default: time origin + t * time spacing).
        like: a sequence whose index name, unit and type are copied.
    """
    scene = scene or slicer.mrmlScene
    if index_values is None:
        index_values = [f"{volume.time_origin + t * volume.time_spacing:g}" for t in range(volume.n_frames)]
    if len(index_values) != volume.n_frames:
        raise LatentSRError(f"{len(index_values)} index values for {volume.n_frames} frames")
    sequence = slicer.vtkMRMLSequenceNode()
    sequence.SetName(name)
    if like is not None:
        sequence.SetIndexName(like.GetIndexName())
        sequence.SetIndexUnit(like.GetIndexUnit())
        sequence.SetIndexType(like.GetIndexType())
    for t, value in enumerate(index_values):
        frame = _frame_node(volume, t, cast)
        frame.SetName(f"{name}_{t:04d}")
        sequence.SetDataNodeAtValue(frame, str(value))  # stores a copy of the frame node
    scene.AddNode(sequence)
    return sequence


# ---------------------------------------------------------------------------------------------
# ROI cropping
# ---------------------------------------------------------------------------------------------

def _to_world(node: "slicer.vtkMRMLNode") -> np.ndarray:
    """4x4 map from a transformable node's own coordinates to world (identity without transforms)."""
    parent = node.GetParentTransformNode() if hasattr(node, "GetParentTransformNode") else None
    if parent is None:
        return np.eye(4)
    matrix = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(parent, None, matrix):
        raise LatentSRError(f"'{node.GetName()}' is under a non-linear transform: harden it first "
                            "(Data module, right-click, Harden transform)")
    return _matrix_to_array(matrix)


def roi_corners_ras(roi: "slicer.vtkMRMLMarkupsROINode") -> np.ndarray:
    """The ROI's eight corners in world RAS, shape (8, 3) (rotation and parent transforms included)."""
    half = np.asarray(roi.GetSize(), dtype=float) / 2
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
    corners = np.c_[signs * half, np.ones(8)]
    object_to_world = _matrix_to_array(roi.GetObjectToWorldMatrix())
    return (object_to_world @ corners.T).T[:, :3]


def roi_box(volume: Volume, corners_lps: np.ndarray) -> tuple[slice, slice, slice]:
    """(Z, Y, X) index slices of the voxels of ``volume`` whose centres lie in the index-space box
    spanned by ``corners_lps`` (points in LPS mm)."""
    linear = volume.direction @ np.diag(volume.spacing)
    index_xyz = np.linalg.solve(linear, (np.asarray(corners_lps) - np.asarray(volume.origin)).T).T
    # A corner placed on a voxel centre keeps that voxel despite rounding in the matrix product.
    low = np.ceil(index_xyz.min(axis=0) - 1e-6).astype(int)
    high = np.floor(index_xyz.max(axis=0) + 1e-6).astype(int)
    size_xyz = volume.array.shape[:0:-1]
    low = np.maximum(low, 0)
    high = np.minimum(high, np.asarray(size_xyz) - 1)
    if np.any(high < low):
        raise LatentSRError("the ROI holds no voxel of the volume (does it overlap it?)")
    return tuple(slice(int(low[a]), int(high[a]) + 1) for a in (2, 1, 0))


def crop_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The voxels of ``volume`` inside a (Z, Y, X) index box, with the origin moved to the box's corner."""
    start_xyz = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
    origin = np.asarray(volume.origin) + volume.direction @ (np.asarray(volume.spacing) * start_xyz)
    cropped = volume.with_array(np.ascontiguousarray(volume.array[(slice(None), *box)]))
    cropped.origin = tuple(float(o) for o in origin)
    return cropped


def crop_to_roi(volume: Volume, node: "slicer.vtkMRMLNode", roi: "slicer.vtkMRMLMarkupsROINode") -> Volume:
    """Crop a volume read from ``node`` to the ROI (see the module notes for the exact geometry)."""
    placed = _geometry_node(node)
    world_to_local = np.linalg.inv(_to_world(placed)) if placed is not None else np.eye(4)
    corners = (world_to_local @ np.c_[roi_corners_ras(roi), np.ones(8)].T).T[:, :3]
    cropped = crop_volume(volume, roi_box(volume, corners @ LPS_TO_RAS.T))
    axis = slice_axis(volume)
    if cropped.array.shape[1 + axis] < 2:
        raise LatentSRError(f"the ROI '{roi.GetName()}' holds fewer than 2 slices of '{node.GetName()}': "
                            "enlarge it along the slice direction")
    return cropped


# ---------------------------------------------------------------------------------------------
# Super-resolution of nodes
# ---------------------------------------------------------------------------------------------

def output_name(base: str, method: str, factor: int) -> str:
    """The name of an output node: "<base> <LABEL> x<factor>", e.g. "patient001 AE x4"."""
    return f"{base} {LABELS.get(method, method)} x{factor}"


def _first_volume_node(node: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLVolumeNode":
    """The node whose voxel geometry stands for ``node``: itself, or the first frame of a sequence."""
    if node.IsA("vtkMRMLSequenceNode"):
        return _sequence_frames(node)[0]
    return node


def _geometry_node(node: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLVolumeNode | None":
    """The node in the scene that places ``node`` in the world: itself, or a sequence's proxy volume
    (sequence items are not in the scene and have no parent transform of their own)."""
    return proxy_volume(node) if node.IsA("vtkMRMLSequenceNode") else node


def browsers_of(sequence: "slicer.vtkMRMLSequenceNode") -> list:
    """Sequence browser nodes that play ``sequence`` (found in the scene; no Sequences logic needed)."""
    scene = sequence.GetScene()
    if scene is None:
        return []
    browsers = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
        if browser.IsSynchronizedSequenceNodeID(sequence.GetID(), True):  # True: the primary one too
            browsers.append(browser)
    return browsers


def sequence_of_proxy(node: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLSequenceNode | None":
    """The sequence a browser's proxy node shows (None when ``node`` is not a proxy node)."""
    scene = node.GetScene() if node is not None else None
    if scene is None:
        return None
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
        sequences = vtk.vtkCollection()
        browser.GetSynchronizedSequenceNodes(sequences, True)
        for j in range(sequences.GetNumberOfItems()):
            sequence = sequences.GetItemAsObject(j)
            if browser.GetProxyNode(sequence) is node:
                return sequence
    return None


def proxy_volume(node: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLVolumeNode | None":
    """The volume node that displays ``node``: itself, or the proxy of a browsed sequence."""
    if not node.IsA("vtkMRMLSequenceNode"):
        return node
    for browser in browsers_of(node):
        proxy = browser.GetProxyNode(node)
        if proxy is not None:
            return proxy
    return None


def _copy_display(source: "slicer.vtkMRMLVolumeNode | None", target: "slicer.vtkMRMLVolumeNode | None") -> None:
    """Show ``target`` with ``source``'s colours and window/level: the same grey scale makes a fair comparison."""
    if source is None or target is None or source.GetDisplayNode() is None:
        return
    if target.GetDisplayNode() is None:
        target.CreateDefaultDisplayNodes()
    source_display, target_display = source.GetDisplayNode(), target.GetDisplayNode()
    if target_display is None or not source_display.IsA("vtkMRMLScalarVolumeDisplayNode"):
        return
    if source_display.GetColorNodeID():
        target_display.SetAndObserveColorNodeID(source_display.GetColorNodeID())
    target_display.SetAutoWindowLevel(False)
    target_display.SetWindowLevel(source_display.GetWindow(), source_display.GetLevel())


def _place_beside(source: "slicer.vtkMRMLNode", target: "slicer.vtkMRMLNode") -> None:
    """Same parent transform and subject-hierarchy folder as the input, so outputs overlay and group with it."""
    source_display, target_display = _geometry_node(source), _geometry_node(target)
    if source_display is not None and target_display is not None and source_display.GetScene() is not None \
            and target_display.GetScene() is not None:
        target_display.SetAndObserveTransformNodeID(source_display.GetTransformNodeID())
    # Look the hierarchy up without creating one (GetSubjectHierarchyNode would add it to a bare scene).
    hierarchy = target.GetScene().GetFirstNodeByClass("vtkMRMLSubjectHierarchyNode")
    if hierarchy is None:
        return
    source_item = hierarchy.GetItemByDataNode(source)
    target_item = hierarchy.GetItemByDataNode(target)
    if source_item and target_item:
        hierarchy.SetItemParent(target_item, hierarchy.GetItemParent(source_item))


def _mark_output(node: "slicer.vtkMRMLNode", source: "slicer.vtkMRMLNode", method: str, factor: int) -> None:
    node.SetAttribute(ATTRIBUTE_METHOD, method)
    node.SetAttribute(ATTRIBUTE_FACTOR, str(factor))
    node.SetAttribute(ATTRIBUTE_SOURCE, source.GetID() or "")


def _remove_nodes(scene: "slicer.vtkMRMLScene", nodes: Iterable) -> None:
    for node in nodes:
        if node is None or node.GetScene() is None:
            continue
        if node.IsA("vtkMRMLDisplayableNode"):
            for i in range(node.GetNumberOfDisplayNodes()):
                display = node.GetNthDisplayNode(i)
                if display is not None and display.GetScene() is not None:
                    scene.RemoveNode(display)
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
            scene.RemoveNode(node.GetStorageNode())
        scene.RemoveNode(node)


def _cancel_aware_progress(progress: ProgressCallback | None, cancel: CancelCallback | None) -> ProgressCallback | None:
    """Report progress, then honour a pending cancel at once (even inside a method that polls rarely)."""
    if progress is None and cancel is None:
        return None

    def report(fraction: float) -> None:
        if progress is not None:
            progress(fraction)
        if cancel is not None and cancel():
            raise Cancelled("cancelled by the user")
    return report


def super_resolve_node(node: "slicer.vtkMRMLNode", method: str, factor: int | None = None,
                       spacing: float | None = None, device: str = "auto",
                       progress: ProgressCallback | None = None, cancel: CancelCallback | None = None,
                       weights: str | None = None, roi: "slicer.vtkMRMLMarkupsROINode | None" = None,
                       name: str | None = None, axis: int | None = None) -> "slicer.vtkMRMLNode":
    """Super-resolve a volume or cine node through-plane into a new node in the same scene.

    Args:
        node: a ``vtkMRMLScalarVolumeNode``, or a ``vtkMRMLSequenceNode`` of them (a cine).
        method: one of :data:`LatentSRLib.pipeline.METHODS` ("ae", "contrastive", "linear", ...).
        factor, spacing: integer factor, or target slice spacing in mm; with neither, as near
            isotropic as an integer factor allows (see :func:`LatentSRLib.pipeline.choose_factor`).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (learned methods).
        progress: called with the fraction done in [0, 1].
        cancel: polled while processing; returning True stops the run with :class:`Cancelled`.
        weights: bundled model name or weights file (learned methods; None: the bundled default).
        roi: crop to this ROI before processing (see the module notes).
        name: the output's name (default "<input name> <LABEL> x<factor>").
        axis: slice axis as an index into (Z, Y, X) = (k, j, i); default the largest spacing.

    Returns:
        A new ``vtkMRMLScalarVolumeNode`` for a volume, or a new ``vtkMRMLSequenceNode`` for a cine
        (with the input's index values, added to every browser that plays the input). It has
        (n - 1) * factor + 1 slices, spacing s / factor along the slice axis, the input's origin,
        directions and pixel type, and its grey scale.

    Raises:
        LatentSRError: unusable input or options; :class:`Cancelled` when ``cancel`` fired. In both
            cases no new node is left in the scene and the input is unchanged.
    """
    if node is None or node.GetScene() is None:
        raise LatentSRError("the input node must be in a scene")
    scene = node.GetScene()
    volume = volume_from_node(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    axis = slice_axis(volume) if axis is None else axis
    factor = choose_factor(volume, factor, spacing, axis)
    run = Run(device=device, weights=weights, progress=_cancel_aware_progress(progress, cancel), cancel=cancel)
    result = super_resolve(volume, method, factor, axis=axis, run=run)
    name = name or output_name(node.GetName(), method, factor)

    made: list = []
    try:
        if node.IsA("vtkMRMLSequenceNode"):
            values = [node.GetNthIndexValue(i) for i in range(node.GetNumberOfDataNodes())]
            output = sequence_from_volume(result, name, scene, values, like=node)
            made.append(output)
            _mark_output(output, node, method, factor)
            for browser in browsers_of(node):
                browser.AddSynchronizedSequenceNode(output)
                browser.SetOverwriteProxyName(output, True)
                proxy = browser.GetProxyNode(output)  # made by the Sequences logic, where one is running
                if proxy is not None:
                    made.append(proxy)
                    proxy.SetName(name)
                    _mark_output(proxy, node, method, factor)
                    _copy_display(browser.GetProxyNode(node), proxy)
        else:
            output = node_from_volume(result, name, scene)
            made.append(output)
            _mark_output(output, node, method, factor)
            _copy_display(node, output)
        _place_beside(node, output)
    except BaseException:
        if made:
            remove_output(made[0])
        _remove_nodes(scene, reversed(made[1:]))
        raise
    return output


def super_resolve_and_compare(node: "slicer.vtkMRMLNode", methods: Sequence[str], factor: int | None = None,
                              spacing: float | None = None, device: str = "auto",
                              progress: ProgressCallback | None = None, cancel: CancelCallback | None = None,
                              weights: str | None = None, roi: "slicer.vtkMRMLMarkupsROINode | None" = None,
                              prefix: str | None = None, show: bool = True,
                              whole_sequence: bool = True) -> list:
    """The panel's Super-resolve button: run each method in turn, then show them side by side.

    Args:
        methods: the main method first, then the comparisons (e.g. ["ae", "bspline", "lanczos"]).
        prefix: replaces the input's name at the start of the output names.
        show: lay out linked through-plane views of the input and every output.
        whole_sequence: when ``node`` is a browser's proxy volume, process its whole sequence.
        Other arguments as :func:`super_resolve_node`; ``weights`` applies to learned methods.

    Returns:
        The new nodes, one per method, in order. All or nothing: when one method fails or the user
        cancels, the outputs of the methods already done are removed again.
    """
    if not methods:
        raise LatentSRError("choose at least one method")
    if whole_sequence and node is not None and not node.IsA("vtkMRMLSequenceNode"):
        node = sequence_of_proxy(node) or node
    outputs: list = []
    try:
        for number, method in enumerate(methods):
            def part(fraction: float, number: int = number) -> None:
                if progress is not None:
                    progress((number + fraction) / len(methods))
            chosen = None
            if prefix:
                chosen = output_name(prefix, method, describe_output(node, factor, spacing, roi).factor)
            outputs.append(super_resolve_node(
                node, method, factor, spacing, device=device, progress=part, cancel=cancel,
                weights=weights if method in LEARNED else None, roi=roi, name=chosen))
    except BaseException:
        for output in reversed(outputs):
            remove_output(output)
        raise
    if show:
        show_comparison([node, *outputs])
    return outputs


def remove_output(node: "slicer.vtkMRMLNode") -> None:
    """Remove an output node made here, with its display nodes, and its proxies from browsers."""
    scene = node.GetScene()
    if scene is None:
        return
    extra = []
    if node.IsA("vtkMRMLSequenceNode"):
        for browser in browsers_of(node):
            proxy = browser.GetProxyNode(node)
            browser.RemoveSynchronizedSequenceNode(node.GetID())
            if proxy is not None:
                extra.append(proxy)
    _remove_nodes(scene, [node, *extra])


def _is_output(node: "slicer.vtkMRMLNode") -> bool:
    return node.GetAttribute(ATTRIBUTE_METHOD) is not None


def scene_inputs(scene: "slicer.vtkMRMLScene | None" = None) -> list:
    """Every image in the scene that :func:`super_resolve_scene` would process.

    Grey-level volume nodes and sequences of them; not label maps, not LatentSR outputs, and not a
    browser's proxy volume (its sequence is processed instead).
    """
    scene = scene or slicer.mrmlScene
    proxies = set()
    sequences = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")):
        sequence = scene.GetNthNodeByClass(i, "vtkMRMLSequenceNode")
        if _is_output(sequence) or sequence.GetNumberOfDataNodes() == 0:
            continue
        first = sequence.GetNthDataNode(0)
        if not first.IsA("vtkMRMLScalarVolumeNode") or first.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        sequences.append(sequence)
        for browser in browsers_of(sequence):
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None:
                proxies.add(proxy.GetID())
    volumes = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or _is_output(node) or node.GetID() in proxies:
            continue
        image = node.GetImageData()
        if image is None or image.GetNumberOfScalarComponents() != 1:  # empty, or colour/vector images
            continue
        volumes.append(node)
    return volumes + sequences


def super_resolve_scene(method: str, factor: int | None = None, spacing: float | None = None,
                        device: str = "auto", scene: "slicer.vtkMRMLScene | None" = None,
                        progress: ProgressCallback | None = None, cancel: CancelCallback | None = None,
                        weights: str | None = None) -> list:
    """Super-resolve every image in the scene (see :func:`scene_inputs`); returns the new nodes.

    All or nothing, as :func:`super_resolve_and_compare`.
    """
    inputs = scene_inputs(scene)
    outputs: list = []
    try:
        for number, node in enumerate(inputs):
            def part(fraction: float, number: int = number) -> None:
                if progress is not None:
                    progress((number + fraction) / len(inputs))
            outputs.append(super_resolve_node(node, method, factor, spacing, device=device, progress=part,
                                              cancel=cancel, weights=weights))
    except BaseException:
        for output in reversed(outputs):
            remove_output(output)
        raise
    return outputs


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _dimension(path: Path) -> int:
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise LatentSRError(f"cannot read {path}") from None
    return reader.GetDimension()


def load_file(path: str | os.PathLike, scene: "slicer.vtkMRMLScene | None" = None,
              name: str | None = None) -> "slicer.vtkMRMLNode":
    """Load an image file into the scene with Slicer's readers.

    A 3D file becomes a scalar volume node; a 4D file (cine) a sequence node with a browser, as
    Slicer's "Add data" does for a volume sequence.
    """
    scene = scene or slicer.mrmlScene
    path = Path(path)
    if not path.is_file():
        raise LatentSRError(f"no such file: {path} (DICOM folders: load them with the DICOM module)")
    name = name or volume_name(path)
    if _dimension(path) == 4:
        node = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    else:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        _remove_nodes(scene, [node])
        raise LatentSRError(f"Slicer cannot read {path}")
    if node.IsA("vtkMRMLSequenceNode"):
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        set_primary_sequence(browser, node)
    else:
        node.CreateDefaultDisplayNodes()
    return node


def set_primary_sequence(browser: "slicer.vtkMRMLSequenceBrowserNode", sequence: "slicer.vtkMRMLSequenceNode") -> None:
    # Slicer 5.8 renamed "master" to "primary"; support both.
    setter = getattr(browser, "SetAndObservePrimarySequenceNodeID", None) or \
        browser.SetAndObserveMasterSequenceNodeID
    setter(sequence.GetID())


def save_node(node: "slicer.vtkMRMLNode", path: str | os.PathLike, overwrite: bool = True,
              protect: Sequence[str | os.PathLike] = ()) -> Path:
    """Write a volume or cine node to a file (3D, or 4D with time last), as the command line writes."""
    return write(volume_from_node(node), path, overwrite=overwrite, protect=protect)


def process_folder(paths: Sequence[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike,
                   method: str, factor: int | None = None, spacing: float | None = None, device: str = "auto",
                   weights: str | None = None, suffix: str = ".nii.gz", overwrite: bool = False,
                   keep: bool = False, scene: "slicer.vtkMRMLScene | None" = None,
                   progress: ProgressCallback | None = None,
                   cancel: CancelCallback | None = None) -> list[Path]:
    """Load each image file (folders are searched; masks skipped), super-resolve it, save the result.

    Output files are ``<out_dir>/<name>_<method>_x<factor><suffix>``. Inputs and outputs are removed
    from the scene after each file unless ``keep``. Returns the written paths.
    """
    scene = scene or slicer.mrmlScene
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [f for f in find_images(paths) if f.is_file()]
    if not files:
        raise LatentSRError(f"no image files in {', '.join(map(str, paths))}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for number, path in enumerate(files):
        def part(fraction: float, number: int = number) -> None:
            if progress is not None:
                progress((number + fraction) / len(files))
        node = load_file(path, scene)
        output = None
        try:
            output = super_resolve_node(node, method, factor, spacing, device=device, weights=weights,
                                        progress=part, cancel=cancel)
            chosen = int(output.GetAttribute(ATTRIBUTE_FACTOR))
            target = out_dir / f"{volume_name(path)}_{method}_x{chosen}{suffix}"
            written.append(save_node(output, target, overwrite=overwrite, protect=files))
        finally:
            if not keep:
                if output is not None:
                    remove_output(output)
                _remove_loaded(node)
    return written


def _remove_loaded(node: "slicer.vtkMRMLNode") -> None:
    scene = node.GetScene()
    if scene is None:
        return
    extra = []
    if node.IsA("vtkMRMLSequenceNode"):
        for browser in browsers_of(node):
            proxy = browser.GetProxyNode(node)
            extra.extend([browser] + ([proxy] if proxy is not None else []))
    _remove_nodes(scene, [*extra, node])


# ---------------------------------------------------------------------------------------------
# What the panel shows before running
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OutputDescription:
    """What super-resolving an input will produce (for the panel's resolution label)."""

    factor: int
    axis: int                              # slice axis as an index into (Z, Y, X)
    spacing_in: tuple[float, float, float]  # (x, y, z) mm
    spacing_out: tuple[float, float, float]
    slices_in: int
    slices_out: int
    frames: int

    def __str__(self) -> str:
        sizes = " x ".join(f"{s:.2f}" for s in self.spacing_out)
        text = (f"x{self.factor}: {self.slices_in} -> {self.slices_out} slices, "
                f"{self.spacing_in[2 - self.axis]:.2f} -> {self.spacing_out[2 - self.axis]:.2f} mm apart "
                f"(voxels {sizes} mm)")
        return text + (f", {self.frames} frames" if self.frames > 1 else "")


def _geometry_volume(node: "slicer.vtkMRMLNode") -> Volume:
    """A Volume with ``node``'s geometry and shape but no voxel copy (a zero-stride view)."""
    first = _first_volume_node(node)
    image = first.GetImageData()
    if image is None:
        raise LatentSRError(f"volume '{first.GetName()}' has no image data")
    frames = node.GetNumberOfDataNodes() if node.IsA("vtkMRMLSequenceNode") else 1
    array = np.broadcast_to(np.float32(0), (frames, *image.GetDimensions()[::-1]))
    directions = vtk.vtkMatrix4x4()
    first.GetIJKToRASDirectionMatrix(directions)
    return Volume(array, first.GetSpacing(), tuple(LPS_TO_RAS @ np.asarray(first.GetOrigin())),
                  LPS_TO_RAS @ _matrix_to_array(directions)[:3, :3])


def describe_output(node: "slicer.vtkMRMLNode", factor: int | None = None, spacing: float | None = None,
                    roi: "slicer.vtkMRMLMarkupsROINode | None" = None, axis: int | None = None) -> OutputDescription:
    """The factor, spacing and slice count an input would get, without processing (or copying) it."""
    volume = _geometry_volume(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    axis = slice_axis(volume) if axis is None else axis
    factor = choose_factor(volume, factor, spacing, axis)
    slices = volume.array.shape[1 + axis]
    return OutputDescription(factor, axis, volume.spacing, output_geometry(volume, factor, axis), slices,
                             (slices - 1) * factor + 1, volume.n_frames)


def devices() -> list[tuple[str, str]]:
    """Compute devices to offer as (value, label): "auto" and "cpu", plus each GPU torch can see.

    Never imports torch when it is not installed (the panel installs it on first use).
    """
    found = [("cpu", "CPU")]
    if importlib.util.find_spec("torch") is not None:
        import torch
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            found.append((f"cuda:{index}", f"GPU {index}: {torch.cuda.get_device_name(index)}"))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            found.append(("mps", "GPU: Apple MPS"))
    best = found[1][1] if len(found) > 1 else "CPU"
    return [("auto", f"Automatic ({best})"), *found]


#: pip requirement -> importable module, for what each kind of method needs at run time.
_REQUIREMENTS_ALWAYS = {"SimpleITK": "SimpleITK", "scipy": "scipy", "scikit-image": "skimage"}
_REQUIREMENTS_LEARNED = {"torch": "torch"}


def missing_requirements(methods: Iterable[str]) -> list[str]:
    """pip requirements that the given methods need and that are not importable (torch first)."""
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LatentSRError(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})")
    needed = dict(_REQUIREMENTS_LEARNED) if any(m in LEARNED for m in methods) else {}
    needed.update(_REQUIREMENTS_ALWAYS)
    return [requirement for requirement, module in needed.items() if importlib.util.find_spec(module) is None]


# ---------------------------------------------------------------------------------------------
# Comparison layout
# ---------------------------------------------------------------------------------------------

def through_plane_orientation(node: "slicer.vtkMRMLNode") -> str:
    """The standard slice orientation ("Sagittal", "Coronal" or "Axial") that best cuts across the slices.

    Its plane must contain the input's slice direction (normal most perpendicular to it); among
    ties, the one closest to a plane of the volume's own grid (so rows of the view follow the
    acquired slices); then Sagittal before Coronal before Axial.
    """
    volume = _geometry_volume(node)
    axis_xyz = 2 - slice_axis(volume)
    direction_ras = LPS_TO_RAS @ volume.direction
    through = direction_ras[:, axis_xyz] / np.linalg.norm(direction_ras[:, axis_xyz])
    in_plane = [direction_ras[:, a] / np.linalg.norm(direction_ras[:, a]) for a in range(3) if a != axis_xyz]

    def cost(item: tuple[str, tuple[float, float, float]]) -> tuple[float, float]:
        normal = np.asarray(item[1])
        return round(abs(float(normal @ through)), 3), -round(max(abs(float(normal @ e)) for e in in_plane), 3)
    return min(_ORIENTATION_NORMALS.items(), key=cost)[0]


def _layout_xml(count: int, orientation: str) -> str:
    views = []
    for number in range(1, count + 1):
        views.append(
            f'<item><view class="vtkMRMLSliceNode" singletontag="{COMPARISON_VIEW_PREFIX}{number}">'
            f'<property name="orientation" action="default">{orientation}</property>'
            f'<property name="viewlabel" action="default">{number}</property>'
            f'<property name="viewcolor" action="default">{_VIEW_COLORS[(number - 1) % len(_VIEW_COLORS)]}</property>'
            f'<property name="viewgroup" action="default">{COMPARISON_VIEW_GROUP}</property>'
            "</view></item>")
    return f'<layout type="horizontal" split="true">{"".join(views)}</layout>'


def _application_logic():
    app = getattr(slicer, "app", None)
    return app.applicationLogic() if app is not None and hasattr(app, "applicationLogic") else None


def _slice_logic(scene: "slicer.vtkMRMLScene", layout_name: str, app_logic) -> "slicer.vtkMRMLSliceLogic":
    """The slice logic of a view: the application's (full Slicer, after the layout made the view)
    or, headless, one made and kept here, adding the slice node the way the layout manager would."""
    if app_logic is not None and hasattr(app_logic, "GetSliceLogicByLayoutName"):
        logic = app_logic.GetSliceLogicByLayoutName(layout_name)
        if logic is not None:
            return logic
    key = (id(scene), layout_name)
    logic = _HEADLESS_SLICE_LOGICS.get(key)
    slice_node = None
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        candidate = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if candidate.GetLayoutName() == layout_name:
            slice_node = candidate
    if logic is not None and logic.GetMRMLScene() is scene and logic.GetSliceNode() is slice_node \
            and slice_node is not None:
        return logic
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    if slice_node is None:
        slice_node = logic.AddSliceNode(layout_name)
    else:
        logic.SetSliceNode(slice_node)
    _HEADLESS_SLICE_LOGICS[key] = logic
    return logic


def _copy_slice_geometry(source: "slicer.vtkMRMLSliceNode", target: "slicer.vtkMRMLSliceNode") -> None:
    disabled = target.StartModify()
    target.GetSliceToRAS().DeepCopy(source.GetSliceToRAS())
    target.SetFieldOfView(*source.GetFieldOfView())
    target.SetXYZOrigin(*source.GetXYZOrigin())
    target.UpdateMatrices()
    target.EndModify(disabled)


def _browse_together(sequences: Sequence["slicer.vtkMRMLSequenceNode"]) -> None:
    """Give sequences that no browser plays one shared browser, so they can be shown and play in sync
    (Slicer's Sequences logic then makes their proxy volumes)."""
    if not sequences:
        return
    scene = sequences[0].GetScene()
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{sequences[0].GetName()} browser")
    set_primary_sequence(browser, sequences[0])
    for sequence in sequences[1:]:
        browser.AddSynchronizedSequenceNode(sequence)


@dataclasses.dataclass
class Comparison:
    """The views :func:`show_comparison` set up, in the order of its nodes."""

    layout_id: int
    orientation: str
    volumes: list
    slice_nodes: list
    composite_nodes: list


def show_comparison(nodes: Sequence["slicer.vtkMRMLNode"], orientation: str = "auto",
                    scene: "slicer.vtkMRMLScene | None" = None, fit_to: "slicer.vtkMRMLNode | None" = None,
                    app_logic=None) -> Comparison:
    """Show volumes side by side in linked slice views that cut through the slices.

    Registers (or updates) a horizontal layout with one slice view per node on the scene's layout
    node and switches to it. Each view shows one node as background, in the same orientation, with
    linked control, so panning, zooming and scrolling move all views together; all are fitted to
    the same volume, so they start at the same position.

    Args:
        nodes: volume nodes or sequences of them (shown through their browser's proxy volume;
            sequences that no browser plays get one, shared).
        orientation: "auto" (see :func:`through_plane_orientation`, computed from the first node), or
            "Axial", "Sagittal", "Coronal".
        fit_to: the volume all views are fitted to (default: the second node, e.g. the first output,
            which is the ROI crop when one was used; else the first).
        app_logic: Slicer's application logic (default ``slicer.app.applicationLogic()`` when there is one).
    """
    if not nodes:
        raise LatentSRError("nothing to compare")
    scene = scene or nodes[0].GetScene() or slicer.mrmlScene
    _browse_together([node for node in nodes if node.IsA("vtkMRMLSequenceNode") and not browsers_of(node)])
    volumes = []
    for node in nodes:
        volume = proxy_volume(node)
        if volume is None:
            raise LatentSRError(f"sequence '{node.GetName()}' has no browser to display it")
        volumes.append(volume)
    if orientation == "auto":
        orientation = through_plane_orientation(nodes[0])
    elif orientation not in _ORIENTATION_NORMALS:
        raise LatentSRError(f"unknown orientation '{orientation}' (use auto, {', '.join(_ORIENTATION_NORMALS)})")
    fit_volume = proxy_volume(fit_to) if fit_to is not None else volumes[1 if len(volumes) > 1 else 0]

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode") or scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    xml = _layout_xml(len(volumes), orientation)
    if layout.IsLayoutDescription(COMPARISON_LAYOUT_ID):
        layout.SetLayoutDescription(COMPARISON_LAYOUT_ID, xml)
    else:
        layout.AddLayoutDescription(COMPARISON_LAYOUT_ID, xml)
    layout.SetViewArrangement(COMPARISON_LAYOUT_ID)  # in Slicer, the layout manager now makes the views

    app_logic = app_logic if app_logic is not None else _application_logic()
    slice_nodes, composite_nodes = [], []
    for number, volume in enumerate(volumes, start=1):
        logic = _slice_logic(scene, f"{COMPARISON_VIEW_PREFIX}{number}", app_logic)
        slice_node = logic.GetSliceNode()
        if slice_node.GetNumberOfSliceOrientationPresets() == 0:
            slice_node.AddDefaultSliceOrientationPresets(scene)
        slice_node.SetViewGroup(COMPARISON_VIEW_GROUP)
        slice_node.SetOrientation(orientation)
        composite = logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(1)
        if not slice_nodes:
            width, height = slice_node.GetDimensions()[:2]
            logic.FitSliceToVolume(fit_volume, width, height)
        else:
            # Copy the first view's plane rather than fitting each: fitting snaps the slice offset to
            # the voxel grid of each view's own background, which differs between the volumes.
            _copy_slice_geometry(slice_nodes[0], slice_node)
        slice_nodes.append(slice_node)
        composite_nodes.append(composite)
    return Comparison(COMPARISON_LAYOUT_ID, orientation, volumes, slice_nodes, composite_nodes)


__all__ = [
    "Cancelled", "Comparison", "OutputDescription", "browsers_of", "crop_to_roi", "crop_volume", "describe_output",
    "devices", "ijk_to_ras", "load_file", "missing_requirements", "node_from_volume", "node_ijk_to_ras",
    "output_name", "process_folder", "proxy_volume", "remove_output", "roi_box", "roi_corners_ras", "save_node",
    "scene_inputs", "sequence_from_volume", "sequence_of_proxy", "set_primary_sequence", "show_comparison",
    "super_resolve_and_compare", "super_resolve_node", "super_resolve_scene", "through_plane_orientation",
    "volume_from_node",
]
