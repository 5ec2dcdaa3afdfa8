"""The Slicer module's panel (LatentSR.py) on a real MRML scene, with stand-ins for Qt and Slicer's GUI.

slicer-core has no Qt, so the module's Widget, Logic and Test classes cannot run as they do in
Slicer. These stand-ins are just enough to execute their code paths (state changes, calls into
LatentSRLib.slicer, background runs polled by a timer, error handling, cancel) against a real MRML
scene; the .ui bindings themselves are checked statically in test_module_static.py.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import stat
import sys
import time
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed")

import LatentSRLib.slicer as mrml  # noqa: E402
from LatentSRLib.slicer import checking, install, jobs, options  # noqa: E402
from LatentSRLib.volume import Volume  # noqa: E402
import slicer_standins as standins  # noqa: E402
from mrml_fixtures import cine_sequence, mrml_scene, node_ids, oblique  # noqa: E402,F401
from slicer_standins import run_timer  # noqa: E402

pytestmark = pytest.mark.mrml

MODULE_DIR = Path(__file__).resolve().parents[1] / "LatentSR"


SHIM = """import runpy, sys
from LatentSRLib import methods, pipeline
# No weights or torch needed: "ae" runs linear interpolation (in the registry and its views).
pipeline.METHODS["ae"] = pipeline.METHODS["linear"]
methods._BY_NAME["ae"] = methods._BY_NAME["linear"]
sys.argv = sys.argv[2:]
runpy.run_module("LatentSRLib.background", run_name="__main__")
"""


@pytest.fixture
def worker_python(tmp_path, monkeypatch):
    """The background worker's interpreter: this one, with "ae" mapped to linear interpolation."""
    (tmp_path / "shim.py").write_text(SHIM)
    script = tmp_path / "python-shim"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "shim.py"}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(jobs, "python_executable", lambda: str(script))
    monkeypatch.setattr(checking, "python_executable", lambda: str(script))
    return str(script)


@pytest.fixture
def latentsr_module(mrml_scene, monkeypatch, worker_python):
    """LatentSR.py imported with the stand-ins of slicer_standins.py; yields (module, fakes)."""
    fakes = standins.new_fakes()
    standins.install(fakes, monkeypatch.setitem, lambda obj, name, value: monkeypatch.setattr(obj, name, value, raising=False))
    module = standins.load_module_file(monkeypatch.setitem)
    # No bundled weights are needed: the "ae" entry runs linear interpolation in these tests.
    from LatentSRLib import methods, pipeline
    monkeypatch.setitem(pipeline.METHODS, "ae", pipeline.METHODS["linear"])
    monkeypatch.setitem(methods._BY_NAME, "ae", methods._BY_NAME["linear"])
    yield module, fakes


@pytest.fixture
def make_panel(latentsr_module):
    """Makes the module's widget (set up, after the test loaded its data); removes its observers
    before the scene is cleared, as Slicer does when it closes."""
    module, _ = latentsr_module
    widgets = []

    def make():
        widget = module.LatentSRWidget()
        widget.setup()
        widgets.append(widget)
        return widget
    yield make
    for widget in widgets:
        widget.cleanup()


def test_module_metadata(latentsr_module):
    module, _ = latentsr_module
    parent = types.SimpleNamespace()
    module.LatentSR(parent)
    assert parent.title == "LatentSR" and parent.categories == ["Filtering"]
    assert "2010.13172" in parent.helpText and "2310.15767" in parent.helpText
    assert "10.1109/TMI.2018.2837502" in parent.acknowledgementText


