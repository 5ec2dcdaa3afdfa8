"""Output nodes: names, marks, display, placement beside the input, and removal.

Outputs are new nodes named "<input> <LABEL> x<factor>" (e.g. "patient001 AE x4"); the input is
never modified. A cine becomes a new sequence with the same index values, added to the input's
browsers so both play in sync. Nodes are made only after processing has succeeded, and removed
again if making them fails: a cancelled or failed run leaves the scene as it was.
"""

from __future__ import annotations

import slicer

from ..pipeline import LABELS
from ..volume import Volume
from .nodes import _remove_nodes, node_from_volume
from .sequences import _geometry_node, browsers_of, sequence_from_volume, sequence_of_proxy

#: Node attributes that mark LatentSR outputs (and so keep them out of "every volume in the scene").
ATTRIBUTE_METHOD = "LatentSR.Method"
ATTRIBUTE_FACTOR = "LatentSR.Factor"
ATTRIBUTE_SOURCE = "LatentSR.SourceNodeID"
#: On an output: the ID of its confidence node (methods that yield one; see :mod:`.overlay`).
ATTRIBUTE_CONFIDENCE = "LatentSR.ConfidenceNodeID"


def output_name(base: str, method: str, factor: int) -> str:
    """The name of an output node: "<base> <LABEL> x<factor>", e.g. "patient001 AE x4"."""
    return f"{base} {LABELS.get(method, method)} x{factor}"


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
    """Mark ``node`` as a result; a sequence's every frame too. When a browser changes frame, the
    Sequences logic refreshes each proxy from the frame's data node with ``CopyContent``, which
    replaces the proxy's attributes with the frame's (Slicer ``vtkSlicerSequencesLogic::
    UpdateProxyNodesFromSequences`` -> ``vtkMRMLNode::CopyContent``, which copies ``Attributes``): marks
    kept on the frames reach the proxy again at every frame change."""
    nodes = [node]
    if node.IsA("vtkMRMLSequenceNode"):
        nodes += [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
    for marked in nodes:
        marked.SetAttribute(ATTRIBUTE_METHOD, method)
        marked.SetAttribute(ATTRIBUTE_FACTOR, str(factor))
        marked.SetAttribute(ATTRIBUTE_SOURCE, source.GetID() or "")


def result_mark(node: "slicer.vtkMRMLNode", attribute: str = ATTRIBUTE_METHOD) -> "str | None":
    """A LatentSR result mark of ``node`` (by default the method that made it; None for an input):
    read from the node, or for a browser's proxy from the sequence it shows, so a proxy whose
    attributes were replaced by playback still counts as the result it shows."""
    value = node.GetAttribute(attribute)
    if value is None and not node.IsA("vtkMRMLSequenceNode"):
        sequence = sequence_of_proxy(node)
        value = sequence.GetAttribute(attribute) if sequence is not None else None
    return value


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


def is_result(node: "slicer.vtkMRMLNode") -> bool:
    """Whether ``node`` is a LatentSR result (a volume, a result sequence, or a proxy showing one)."""
    return result_mark(node) is not None


def add_result(node: "slicer.vtkMRMLNode", result: Volume, method: str, factor: int, name: str,
               confidence: Volume | None = None) -> "slicer.vtkMRMLNode":
    """Make the output node(s) for ``result``, computed from ``node``: all or nothing.

    A volume for a volume input; for a cine, a sequence with the input's index values added to
    every browser that plays the input (with its proxy named, marked and shown in the input's grey
    scale). With ``confidence`` (on the output grid), a confidence node of the same kind named
    "<name> confidence" is made too and linked from the output (:data:`ATTRIBUTE_CONFIDENCE`).
    When anything fails, every node made here is removed again and the error is raised.
    """
    scene = node.GetScene()
    made: list = []
    try:
        output = _add_one(node, result, method, factor, name, made, grey=True)
        if confidence is not None:
            conf = _add_one(node, confidence, method, factor, f"{name} confidence", made, grey=False)
            output.SetAttribute(ATTRIBUTE_CONFIDENCE, conf.GetID())
    except BaseException:
        for first in [m for m in made if m.IsA("vtkMRMLSequenceNode")]:
            remove_output(first)
        _remove_nodes(scene, reversed(made))
        raise
    return output


def _add_one(node, result: Volume, method: str, factor: int, name: str, made: list, grey: bool):
    scene = node.GetScene()
    if node.IsA("vtkMRMLSequenceNode"):
        values = [node.GetNthIndexValue(i) for i in range(node.GetNumberOfDataNodes())]
        output = sequence_from_volume(result, name, scene, values, like=node, cast=grey)
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
                if grey:
                    _copy_display(browser.GetProxyNode(node), proxy)
    else:
        output = node_from_volume(result, name, scene, cast=grey)
        made.append(output)
        _mark_output(output, node, method, factor)
        if grey:
            _copy_display(node, output)
    _place_beside(node, output)
    return output
