"""Shared fixtures and helpers for the tests of LatentSRLib.slicer with slicer-core (no Qt).

Scene and logic set-up follows shared/SLICER_CORE.md. Import the fixtures by name in a test module.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

import LatentSRLib.slicer as mrml  # noqa: E402
from LatentSRLib.slicer import nodes  # noqa: E402
from LatentSRLib.volume import Volume  # noqa: E402


@pytest.fixture
def mrml_scene():
    """A fresh scene with the application, colours, volumes and sequences logics (as in Slicer)."""
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    volumes.SetMRMLApplicationLogic(app)
    app.SetModuleLogic("Volumes", volumes)
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    app.SetModuleLogic("Sequences", sequences)
    yield types.SimpleNamespace(scene=scene, app=app, volumes=volumes, sequences=sequences)
    scene.Clear(True)


def oblique_direction() -> np.ndarray:
    a, b = np.deg2rad(20), 0.3
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture
def oblique():
    """Small int16-typed volume: anisotropic spacing, oblique direction, non-zero origin."""
    rng = np.random.default_rng(0)
    array = np.rint(rng.normal(100, 20, size=(1, 6, 20, 24))).astype(np.float32)
    return Volume(array, (1.5, 1.25, 8.0), (-10.0, 25.0, 3.5), oblique_direction(), np.int16)


def node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def cine_sequence(scene, frames: list[Volume], name: str = "cine", values=None, browser: bool = True):
    """A sequence of volume nodes (and a browser playing it) from 3D volumes."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for t, volume in enumerate(frames):
        frame = nodes._frame_node(volume, 0, cast=True)
        sequence.SetDataNodeAtValue(frame, str(values[t]) if values else f"{0.04 * t:g}")
    if browser:
        node = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
        mrml.set_primary_sequence(node, sequence)
    return sequence