def test_panel_super_resolves_a_cine_and_shows_the_comparison(latentsr_module, make_panel, mrml_scene):
    module, fakes = latentsr_module
    frames = [Volume(np.full((1, 4, 10, 12), t, np.float32), (1.5, 1.5, 6.0)) for t in range(3)]
    mrml.node_from_volume(frames[0], "single", mrml_scene.scene)
    sequence = cine_sequence(mrml_scene.scene, frames, name="cine")
    widget = make_panel()  # after the data is loaded, so it picks its default input from the scene
    parameters, ui = widget._parameterNode, widget.ui

    assert parameters.inputNode is sequence                       # a cine is preferred
    assert [ui.deviceComboBox.itemData(i) for i in range(2)] == ["auto", "cpu"]
    assert "4 -> 13 slices" in ui.outputDescriptionLabel.text      # isotropic: 6 / 1.5 = x4
    assert ui.superResolveButton.enabled and not ui.factorSpinBox.enabled
    parameters.sizeMode = "factor"
    parameters.factor = 2
    assert ui.factorSpinBox.enabled and "4 -> 7 slices" in ui.outputDescriptionLabel.text
    parameters.compareLanczos = False
    parameters.outputPrefix = "case"
    assert parameters.method == "flow"                             # the default: what wins on the test sets
    parameters.method = "ae"

    ui.superResolveButton.click()
    assert ui.superResolveButton.text == "Cancel" and not ui.inputsCollapsibleButton.enabled
    assert run_timer(widget) >= 1                                  # the GUI thread was free meanwhile
    assert fakes.errors == []
    assert "Created" in ui.statusLabel.text and '"case AE x2"' in ui.statusLabel.text
    outputs = [mrml_scene.scene.GetFirstNodeByName(name) for name in ("case AE x2", "case B-spline x2")]
    assert all(o is not None and o.IsA("vtkMRMLSequenceNode") for o in outputs)
    assert widget._lastNodes == [sequence, *outputs]
    assert ui.showComparisonButton.enabled and ui.superResolveButton.text == "Super-resolve"
    assert not ui.progressBar.visible and ui.inputsCollapsibleButton.enabled
    layout = mrml_scene.scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == mrml.COMPARISON_LAYOUT_ID
    ui.showComparisonButton.click()
    assert fakes.errors == []


def test_panel_cancel_and_errors_leave_the_scene_unchanged(latentsr_module, make_panel, mrml_scene, oblique):
    module, fakes = latentsr_module
    frames = [Volume(np.full((1, 4, 10, 12), t, np.float32), (1.5, 1.5, 6.0)) for t in range(4)]
    widget = make_panel()
    ui = widget.ui
    widget._parameterNode.inputNode = cine_sequence(mrml_scene.scene, frames, name="cine")
    before = node_ids(mrml_scene.scene)

    # The user clicks the button (now "Cancel") while the run is in the background.
    ui.superResolveButton.click()
    job = widget.runner.job
    assert ui.superResolveButton.text == "Cancel" and job is not None
    ui.superResolveButton.click()
    assert ui.statusLabel.text.startswith("Cancelled")
    assert node_ids(mrml_scene.scene) == before
    assert ui.superResolveButton.text == "Super-resolve" and not widget.runner.running
    assert job.job.process.poll() is not None and not job.job.folder.exists()  # no process, no files left

    widget._parameterNode.inputNode = mrml.node_from_volume(oblique, "thin", mrml_scene.scene)
    roi = mrml_scene.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "away")
    roi.SetCenter(1000, 0, 0)
    widget._parameterNode.roi = roi
    assert "holds no voxel" in ui.outputDescriptionLabel.text
    before = node_ids(mrml_scene.scene)
    ui.superResolveButton.click()
    assert fakes.errors and "holds no voxel" in fakes.errors[-1]
    assert node_ids(mrml_scene.scene) == before


def test_logic_installs_what_is_missing(latentsr_module, monkeypatch):
    module, fakes = latentsr_module
    missing = [["torch", "scikit-image"], []]
    monkeypatch.setattr(install, "missing_requirements", lambda methods, **needs: missing[0] if fakes.pip == [] else missing[1])
    statuses: list[str] = []
    questions: list[str] = []
    assert mrml.ensure_requirements(["ae"], confirm=lambda text: questions.append(text) or True,
                                    report=statuses.append)
    assert "torch: runs the learned" in questions[0]
    assert fakes.pip == ["torch>=2.0", "scikit-image>=0.21"]   # no PyTorch extension here: pip, minimum versions
    assert statuses[-1] == "Installed torch, scikit-image."


def test_too_old_packages_are_upgraded_and_a_loaded_one_asks_for_a_restart(latentsr_module, monkeypatch):
    """SciPy 1.5 installed (and, as in Slicer, already imported): upgrading it needs a restart, because
    Python cannot unload the old extension modules."""
    import scipy  # noqa: F401  (loaded, as Slicer loads it)
    module, fakes = latentsr_module
    real = install.installed_version
    monkeypatch.setattr(install, "installed_version",
                        lambda name: "1.5.4" if name == "scipy" and not fakes.pip else real(name))
    assert install.outdated_requirements(["linear"]) == {"scipy": "1.5.4"}
    restarts: list[str] = []
    questions: list[str] = []
    assert not mrml.ensure_requirements(["linear"], confirm=lambda text: questions.append(text) or True,
                                        restart=restarts.append)
    assert "scipy: version 1.5.4 is installed, LatentSR needs 1.10 or later" in questions[0]
    assert fakes.pip == ["scipy>=1.10"]
    assert len(restarts) == 1 and "restart Slicer" in restarts[0]
    assert install.outdated_requirements(["linear"]) == {}
    assert mrml.ensure_requirements(["linear"])  # after the restart (the new version is what is installed)


