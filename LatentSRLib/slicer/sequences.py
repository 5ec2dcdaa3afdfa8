"""Cines in Slicer: sequence nodes of volumes, their browsers and proxy volumes.

A cine (``vtkMRMLSequenceNode`` of scalar volumes) is played by a sequence browser, which shows
the current frame through a proxy volume in the scene. Outputs of a cine are new sequences with
the same index values, added to the input's browser so both play in sync.
"""

from __future__ import annotations

from typing import Sequence

import slicer
import vtk

from .. import LatentSRError
from ..volume import Volume
from .nodes import _frame_node


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


def set_primary_sequence(browser: "slicer.vtkMRMLSequenceBrowserNode", sequence: "slicer.vtkMRMLSequenceNode") -> None:
    """Make ``sequence`` the one ``browser`` steps through (its index values are the browser's)."""
    # "Master" is the only name in every Slicer version: no SetAndObservePrimarySequenceNodeID exists
    # (checked on slicer-core 5.11.0.2, 5.12.4.0 and 5.13 by Testing/test_slicer_files.py), and Slicer's
    # own reader calls this one (Modules/Loadable/Sequences/qSlicerSequencesReader.cxx, load()).
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())


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
