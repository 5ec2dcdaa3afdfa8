"""Where to trust it: a method's confidence volume as a colour overlay on its result.

Methods that yield a confidence (``run.confidence``: float32 in [0, 1] on the output grid, 1 =
the method's own synthesis is trusted, 0 = it fell back to linear interpolation) get a confidence
node beside their output (see :func:`.outputs.add_result`). Here it is shown as the foreground of
every slice view whose background is that output, in a red (0) - yellow - green (1) colour table
fixed to [0, 1], with a colour legend and a given opacity. It is off until asked for.
"""

from __future__ import annotations

import slicer
import vtk

from .. import LatentSRError
from .outputs import ATTRIBUTE_CONFIDENCE, result_mark
from .sequences import proxy_volume

#: Name of the colour node made once per scene.
COLOR_NODE_NAME = "LatentSR confidence"
#: (value, r, g, b) stops of the colour table: not trusted (linear) red, trusted green.
COLOR_STOPS = ((0.0, 0.85, 0.15, 0.1), (0.5, 0.95, 0.85, 0.1), (1.0, 0.1, 0.75, 0.25))


def confidence_node(output: "slicer.vtkMRMLNode") -> "slicer.vtkMRMLNode | None":
    """The confidence node of an output (volume or sequence; a proxy volume is followed to its sequence)."""
    if output is None or output.GetScene() is None:
        return None
    node_id = result_mark(output, ATTRIBUTE_CONFIDENCE)
    return output.GetScene().GetNodeByID(node_id) if node_id else None


def color_node(scene: "slicer.vtkMRMLScene") -> "slicer.vtkMRMLProceduralColorNode":
    """The confidence colour table (made on first use)."""
    node = scene.GetFirstNodeByName(COLOR_NODE_NAME)
    if node is not None and node.IsA("vtkMRMLProceduralColorNode"):
        return node
    node = scene.AddNewNodeByClass("vtkMRMLProceduralColorNode", COLOR_NODE_NAME)
    function = vtk.vtkColorTransferFunction()
    for value, r, g, b in COLOR_STOPS:
        function.AddRGBPoint(value, r, g, b)
    node.SetAndObserveColorTransferFunction(function)
    node.SetAttribute("Category", "LatentSR")
    return node


def _legend(volume: "slicer.vtkMRMLVolumeNode") -> "slicer.vtkMRMLColorLegendDisplayNode":
    """The volume's colour legend display node (made on first use)."""
    for i in range(volume.GetNumberOfDisplayNodes()):
        display = volume.GetNthDisplayNode(i)
        if display is not None and display.IsA("vtkMRMLColorLegendDisplayNode"):
            return display
    # Made directly: Slicer's Colors module registers the class with the scene, a bare scene does not.
    legend = volume.GetScene().AddNode(slicer.vtkMRMLColorLegendDisplayNode())
    legend.SetAndObservePrimaryDisplayNode(volume.GetDisplayNode())
    legend.SetTitleText("Confidence")
    legend.SetLabelFormat("%.1f")
    volume.AddAndObserveDisplayNodeID(legend.GetID())
    return legend


def show_confidence(output: "slicer.vtkMRMLNode", visible: bool = True, opacity: float = 0.5) -> list:
    """Show (or hide) an output's confidence over it in every slice view that shows the output.

    Args:
        output: an output node (volume, sequence, or a sequence's proxy volume).
        visible: show the overlay and its legend, or remove them from the views.
        opacity: of the overlay, in [0, 1].

    Returns:
        The slice composite nodes changed.

    Raises:
        LatentSRError: the output has no confidence (its method does not yield one).
    """
    confidence = confidence_node(output)
    if confidence is None:
        raise LatentSRError(f"'{output.GetName()}' has no confidence volume (its method does not make one)")
    if not 0.0 <= opacity <= 1.0:
        raise LatentSRError(f"the opacity must be between 0 and 1, got {opacity}")
    scene = output.GetScene()
    shown, overlay = proxy_volume(output), proxy_volume(confidence)
    if shown is None or overlay is None:
        raise LatentSRError(f"'{output.GetName()}' is not displayed (its sequence has no browser)")
    if overlay.GetDisplayNode() is None:
        overlay.CreateDefaultDisplayNodes()
    display = overlay.GetDisplayNode()
    display.SetAndObserveColorNodeID(color_node(scene).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    legend = _legend(overlay)
    legend.SetVisibility(bool(visible))
    changed = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if composite.GetBackgroundVolumeID() != shown.GetID():
            continue
        if visible:
            composite.SetForegroundVolumeID(overlay.GetID())
            composite.SetForegroundOpacity(float(opacity))
        elif composite.GetForegroundVolumeID() == overlay.GetID():
            composite.SetForegroundVolumeID(None)
        changed.append(composite)
    return changed
