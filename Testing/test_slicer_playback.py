"""Results keep their identity while a cine plays, on slicer-core's own Sequences logic.

When a browser changes frame, ``vtkSlicerSequencesLogic::UpdateProxyNodesFromSequences`` refreshes
each proxy from that frame's data node with ``vtkMRMLNode::CopyContent``, which replaces the proxy's
attributes with the frame's (Slicer ``Modules/Loadable/Sequences/Logic/vtkSlicerSequencesLogic.cxx``,
``Libs/MRML/Core/vtkMRMLNode.cxx``). slicer-core ships that same logic, so these tests play the
browser for real (``SetSelectedItemNumber``) instead of imitating it.
"""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

import LatentSRLib.slicer as lsr  # noqa: E402
from LatentSRLib.slicer import outputs  # noqa: E402
from LatentSRLib.volume import Volume  # noqa: E402
from mrml_fixtures import cine_sequence, mrml_scene, oblique  # noqa: E402,F401

pytestmark = pytest.mark.mrml


def moving_cine(frames: int = 4) -> list[Volume]:
    """A bright disc moving across a 4-slice stack, frame by frame (something flow can follow)."""
    z, y, x = np.meshgrid(np.arange(4), np.arange(24), np.arange(28), indexing="ij")
    return [Volume((100 + 80 * (((x - 8 - 2 * t - z) ** 2 + (y - 12) ** 2) < 30)).astype(np.float32)[None],
                   (1.5, 1.5, 8.0)) for t in range(frames)]


def play(browser, frames: int) -> None:
    """Show every frame in turn, then an inner one, as the Play button or the slider does."""
    for number in [*range(frames), 1]:
        browser.SetSelectedItemNumber(number)


def test_results_stay_results_while_the_cine_plays(mrml_scene, monkeypatch):
    scene = mrml_scene.scene
    sequence = cine_sequence(scene, moving_cine())
    browser = lsr.browsers_of(sequence)[0]
    assert mrml_scene.sequences.GetMRMLScene() is scene  # the real Sequences logic drives the proxies
    # flow yields a confidence volume, so the overlay's bookkeeping is played through too.
    made = lsr.super_resolve_and_compare(sequence, ["linear", "flow"], factor=2)  # and the comparison views
    proxies = [browser.GetProxyNode(node) for node in made]
    confidence = lsr.confidence_node(made[1])
    assert confidence is not None and None not in proxies

    play(browser, sequence.GetNumberOfDataNodes())
    frame = slicer.util.arrayFromVolume(proxies[0])
    np.testing.assert_array_equal(frame, slicer.util.arrayFromVolume(made[0].GetNthDataNode(1)))  # it played

    # The proxies' own attributes were replaced from the frames, which carry the marks too.
    assert [proxy.GetAttribute(outputs.ATTRIBUTE_METHOD) for proxy in proxies] == ["linear", "flow"]
    assert all(lsr.is_result(node) for node in [*made, *proxies])
    assert lsr.scene_inputs(scene) == [sequence]
    assert lsr.confidence_node(proxies[1]) is confidence  # the overlay still finds its node
    comparison = lsr.show_comparison([sequence, *made])  # the button, pressed after playing
    assert [c.GetBackgroundVolumeID() for c in comparison.composite_nodes] == [
        browser.GetProxyNode(node).GetID() for node in (sequence, *made)]
    changed = lsr.show_confidence(proxies[1], True, 0.5)
    assert changed == [comparison.composite_nodes[2]]
    assert changed[0].GetForegroundVolumeID() == browser.GetProxyNode(confidence).GetID()

    # Processing the scene after playback processes the real input only.
    before = scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")
    again = lsr.super_resolve_scene("linear", factor=2)
    assert [node.GetAttribute(outputs.ATTRIBUTE_SOURCE) for node in again] == [sequence.GetID()]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode") == before + 1


def test_a_proxy_whose_marks_were_wiped_is_still_known_by_its_sequence(mrml_scene):
    """Results made before the frames carried marks (scenes saved by an older LatentSR)."""
    scene = mrml_scene.scene
    sequence = cine_sequence(scene, moving_cine(3))
    browser = lsr.browsers_of(sequence)[0]
    made = lsr.super_resolve_and_compare(sequence, ["linear"], factor=2, show=False)[0]
    for i in range(made.GetNumberOfDataNodes()):
        made.GetNthDataNode(i).RemoveAttribute(outputs.ATTRIBUTE_METHOD)
    play(browser, 3)
    proxy = browser.GetProxyNode(made)
    assert proxy.GetAttribute(outputs.ATTRIBUTE_METHOD) is None  # wiped by playback, as in Slicer
    assert lsr.is_result(proxy) and lsr.scene_inputs(scene) == [sequence]


def test_comparison_views_on_a_bare_scene_get_the_orientation_asked_for(oblique):
    """A scene without Slicer's application logic has no slice orientation presets on its default
    slice node (the application logic adds them), so the views must get them before they are made."""
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    node = lsr.node_from_volume(oblique, "p", scene)
    output = lsr.super_resolve_node(node, "linear", factor=2)
    comparison = lsr.show_comparison([node, output], orientation="Coronal")
    assert [s.GetOrientation() for s in comparison.slice_nodes] == ["Coronal", "Coronal"]
    scene.Clear(True)


def test_comparison_views_are_fitted_again_at_the_size_qt_gives_them(mrml_scene, oblique):
    """In Slicer the new views get their size from Qt after show_comparison returned, and the view's
    resize reaches its slice node through vtkMRMLSliceLogic::ResizeSliceNode (called here, as the slice
    view does), which keeps the height of the field of view: in tall side-by-side columns the fitted
    volume is then cut off left and right until the views are fitted again."""
    from LatentSRLib.slicer import layout
    scene = mrml_scene.scene
    node = lsr.node_from_volume(oblique, "p", scene)
    output = lsr.super_resolve_node(node, "linear", factor=2)
    comparison = lsr.show_comparison([node, output])
    logics = [layout._slice_logic(scene, f"LatentSR{n}", None) for n in (1, 2)]

    def width_shown_and_needed() -> tuple[float, float]:
        first = comparison.slice_nodes[0]
        across = np.array([first.GetSliceToRAS().GetElement(i, 0) for i in range(3)])
        ijk_to_ras = lsr.node_ijk_to_ras(output)
        shape = slicer.util.arrayFromVolume(output).shape[::-1]
        corners = [ijk_to_ras @ np.array([*(c * (n - 1) for c, n in zip(corner, shape)), 1.0])
                   for corner in np.ndindex(2, 2, 2)]
        along = [float(np.dot(across, corner[:3])) for corner in corners]
        return first.GetFieldOfView()[0], max(along) - min(along)

    for logic in logics:
        logic.ResizeSliceNode(160, 640)   # a tall, narrow column of a side-by-side layout
    shown, needed = width_shown_and_needed()
    assert shown < 0.9 * needed           # cut off: what the user saw before
    assert lsr.fit_comparison_views(scene)
    shown, needed = width_shown_and_needed()
    assert shown >= needed
    np.testing.assert_allclose(comparison.slice_nodes[1].GetFieldOfView(), comparison.slice_nodes[0].GetFieldOfView())
    scene.GetFirstNodeByClass("vtkMRMLLayoutNode").SetViewArrangement(1)   # another layout: nothing to fit
    assert not lsr.fit_comparison_views(scene)
