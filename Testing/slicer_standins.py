"""Stand-ins for what a full 3D Slicer gives a scripted module and slicer-core lacks (Qt, the
application, ScriptedLoadableModule, parameterNodeWrapper), used to run ``LatentSR/LatentSR.py``
headless: by the panel tests, the module's self-test in CI and the start-up load test.

Each stand-in copies one behaviour of the real thing, named here with where it is in Slicer's source
(Slicer/Slicer):
- ``ScriptedLoadableModule`` / ``...Widget`` / ``...Logic`` / ``...Test``: the base classes of
  ``Base/Python/slicer/ScriptedLoadableModule.py``: the module keeps ``parent`` and fills in its metadata;
  the widget's ``setup`` gives it ``self.layout`` and ``resourcePath``; the logic's ``getParameterNode``
  returns the scene's singleton ``vtkMRMLScriptedModuleNode`` tagged with the module name; the test is a
  ``unittest.TestCase`` whose ``delayDisplay`` shows a message (and, in Slicer, processes events).
- ``parameterNodeWrapper``: ``Base/Python/slicer/parameterNodeWrapper/wrapper.py``: typed attributes
  with defaults, stored on a ``vtkMRMLScriptedModuleNode``, each write invoking its ``Modified`` event;
  ``connectGui``/``disconnectGui`` bind widgets by their ``SlicerParameterName`` property (not
  imitated: the bindings are checked statically in ``test_module_static.py``).
- ``qt.QTimer``: fired by the test (:func:`run_timer`) as Qt's event loop would fire it.
- The layout manager: ``Base/QTGUI/qSlicerLayoutManager.cxx`` makes one slice widget per view of the
  current layout; :class:`FakeLayoutManager` answers ``layout`` and ``sliceWidget(name)`` from the
  scene's layout and composite nodes, which the layout manager's widgets observe.
- ``slicer.app``: ``commandOptions().testingEnabled`` (``--testing``), ``layoutManager()``,
  ``temporaryPath``; ``processEvents`` fails the test: the panel must never pump events.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
import time
import types
import typing
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

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
    """qt.QTimer: the test fires it (see :func:`run_timer`); ``singleShot`` slots wait in :data:`PENDING`
    until run_timer fires them, as Qt runs them from its event loop after the caller returned."""

    PENDING: list = []

    @staticmethod
    def singleShot(msec: int, slot) -> None:
        FakeTimer.PENDING.append(slot)

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
    while FakeTimer.PENDING:
        FakeTimer.PENDING.pop(0)()
    return ticks


def fake_ui() -> types.SimpleNamespace:
    """The .ui's widgets by name, as ``slicer.util.childWidgetVariables`` gives them (``Base/Python/slicer/util.py``)."""
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


class Parent:
    """The module's ``parent`` (a qSlicerScriptedLoadableModule in Slicer): metadata and entered state."""

    isEntered = True


def scripted_loadable_module(scene_getter: Callable[[], object]) -> types.ModuleType:
    """``slicer.ScriptedLoadableModule`` with the four base classes (see the module docstring)."""
    import slicer

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
            scene = scene_getter()
            node = scene.GetSingletonNode("LatentSR", "vtkMRMLScriptedModuleNode")
            if node is None:
                node = slicer.vtkMRMLScriptedModuleNode()
                node.SetSingletonTag("LatentSR")
                node.SetModuleName("LatentSR")
                node = scene.AddNode(node)
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            pass

    module = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    return module


def install(fakes: types.SimpleNamespace, setitem: Callable, setattr_: Callable) -> None:
    """Put the stand-ins in place with ``setitem(sys.modules, name, module)`` and
    ``setattr_(object, name, value)`` (pytest's monkeypatch, or plain setters in a subprocess).
    ``fakes`` collects what the panel showed: ``errors``, ``statuses``, ``pip``, ``files``."""
    import slicer

    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = fake_parameter_node_wrapper
    wrapper.WithinRange = lambda low, high: ("WithinRange", low, high)
    setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted_loadable_module(lambda: slicer.mrmlScene))
    setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    qt = types.ModuleType("qt")
    qt.QTimer = FakeTimer
    qt.QTableWidgetItem = lambda text: types.SimpleNamespace(text=text)
    qt.QFileDialog = types.SimpleNamespace(getOpenFileName=lambda *args: fakes.files.pop(0) if fakes.files else "")
    qt.QDesktopServices = types.SimpleNamespace(openUrl=lambda url: fakes.opened.append(url))
    qt.QUrl = types.SimpleNamespace(fromLocalFile=lambda path: path)
    setitem(sys.modules, "qt", qt)

    def process_events():
        raise AssertionError("the panel must not pump Qt events (processEvents)")
    app = types.SimpleNamespace(
        processEvents=process_events, temporaryPath=tempfile.gettempdir(),
        commandOptions=lambda: types.SimpleNamespace(testingEnabled=True),
        layoutManager=lambda: FakeLayoutManager(slicer.mrmlScene))
    setattr_(slicer, "app", app)
    setattr_(slicer, "modules", types.SimpleNamespace())
    util = slicer.util
    setattr_(util, "loadUI", lambda path: types.SimpleNamespace(setMRMLScene=lambda scene: None))
    setattr_(util, "childWidgetVariables", lambda widget: fake_ui())
    setattr_(util, "errorDisplay", lambda text, **kw: fakes.errors.append(text))
    setattr_(util, "showStatusMessage", lambda text, msec=0: fakes.statuses.append(text))
    setattr_(util, "confirmOkCancelDisplay", lambda text, **kw: fakes.questions.append(text) or True)
    setattr_(util, "WaitCursor", contextlib.nullcontext)
    setattr_(util, "pip_install", lambda requirements: fakes.pip.append(requirements))


def new_fakes() -> types.SimpleNamespace:
    return types.SimpleNamespace(errors=[], statuses=[], pip=[], files=[], opened=[], questions=[])


def load_module_file(setitem: Callable) -> types.ModuleType:
    """Execute ``LatentSR/LatentSR.py`` as Slicer's scripted module factory does (one module object
    named after the file; ``Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx``)."""
    spec = importlib.util.spec_from_file_location("LatentSR", MODULE_DIR / "LatentSR.py")
    module = importlib.util.module_from_spec(spec)
    setitem(sys.modules, "LatentSR", module)
    spec.loader.exec_module(module)
    return module