def test_minimum_versions_are_those_of_pyproject():
    text = (MODULE_DIR.parent / "pyproject.toml").read_text()
    dependencies = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))]
    declared = dict(re.findall(r'"([A-Za-z0-9_-]+)(?:\[[^\]]*\])?>=([0-9.]+)"', dependencies))
    assert {name: declared[name] for name in install.MINIMUM_VERSIONS} == install.MINIMUM_VERSIONS
    needed = set(install._needed([name for name, _ in mrml.methods()], scoring=True))  # what the panel may install
    assert needed <= set(install.MINIMUM_VERSIONS)


def test_gpus_are_listed_by_a_probe_process_and_refreshed_on_entering(latentsr_module, make_panel, tmp_path, monkeypatch):
    """The device list comes from a separate process (torch is never imported into Slicer for it); a GPU
    that appears later (driver or torch installed meanwhile) shows up when the user enters the module."""
    module, _ = latentsr_module
    answer = tmp_path / "gpus.json"
    answer.write_text("[]")
    probe = tmp_path / "python-probe"   # stands in for the interpreter the probe runs: answers from a file
    probe.write_text(f'#!/bin/sh\ncat "{answer}"\n')
    probe.chmod(0o755)
    monkeypatch.setattr(jobs, "python_executable", lambda: str(probe))
    real = options.importlib.util.find_spec   # torch "installed", whatever this environment has
    monkeypatch.setattr(options.importlib.util, "find_spec", lambda name, *a: object() if name == "torch" else real(name, *a))
    widget = make_panel()
    combo = widget.ui.deviceComboBox

    def settle() -> list:
        deadline = time.monotonic() + 30
        while widget._deviceTimer.isActive():
            assert time.monotonic() < deadline
            time.sleep(0.05)
            widget._deviceTimer.slot()
        return [combo.itemData(i) for i in range(combo.count())]
    assert settle() == ["auto", "cpu"]
    answer.write_text('[["cuda:0", "GPU 0: Test GPU"]]')
    widget.enter()
    assert settle() == ["auto", "cpu", "cuda:0"]
    assert combo._items[0][0] == "Automatic (GPU 0: Test GPU)"


def test_module_self_test_runs(latentsr_module, capsys):
    """The module's self-test as scripts/slicer_self_test.py runs it inside Slicer (here on the stand-ins)."""
    spec = importlib.util.spec_from_file_location("slicer_self_test", MODULE_DIR.parent / "scripts" / "slicer_self_test.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main() == 0, capsys.readouterr().err[-3000:]


def test_a_failed_run_shows_its_log(latentsr_module, make_panel, mrml_scene, tmp_path):
    """The worker fails (a weights file that is not one): the panel shows one readable message, and
    Show log opens the worker's whole log, kept after the run's folder is gone."""
    module, fakes = latentsr_module
    frames = [Volume(np.full((1, 4, 10, 12), t, np.float32), (1.5, 1.5, 6.0)) for t in range(2)]
    widget = make_panel()
    ui = widget.ui
    widget._parameterNode.inputNode = cine_sequence(mrml_scene.scene, frames, name="cine")
    junk = tmp_path / "not-weights.pt"
    junk.write_bytes(b"these are not weights")
    widget._parameterNode.method = "contrastive"
    widget._parameterNode.model = str(junk)
    assert not ui.showLogButton.visible
    before = node_ids(mrml_scene.scene)
    ui.superResolveButton.click()
    run_timer(widget)
    assert len(fakes.errors) == 1 and "not-weights.pt" in fakes.errors[0]
    assert node_ids(mrml_scene.scene) == before
    assert ui.showLogButton.visible
    ui.showLogButton.click()
    (log,) = fakes.opened
    assert Path(log).is_file() and "not-weights.pt" in Path(log).read_text()
    parameters = widget._parameterNode
    parameters.method, parameters.model = "linear", ""
    ui.superResolveButton.click()                     # the next run hides the button again
    run_timer(widget)
    assert not ui.showLogButton.visible and len(fakes.errors) == 1


def test_conventional_methods_need_nothing_a_stock_slicer_lacks():
    """SciPy and SimpleITK ship with Slicer; scikit-image (SSIM, PSNR) is asked for only by a check."""
    assert set(install._needed(["linear", "bspline", "lanczos"])) == {"SimpleITK", "scipy"}
    assert "scikit-image" in install._needed(["linear"], scoring=True)
    assert set(install._needed(["flow"], resampling_check=False)) == {"SimpleITK", "scipy", "opencv-python-headless"}
    assert "torch" in install._needed(["flow"])   # the cross-fade check is a small torch network
