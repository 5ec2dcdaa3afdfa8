"""Volume nodes <-> :class:`~LatentSRLib.volume.Volume`: exact geometry both ways.

A Slicer volume node maps voxel (i, j, k) to RAS millimetres with its IJKToRAS matrix (directions
x spacing, plus origin). A Volume holds the same geometry in ITK's LPS convention. The two differ
only by the sign of the first two world axes, so ``direction_lps = diag(-1, -1, 1) @ direction_ras``
and ``origin_lps = diag(-1, -1, 1) @ origin_ras``; array axes (Z, Y, X) are (k, j, i). Oblique
directions convert exactly. A sequence of volumes (a cine) becomes one 4D Volume.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .. import LatentSRError
from ..volume import Volume, to_pixel_type

#: LPS <-> RAS: negate the first two world axes (the map is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


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
    return Volume(array[None], node.GetSpacing(),  # held in carrier_dtype(array.dtype): exact
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
            arrays.append(array)
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


def _first_volume_node(node: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLVolumeNode":
    """The node whose voxel geometry stands for ``node``: itself, or the first frame of a sequence."""
    if node.IsA("vtkMRMLSequenceNode"):
        return _sequence_frames(node)[0]
    return node


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
