"""The module's self-test: the radiologist's click path on a generated cine, run the way the panel runs it.

``LatentSR.py``'s ``LatentSRTest`` calls :func:`run_click_path`; so do Slicer's ctest entry
(``slicer_add_python_unittest`` in ``LatentSR/CMakeLists.txt``), ``scripts/slicer_self_test.py``
(``Slicer --python-script``) and, on slicer-core with stand-ins for Qt, ``Testing/test_slicer_panel.py``.
It uses only what works in both: MRML nodes, the Sequences logic, and the functions the panel's
buttons call (:class:`.panel.PanelRunner` over background jobs, polled as the panel's timer polls).

Steps: write a small cine as ``.seq.nrrd`` and load it with Slicer's reader; super-resolve it with
two methods in the background (``flow``, which yields a confidence, and ``linear``); start a third run
and cancel it; play the cine; show the comparison and the confidence overlay; check every output
voxel of the acquired slices, the geometry, and that nothing of the cancelled run is left.
"""

from __future__ import annotations

import os
import tempfile
import time
import unittest
from typing import Callable

import numpy as np
import slicer

from . import sequences
from .batch import scene_inputs
from .files import load_file
from .jobs import start_job
from .layout import COMPARISON_LAYOUT_ID, show_comparison
from .nodes import volume_from_node
from .overlay import confidence_node, show_confidence
from .panel import PanelRunner

#: The generated cine: frames x slices x rows x columns, 8 mm between slices, 1.5 mm pixels.
SHAPE = (4, 5, 32, 36)
METHODS = ["flow", "linear"]


def generated_cine():
    """A beating bright disc (a ventricle's blood pool, roughly) in a 5-slice short-axis stack."""
    from ..volume import Volume

    t, z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    radius = 7 + 2 * np.cos(2 * np.pi * t / SHAPE[0]) - 0.6 * np.abs(z - 2)
    inside = (x - 18 - 0.8 * z) ** 2 + (y - 16) ** 2 < radius ** 2
    array = (60 + 140 * inside + 10 * np.sin(0.4 * x + 0.3 * y)).astype(np.float32)
    return Volume(array, (1.5, 1.5, 8.0), (-20.0, 15.0, 30.0), np.eye(3), np.int16, 0.05, 0.0, True)


def _temporary_folder() -> str:
    """A new folder in Slicer's temporary folder (Application settings) where there is one, else the system's."""
    from ..processes import temporary_root
    return tempfile.mkdtemp(prefix="LatentSR-selftest-", dir=temporary_root())


def _wait(runner: PanelRunner, update, seconds: float = 300.0):
    """Poll as the panel's timer does (every 0.2 s) until the run ends; returns the last update."""
    deadline = time.monotonic() + seconds
    while update.running:
        if time.monotonic() > deadline:
            runner.cancel()
            raise AssertionError(f"the background run did not finish in {seconds:.0f} s")
        time.sleep(0.2)
        update = runner.poll()
    return update


def run_click_path(test: unittest.TestCase, say: Callable[[str], None] = print) -> None:
    """Run the click path, asserting with ``test`` and telling each step with ``say``."""
    from ..volume import write

    scene = slicer.mrmlScene
    scene.Clear(0)
    folder = _temporary_folder()
    try:
        say("Load a generated cine (.seq.nrrd) with Slicer's sequence reader")
        cine = generated_cine()
        path = os.path.join(folder, "cine.seq.nrrd")
        write(cine, path)
        sequence = load_file(path, scene)
        test.assertEqual(sequence.GetNumberOfDataNodes(), SHAPE[0])
        browser = sequences.browsers_of(sequence)[0]
        proxy = browser.GetProxyNode(sequence)
        test.assertEqual(scene_inputs(scene), [sequence])

        say("Start a run and cancel it: the scene and the disk stay as they were")
        runner, count = PanelRunner(), scene.GetNumberOfNodes()
        update = runner.start(["bspline"], lambda: start_job(proxy, ["bspline"], factor=4))
        job = runner.job.job
        update = runner.cancel()
        test.assertFalse(update.running)
        test.assertTrue(update.status.startswith("Cancelled"), update.status)
        test.assertEqual(scene.GetNumberOfNodes(), count)
        test.assertIsNotNone(job.process.poll())
        test.assertFalse(job.folder.exists())

        say(f"Super-resolve with {' and '.join(METHODS)} in the background (the panel's Super-resolve)")
        # The re-sampling check is off: its torch network is not what this tests, and a stock Slicer has no torch.
        update = _wait(runner, runner.start(METHODS, lambda: start_job(proxy, METHODS, factor=2, resampling_check=False),
                                            resampling_check=False))
        test.assertIsNone(update.error, update.error)
        test.assertEqual(update.outputs[0], sequence)
        made = update.outputs[1:]
        acquired_geometry = volume_from_node(sequence)
        test.assertEqual([node.GetName() for node in made], ["cine Flow x2", "cine Linear x2"])
        for node in made:
            result = volume_from_node(node)
            test.assertEqual(result.array.shape, (SHAPE[0], 2 * SHAPE[1] - 1, *SHAPE[2:]))
            test.assertEqual(result.spacing, (1.5, 1.5, 4.0))
            test.assertEqual(result.origin, acquired_geometry.origin)
            np.testing.assert_array_equal(result.direction, acquired_geometry.direction)
            for t in range(SHAPE[0]):  # the acquired slices, bit for bit
                acquired = slicer.util.arrayFromVolume(sequence.GetNthDataNode(t))
                produced = slicer.util.arrayFromVolume(node.GetNthDataNode(t))
                test.assertEqual(produced.dtype, acquired.dtype)
                np.testing.assert_array_equal(produced[::2], acquired)

        say("Play the cine: results stay results, the comparison follows the frames")
        for number in [*range(SHAPE[0]), 1]:
            browser.SetSelectedItemNumber(number)
        test.assertEqual(scene_inputs(scene), [sequence])
        comparison = show_comparison([sequence, *made])
        test.assertEqual(comparison.layout_id, COMPARISON_LAYOUT_ID)
        shown = [composite.GetBackgroundVolumeID() for composite in comparison.composite_nodes]
        test.assertEqual(shown, [browser.GetProxyNode(node).GetID() for node in (sequence, *made)])
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(browser.GetProxyNode(made[1]))[::2],
                                      slicer.util.arrayFromVolume(sequence.GetNthDataNode(1)))
        layout_manager = slicer.app.layoutManager() if getattr(slicer, "app", None) is not None else None
        if layout_manager is not None:  # full Slicer: the views the layout manager made
            test.assertEqual(layout_manager.layout, COMPARISON_LAYOUT_ID)

        say("Show where flow is trusted (the confidence overlay)")
        confidence = confidence_node(browser.GetProxyNode(made[0]))
        test.assertIsNotNone(confidence)
        values = volume_from_node(confidence).array
        test.assertTrue(0.0 <= values.min() <= values.max() <= 1.0)
        changed = show_confidence(made[0], True, 0.5)
        test.assertEqual(changed, [comparison.composite_nodes[1]])
        test.assertEqual(changed[0].GetForegroundVolumeID(), sequences.proxy_volume(confidence).GetID())
        say("LatentSR self-test passed")
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
