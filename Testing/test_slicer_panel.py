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
from LatentSRLib.slicer import checking, install, jobs  # noqa: E402
from LatentSRLib.volume import Volume  # noqa: E402
from mrml_fixtures import cine_sequence, mrml_scene, node_ids, oblique  # noqa: E402,F401

pytestmark = pytest.mark.mrml

MODULE_DIR = Path(__file__).resolve().parents[1] / "LatentSR"


class FakeWidget:
    """A widget from the .ui: the attributes LatentSR.py touches, and its signal connections."""

    def __init__(self, name: str, parameter: str | None = None):
        self.name, self._parameter = name, parameter
        self.enabled, self.visible, self.text, self.value, self.currentIndex = True, True, "", 0, -1
        self.slots: dict[str, list] = {}
        self._items: list[tuple[str, object]] = []

    def connect(self, signal: str, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)

    def click(self) -> None:
        for slot in self.slots.get("clicked(bool)", []):
            slot()

    def property(self, name: str):
        return self._parameter if name == "SlicerParameterName" else None

    def addItem(self, label: str, data=None) -> None:
        self._items.append((label, data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def findData(self, data) -> int:
        return next((i for i, (_, value) in enumerate(self._items) if value == data), -1)

    def itemData(self, index: int):
        return self._items[index][1]

    def clear(self) -> None:
        self._items, self.currentIndex = [], -1

    def insertItem(self, index: int, label: str, data=None) -> None:
        self._items.insert(index, (label, data))

    def blockSignals(self, block: bool) -> None:
        pass

    def count(self) -> int:
        return len(self._items)

    def setRowCount(self, rows: int) -> None:
        self.cells = [[None] * 4 for _ in range(rows)]

    def setItem(self, row: int, column: int, item) -> None:
        self.cells[row][column] = item.text


class FakeTimer:
    """qt.QTimer: the test fires it (see :func:`run_timer`)."""

    def __init__(self):
        self.slot, self.active = None, False

    def setInterval(self, msec: int) -> None:
        pass

    def connect(self, signal: str, slot) -> None:
        self.slot = slot

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def isActive(self) -> bool:
        return self.active


def run_timer(widget, seconds: float = 60.0, on_tick=None) -> int:
    """Fire the widget's timer, as Qt's event loop would, until it stops; returns the ticks."""
    ticks, deadline = 0, time.monotonic() + seconds
    while widget._timer.isActive():
        assert time.monotonic() < deadline, "the background run did not finish"
        time.sleep(0.05)
        if on_tick is not None:
            on_tick(ticks)
        if widget._timer.isActive():
            widget._timer.slot()
        ticks += 1
    return ticks


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


def fake_ui() -> types.SimpleNamespace:
    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "LatentSR.ui").getroot()
    widgets = {}
    for widget in list(root.iter("widget"))[1:]:
        parameter = next((p.findtext("string") for p in widget.findall("property")
                          if p.get("name") == "SlicerParameterName"), None)
        widgets[widget.get("name")] = FakeWidget(widget.get("name"), parameter)
    return types.SimpleNamespace(**widgets)


def fake_parameter_node_wrapper(cls):
    """Typed attributes over a vtkMRMLScriptedModuleNode (values kept in Python), with Modified events."""
    hints = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in hints}

    def init(self, parameterNode):
        object.__setattr__(self, "parameterNode", parameterNode)
        store = parameterNode.__dict__.setdefault("_values", dict(defaults))
        object.__setattr__(self, "_values", store)

    def setattr_(self, name, value):
        if name not in hints:
            raise AttributeError(name)
        self._values[name] = value
        self.parameterNode.Modified()

    cls.__init__ = init
    cls.__getattr__ = lambda self, name: self._values[name] if name in hints else object.__getattribute__(self, name)
    cls.__setattr__ = setattr_
    for name in hints:
        if name in cls.__dict__:
            delattr(cls, name)
    cls.connectGui = lambda self, gui: object()
    cls.disconnectGui = lambda self, tag: None
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    return cls


