"""The comparison layout: side-by-side, linked slice views that cut through the acquired slices.

Works in full Slicer (the layout manager makes the views after the layout is switched) and
headless with slicer-core (slice logics made here, as the layout manager would).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import slicer

from .. import LatentSRError
from ..volume import slice_axis
from .nodes import LPS_TO_RAS, _geometry_volume
from .sequences import _browse_together, browsers_of, proxy_volume

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
    # New slice nodes copy the scene's default slice node, whose orientation presets (Axial, Sagittal,
    # Coronal) Slicer's application logic adds when it gets the scene; a bare scene has none, and
    # SetOrientation then fails. The static AddDefaultSliceOrientationPresets(scene) fills the scene's
    # default node (vtkMRMLSliceNode.cxx), not the node it is called on: so call it before adding nodes.
    default = scene.GetDefaultNodeByClass("vtkMRMLSliceNode")
    if default is None or default.GetNumberOfSliceOrientationPresets() == 0:
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
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
    fit_volume = proxy_volume(fit_to) if fit_to is not None else _fitted_by_default(volumes)

    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode") or scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    xml = _layout_xml(len(volumes), orientation)
    if layout.IsLayoutDescription(COMPARISON_LAYOUT_ID):
        layout.SetLayoutDescription(COMPARISON_LAYOUT_ID, xml)
    else:
        layout.AddLayoutDescription(COMPARISON_LAYOUT_ID, xml)
    layout.SetViewArrangement(COMPARISON_LAYOUT_ID)  # in Slicer, the layout manager now makes the views

    app_logic = app_logic if app_logic is not None else _application_logic()
    logics = _view_logics(scene, len(volumes), app_logic)
    slice_nodes, composite_nodes = [], []
    for logic, volume in zip(logics, volumes):
        slice_node = logic.GetSliceNode()
        slice_node.SetViewGroup(COMPARISON_VIEW_GROUP)
        slice_node.SetOrientation(orientation)
        composite = logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(1)
        slice_nodes.append(slice_node)
        composite_nodes.append(composite)
    _fit(logics, fit_volume)
    return Comparison(COMPARISON_LAYOUT_ID, orientation, volumes, slice_nodes, composite_nodes)


def _fitted_by_default(items: list):
    """The view all are fitted to unless told otherwise: the second (the first output, the ROI crop
    when one was used), else the only one."""
    return items[1 if len(items) > 1 else 0]


def _view_logics(scene, count: int, app_logic) -> list:
    """The slice logics of comparison views LatentSR1 ... LatentSR<count>."""
    return [_slice_logic(scene, f"{COMPARISON_VIEW_PREFIX}{number}", app_logic) for number in range(1, count + 1)]


def _fit(logics: list, volume) -> None:
    """Fit the first view to ``volume`` at its current size; the others copy its plane (fitting each
    would snap the slice offset to the voxel grid of each view's own background, which differs)."""
    width, height = logics[0].GetSliceNode().GetDimensions()[:2]
    logics[0].FitSliceToVolume(volume, width, height)
    for logic in logics[1:]:
        _copy_slice_geometry(logics[0].GetSliceNode(), logic.GetSliceNode())


def fit_comparison_views(scene: "slicer.vtkMRMLScene | None" = None, app_logic=None) -> bool:
    """Fit the comparison views again at their current sizes; False when none is shown.

    In Slicer the layout manager makes the views when :func:`show_comparison` switches the layout,
    but Qt gives them their final sizes only once it lays the window out, after that call returned
    (``Base/QTGUI/qSlicerLayoutManager.cxx``); a fit with the sizes read then is off. The panel calls
    this from a zero-delay timer, which runs after that layout.
    """
    scene = scene or slicer.mrmlScene
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None or layout.GetViewArrangement() != COMPARISON_LAYOUT_ID:
        return False
    app_logic = app_logic if app_logic is not None else _application_logic()
    logics = _view_logics(scene, layout.GetLayoutDescription(COMPARISON_LAYOUT_ID).count("vtkMRMLSliceNode"), app_logic)
    volume = scene.GetNodeByID(_fitted_by_default(logics).GetSliceCompositeNode().GetBackgroundVolumeID() or "")
    if volume is None:
        return False
    _fit(logics, volume)
    return True

