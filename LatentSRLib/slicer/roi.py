"""Cropping an input to a ``vtkMRMLMarkupsROINode`` before processing, without resampling.

The input is cropped to the voxels whose centres lie inside the box that the ROI's eight corners
span *in the input's own index space* (corners taken in the input's coordinate system, after any
parent transforms). Nothing is resampled: the crop keeps the input's spacing, directions and voxel
values, and its origin moves to the first kept voxel. For an ROI that is rotated relative to the
volume's grid, that box is somewhat larger than the ROI. The crop must keep at least two slices.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .. import LatentSRError
from ..volume import Volume, slice_axis
from .nodes import LPS_TO_RAS, _matrix_to_array
from .sequences import _geometry_node


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
