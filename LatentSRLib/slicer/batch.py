"""Super-resolution of nodes in the calling thread: one node, one node with several methods, the scene.

Every function here is all or nothing: when a method fails or the user cancels, nothing new is left
in the scene and the input is unchanged. The panel runs the same work in a background process
(:mod:`.jobs`); these functions are the scripting interface (Slicer's Python console) and what
the jobs reuse to make nodes.
"""

from __future__ import annotations

from typing import Callable, Sequence

import slicer

from .. import LatentSRError
from ..pipeline import LEARNED, Cancelled, Run, choose_factor, super_resolve
from ..volume import slice_axis
from .layout import show_comparison
from .nodes import volume_from_node
from .options import describe_output
from .outputs import add_result, is_result, output_name, remove_output
from .roi import crop_to_roi
from .sequences import browsers_of, sequence_of_proxy

ProgressCallback = Callable[[float], None]
CancelCallback = Callable[[], bool]


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
    volume = volume_from_node(node)
    if roi is not None:
        volume = crop_to_roi(volume, node, roi)
    axis = slice_axis(volume) if axis is None else axis
    factor = choose_factor(volume, factor, spacing, axis)
    run = Run(device=device, weights=weights, progress=_cancel_aware_progress(progress, cancel), cancel=cancel)
    result = super_resolve(volume, method, factor, axis=axis, run=run)
    name = name or output_name(node.GetName(), method, factor)

    confidence = getattr(run, "confidence", None)  # methods that yield one (see pipeline.Run)
    return add_result(node, result, method, factor, name, confidence)


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
        for browser in browsers_of(sequence):  # every sequence's proxies, results' too: never inputs themselves
            proxy = browser.GetProxyNode(sequence)
            if proxy is not None:
                proxies.add(proxy.GetID())
        if is_result(sequence) or sequence.GetNumberOfDataNodes() == 0:
            continue
        first = sequence.GetNthDataNode(0)
        if not first.IsA("vtkMRMLScalarVolumeNode") or first.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        sequences.append(sequence)
    volumes = []
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        if node.IsA("vtkMRMLLabelMapVolumeNode") or is_result(node) or node.GetID() in proxies:
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