class FakeLayoutManager:
    """What the module's self-test asks of Slicer's layout manager, answered from the scene."""

    def __init__(self, scene):
        self.scene = scene

    @property
    def layout(self) -> int:
        return self.scene.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement()

    def sliceWidget(self, name: str):
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
            composite = self.scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            if composite.GetLayoutName() == name:
                return types.SimpleNamespace(mrmlSliceCompositeNode=lambda composite=composite: composite)
        return None


@pytest.fixture
def latentsr_module(mrml_scene, monkeypatch, worker_python):
    """LatentSR.py imported with stand-ins; yields (module, fakes)."""
    fakes = types.SimpleNamespace(errors=[], statuses=[], pip=[], files=[])

    class Parent:
        isEntered = True

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent or Parent()

        def setup(self):
            self.layout = types.SimpleNamespace(addWidget=lambda widget: None)

        def resourcePath(self, relative):
            return str(MODULE_DIR / "Resources" / relative)

        def onReload(self):
            pass

    class ScriptedLoadableModuleLogic:
        def getParameterNode(self):
            node = slicer.mrmlScene.GetSingletonNode("LatentSR", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag("LatentSR")
                node.SetModuleName("LatentSR")
                node = slicer.mrmlScene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(scripted, cls.__name__, cls)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = fake_parameter_node_wrapper
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    qt = types.ModuleType("qt")
    qt.QTimer = FakeTimer
    qt.QTableWidgetItem = lambda text: types.SimpleNamespace(text=text)
    qt.QFileDialog = types.SimpleNamespace(getOpenFileName=lambda *args: fakes.files.pop(0) if fakes.files else "")
    monkeypatch.setitem(sys.modules, "qt", qt)

    app = types.SimpleNamespace(
        processEvents=lambda: pytest.fail("the panel must not pump Qt events (processEvents)"),
        commandOptions=lambda: types.SimpleNamespace(testingEnabled=True),
        layoutManager=lambda: FakeLayoutManager(slicer.mrmlScene))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(), raising=False)
    util = slicer.util
    monkeypatch.setattr(util, "loadUI", lambda path: types.SimpleNamespace(setMRMLScene=lambda scene: None))
    monkeypatch.setattr(util, "childWidgetVariables", lambda widget: fake_ui())
    monkeypatch.setattr(util, "errorDisplay", lambda text, **kw: fakes.errors.append(text))
    monkeypatch.setattr(util, "showStatusMessage", lambda text, msec=0: fakes.statuses.append(text))
    monkeypatch.setattr(util, "confirmOkCancelDisplay", lambda text, **kw: True)
    monkeypatch.setattr(util, "WaitCursor", contextlib.nullcontext)
    monkeypatch.setattr(util, "pip_install", lambda requirements: fakes.pip.append(requirements))

    @contextlib.contextmanager
    def try_with_error_display(message=None, waitCursor=False):
        try:
            yield
        except Exception as error:
            fakes.errors.append(f"{message} {error}")
    monkeypatch.setattr(util, "tryWithErrorDisplay", try_with_error_display, raising=False)

    spec = importlib.util.spec_from_file_location("LatentSR", MODULE_DIR / "LatentSR.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "LatentSR", module)
    spec.loader.exec_module(module)
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
    monkeypatch.setattr(install, "missing_requirements", lambda methods: missing[0] if fakes.pip == [] else missing[1])
    statuses: list[str] = []
    questions: list[str] = []
    assert mrml.ensure_requirements(["ae"], confirm=lambda text: questions.append(text) or True,
                                    report=statuses.append)
    assert "torch: runs the learned" in questions[0]
    assert fakes.pip == ["torch>=2.0", "scikit-image"]   # no PyTorch extension here: pip
    assert statuses[-1] == "Installed torch, scikit-image."


def test_module_self_test_runs(latentsr_module):
    module, _ = latentsr_module
    result = unittest.TextTestRunner(stream=open(os.devnull, "w")).run(module.LatentSRTest("runTest"))
    assert result.wasSuccessful(), result.failures + result.errors


