"""LatentSR as a 3D Slicer module: metadata, the panel (a thin widget over ``LatentSRLib.slicer``,
headless and tested with slicer-core; runs go to a background process it polls) and a self-test."""

# No "from __future__ import annotations": parameterNodeWrapper reads the annotations as types.
import os
import sys
from typing import Annotated, Optional, Union

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:  # Slicer >= 5.4 translates module texts; older versions show them as written.
    from slicer.i18n import tr as _, translate
except ImportError:  # pragma: no cover - depends on the Slicer version
    _, translate = (lambda text: text), (lambda context, text: text)

# LatentSRLib is installed beside this file in a built extension, one folder up in a source checkout.
_here = os.path.dirname(os.path.abspath(__file__))
_folder = next((f for f in (_here, os.path.dirname(_here)) if os.path.isfile(os.path.join(f, "LatentSRLib", "__init__.py"))), _here)
if _folder not in sys.path:
    sys.path.insert(0, _folder)

# Slicer's start-up imports pure-Python parts of the library only (LatentSRLib.slicer resolves its names on
# first use): Testing/test_slicer_load.py checks it in a Python that has only a stock Slicer's packages.
import LatentSRLib.slicer as lsr  # noqa: E402  (needs the path set above)
from LatentSRLib import LatentSRError  # noqa: E402
from LatentSRLib.methods import DEFAULT as DEFAULT_METHOD  # noqa: E402

HOMEPAGE = "https://github.com/LatentSR/LatentSR"  # placeholder until the repository is public

class LatentSR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LatentSR")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["LatentSR contributors"]
        self.parent.helpText = _(
            "Super-resolve thick-slice cardiac cine MRI through-plane with models trained on anisotropic scans only, and "
            "compare with interpolation in linked through-plane views.<br><br>Pick a cine or volume, a method and its "
            "model, then <b>Super-resolve</b> (it runs in the background: the button becomes <b>Cancel</b>). <b>Check "
            "on this scan</b> hides every other slice, re-creates it with each method and preselects the best. Results "
            "are new nodes; the input is never changed. Scripting: see the <a href=\"{homepage}#in-3d-slicer\">"
            "documentation</a>.<br><br>Methods: <b>AE</b>, J. M. Sander, B. D. de Vos, I. Isgum, SPIE Medical Imaging "
            "2021 (<a href=\"https://arxiv.org/abs/2010.13172\">arXiv:2010.13172</a>); <b>Contrastive</b>, H. Li et al., "
            "2023 (<a href=\"https://arxiv.org/abs/2310.15767\">arXiv:2310.15767</a>). Research software: not for "
            "clinical decisions.").format(homepage=HOMEPAGE)
        self.parent.acknowledgementText = _(
            "The bundled models were trained on the ACDC challenge data: O. Bernard et al., IEEE Transactions on Medical "
            "Imaging 37(11), 2514-2525, 2018, <a href=\"https://doi.org/10.1109/TMI.2018.2837502\">doi:10.1109/TMI.2018."
            "2837502</a>. Module layout after Slicer's template and KitwareMedical's SlicerNNUnet.")


@parameterNodeWrapper
class LatentSRParameterNode:
    """The panel's state, saved with the scene; ``method``, ``model``, ``device`` are bound by hand (run-time lists)."""

    inputNode: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]
    roi: Optional[vtkMRMLMarkupsROINode]
    method: str = DEFAULT_METHOD  # the method that wins on the test sets (README, Results)
    model: str = ""
    compareBSpline: bool = True
    compareLanczos: bool = True
    compareLinear: bool = False
    sizeMode: str = "isotropic"
    factor: Annotated[int, WithinRange(1, 16)] = 4
    targetSpacing: Annotated[float, WithinRange(0.1, 20.0)] = 1.5
    device: str = "auto"
    outputPrefix: str = ""
    resamplingCheck: bool = True  # flow, motion: linear on stacks the cardiac cross-fade detector calls re-sampled
    showConfidence: bool = False
    confidenceOpacity: Annotated[int, WithinRange(0, 100)] = 50


class LatentSRLogic(ScriptedLoadableModuleLogic):  # only the parameter node: the rest is LatentSRLib.slicer
    def getParameterNode(self) -> LatentSRParameterNode:
        return LatentSRParameterNode(super().getParameterNode())


def _fill(combo, items: list, current: int) -> None:  # (label, value) entries; no pick signalled
    combo.blockSignals(True)
    combo.clear()
    for label, value in items:
        combo.addItem(label, value)
    combo.currentIndex = current
    combo.blockSignals(False)


class LatentSRWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: a thin shell over ``LatentSRLib.slicer``; it holds no algorithm."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self._parameterNode, self._guiTag, self.runner = None, None, lsr.PanelRunner()
        self._lastNodes, self._lastLog = [], None  # input and outputs of the last run; log of the last failure

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LatentSR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LatentSRLogic()
        _fill(self.ui.methodComboBox, [(label, name) for name, label in lsr.methods()], 0)
        self._deviceTimer = qt.QTimer()
        self._deviceTimer.setInterval(500)
        self._deviceTimer.connect("timeout()", self._showDevices)
        self._probeDevices()
        _fill(self.ui.sizeModeComboBox, [(_(label), value) for value, label in lsr.SIZE_MODES], 0)
        self.ui.progressBar.visible = self.ui.checkTable.visible = self.ui.showLogButton.visible = False
        # Runs go to another process (LatentSRLib.background), polled by a timer: the GUI never waits or pumps events.
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", lambda: self._show(self.runner.poll()))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.superResolveButton.connect("clicked(bool)", self.onSuperResolveButton)
        self.ui.checkButton.connect("clicked(bool)", self.onCheckButton)
        self.ui.showComparisonButton.connect("clicked(bool)", lambda: lsr.show_comparison(self._lastNodes) and qt.QTimer.singleShot(
            0, lsr.fit_comparison_views))  # fitted again once Qt has sized the views (after this returns)
        self.ui.showLogButton.connect("clicked(bool)", lambda: qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(self._lastLog)))
        for combo, name in ((self.ui.methodComboBox, "method"), (self.ui.deviceComboBox, "device"),
                            (self.ui.sizeModeComboBox, "sizeMode"), (self.ui.modelComboBox, "model")):
            combo.connect("currentIndexChanged(int)", lambda index, combo=combo, name=name: self._picked(combo, name, index))
        self.initializeParameterNode()

    def cleanup(self) -> None:  # the module is closed (application exit): stop a run, leaving nothing behind
        self._show(self.runner.cancel())
        self._deviceTimer.stop()
        self._deviceProbe.close()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._deviceTimer.isActive():
            self._probeDevices()  # a GPU or torch installed since appears without restarting Slicer

    def _probeDevices(self) -> None:  # GPUs asked for in another process: torch never loads into Slicer for it
        self._deviceProbe = lsr.DeviceProbe()
        self._deviceTimer.start()
        self._showDevices(first=True)

    def _showDevices(self, first: bool = False) -> None:
        gpus = self._deviceProbe.poll()  # None while the probe runs
        if gpus is not None:
            self._deviceTimer.stop()
        if gpus is not None or first:
            _fill(self.ui.deviceComboBox, [(label, value) for value, label in lsr.devices(gpus)], 0)
            self.updateGUIFromParameterNode()

    def exit(self) -> None:  # a run keeps going while another module is shown
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self._show(self.runner.cancel())  # the nodes being processed are about to disappear
        self._lastNodes = []
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:  # reload LatentSRLib too, so library edits take effect
        for name in [n for n in sys.modules if n == "LatentSRLib" or n.startswith("LatentSRLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            inputs = lsr.scene_inputs(slicer.mrmlScene)  # a cine when there is one, else the first volume
            self._parameterNode.inputNode = ([n for n in inputs if n.IsA("vtkMRMLSequenceNode")] + inputs + [None])[0]

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = parameterNode
        if parameterNode:
            self._guiTag = parameterNode.connectGui(self.ui)  # widgets with a SlicerParameterName in the .ui
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def _picked(self, combo, name: str, index: int) -> None:
        if self._parameterNode is None or index < 0:
            return
        value = combo.itemData(index)
        if value == lsr.OTHER_FILE:  # the user's own weights (trained or adapted)
            value = qt.QFileDialog.getOpenFileName(None, _("LatentSR weights file"), "",
                                                   _("Weights (*.pt *.pth);;All files (*)")) or self._parameterNode.model
        if name == "method" and value != self._parameterNode.method:
            self._parameterNode.model = ""  # the new method's default weights
        setattr(self._parameterNode, name, value)

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """What the bindings cannot do: run-time lists, enabled states, the resulting geometry, the overlay."""
        parameters, ui = self._parameterNode, self.ui
        ui.superResolveButton.enabled = self.runner.running or (parameters is not None and parameters.inputNode is not None)
        ui.checkButton.enabled = not self.runner.running and parameters is not None and parameters.inputNode is not None
        ui.showComparisonButton.enabled = not self.runner.running and bool(self._lastNodes) and all(
            node.GetScene() is slicer.mrmlScene for node in self._lastNodes)
        if parameters is None:
            ui.outputDescriptionLabel.text = ""
            return
        menu = lsr.model_menu(parameters.method, parameters.model)  # the method's weights, then "Other file..."
        _fill(ui.modelComboBox, [(choice.label, choice.value) for choice in menu.choices], menu.current)
        for combo, value in ((ui.methodComboBox, parameters.method), (ui.deviceComboBox, parameters.device),
                             (ui.sizeModeComboBox, parameters.sizeMode)):
            combo.currentIndex = max(0, combo.findData(value))
        ui.modelComboBox.enabled = bool(menu.choices)
        ui.modelDescriptionLabel.text = menu.description
        ui.factorSpinBox.enabled = parameters.sizeMode == "factor"
        ui.spacingSpinBox.enabled = parameters.sizeMode == "spacing"
        try:
            ui.outputDescriptionLabel.text = str(lsr.describe_output(parameters.inputNode, *self._factorAndSpacing(),
                                                                     parameters.roi)) if parameters.inputNode else _("Select a cine or volume.")
        except LatentSRError as error:
            ui.outputDescriptionLabel.text = str(error)
        output = self._lastNodes[1] if len(self._lastNodes) > 1 and self._lastNodes[1].GetScene() else None
        ui.showConfidenceCheckBox.enabled = ui.confidenceOpacitySlider.enabled = bool(output and lsr.confidence_node(output))
        if ui.showConfidenceCheckBox.enabled:
            lsr.show_confidence(output, parameters.showConfidence, parameters.confidenceOpacity / 100.0)

    def _factorAndSpacing(self) -> tuple:
        p = self._parameterNode
        return p.factor if p.sizeMode == "factor" else None, p.targetSpacing if p.sizeMode == "spacing" else None

    def _methods(self) -> list:
        p = self._parameterNode
        chosen = [("bspline", p.compareBSpline), ("lanczos", p.compareLanczos), ("linear", p.compareLinear)]
        return list(dict.fromkeys([p.method] + [method for method, on in chosen if on]))

    # -- runs: lsr.PanelRunner starts, polls and finishes them; the timer polls; _show shows each update --

    def _start(self, methods: list, start, **needs) -> None:  # needs: scoring (a check), resampling_check
        confirm = None if slicer.app.commandOptions().testingEnabled else (lambda text: slicer.util.confirmOkCancelDisplay(
            text, windowTitle=_("LatentSR: install packages")))
        restart = lambda text: slicer.util.confirmYesNoDisplay(text + "\n\n" + _("Restart Slicer now?")) and slicer.util.restart()
        self._lastLog = None
        self._show(self.runner.start(methods, start, confirm, self._showStatus, restart, **needs))

    def onSuperResolveButton(self) -> None:
        if self.runner.running:
            return self._show(self.runner.cancel())
        p = self._parameterNode
        self._start(self._methods(), lambda: lsr.start_job(
            p.inputNode, self._methods(), *self._factorAndSpacing(), device=p.device, weights=p.model or None,
            roi=p.roi, prefix=p.outputPrefix or None, resampling_check=p.resamplingCheck), resampling_check=p.resamplingCheck)

    def onCheckButton(self) -> None:
        p = self._parameterNode
        self._start([name for name, _label in lsr.methods()],
                    lambda: lsr.start_check_job(p.inputNode, roi=p.roi, device=p.device), scoring=True)

    def _show(self, update) -> None:
        self.ui.progressBar.value = update.percent
        self._showStatus(update.status)
        if update.running != self._timer.isActive():
            self._timer.start() if update.running else self._timer.stop()
            for section in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton,
                            self.ui.resolutionCollapsibleButton, self.ui.advancedCollapsibleButton):
                section.enabled = not update.running
            self.ui.superResolveButton.text = _("Cancel") if update.running else _("Super-resolve")
            self.ui.progressBar.visible = update.running
        if update.outputs is not None:  # the job showed them: fit again once Qt has sized the new views
            self._lastNodes = update.outputs
            qt.QTimer.singleShot(0, lsr.fit_comparison_views)
        if update.check is not None:
            self.ui.checkTable.setRowCount(len(update.check.rows))
            for r, cells in enumerate(update.check.cells()):
                for c, text in enumerate(cells):
                    self.ui.checkTable.setItem(r, c, qt.QTableWidgetItem(text))
            self.ui.checkTable.visible = True
            if update.check.winner and self._parameterNode is not None:
                self._parameterNode.method = update.check.winner  # preselect the method that won on this scan
        if update.error:
            self._lastLog = update.log  # the worker's whole log: "Show log" opens it
            slicer.util.errorDisplay(update.error, windowTitle=_("LatentSR"))
        self.ui.showLogButton.visible = bool(self._lastLog)
        self.updateGUIFromParameterNode()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text.splitlines()[0] if text else "", 5000)


class LatentSRTest(ScriptedLoadableModuleTest):
    """The click path on a generated cine: ``LatentSRLib.slicer.selftest`` (README: the self-test)."""

    def runTest(self) -> None:
        from LatentSRLib.slicer.selftest import run_click_path  # it clears the scene first
        run_click_path(self, self.delayDisplay)
