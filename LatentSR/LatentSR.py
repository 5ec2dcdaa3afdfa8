"""LatentSR: through-plane super-resolution of anisotropic cine MRI, as a 3D Slicer module.

This file is only the panel: module metadata, the widget (state in a parameter node), a logic that
delegates every action to ``LatentSRLib.mrml`` (which also works headless and is tested with
slicer-core), dependency installation on first use, and a self-test.
"""

# No "from __future__ import annotations" here: parameterNodeWrapper reads the annotations of
# LatentSRParameterNode as types.
import importlib
import logging
import os
import sys
import time
from enum import Enum
from typing import Annotated, Callable, Optional, Union

import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:  # Slicer >= 5.4 translates module texts; older versions show them as written.
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # pragma: no cover - depends on the Slicer version
    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


def _addLibraryToPath() -> None:
    """Make ``LatentSRLib`` importable.

    In a built extension it is installed beside this file (``qt-scripted-modules/LatentSRLib``),
    which Slicer already has on ``sys.path``. When the module is used from a source checkout
    (Application settings > Modules > additional module path = ``<repo>/LatentSR``), the library
    is one folder up, at the repository root.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isfile(os.path.join(folder, "LatentSRLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.insert(0, folder)
            return


_addLibraryToPath()

from LatentSRLib import LatentSRError, mrml  # noqa: E402  (needs the path set above)
from LatentSRLib.pipeline import Cancelled  # noqa: E402

#: Why each requirement is needed, for the consent dialog.
REQUIREMENT_REASONS = {
    "torch": "runs the learned super-resolution models (a large download; uses the GPU when there is one)",
    "SimpleITK": "reads and writes images",
    "scipy": "B-spline and Lanczos interpolation",
    "scikit-image": "image quality measures",
}

HOMEPAGE = "https://github.com/LatentSR/LatentSR"  # placeholder until the repository is public


#
# LatentSR
#

class LatentSR(ScriptedLoadableModule):
    """Module metadata. Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LatentSR")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["LatentSR contributors"]
        self.parent.helpText = _(
            "Super-resolve anisotropic (thick-slice) cardiac cine MRI through-plane: create the "
            "missing slices between acquired ones with a model trained on anisotropic scans only, "
            "and compare with B-spline and Lanczos interpolation in linked through-plane views.<br><br>"
            "Pick a cine (sequence; every frame is processed) or a volume, a method and the new slice "
            "spacing, then click <b>Super-resolve</b>. Results are new nodes named "
            "\"&lt;input&gt; &lt;method&gt; x&lt;factor&gt;\"; the input is never changed. "
            "Scripting examples: see the <a href=\"{homepage}/blob/main/docs/slicer.md\">documentation</a>."
            "<br><br>Methods:<ul>"
            "<li><b>AE</b>: latent-space interpolation with an autoencoder. J. M. Sander, B. D. de Vos, "
            "I. Isgum, \"Unsupervised super-resolution: creating high-resolution medical images from "
            "low-resolution anisotropic examples\", SPIE Medical Imaging 2021 "
            "(<a href=\"https://arxiv.org/abs/2010.13172\">arXiv:2010.13172</a>).</li>"
            "<li><b>Contrastive</b>: H. Li et al., \"Unpaired MRI Super Resolution with Contrastive "
            "Learning\", 2023 (<a href=\"https://arxiv.org/abs/2310.15767\">arXiv:2310.15767</a>).</li>"
            "</ul>Research software: not for clinical decisions."
        ).format(homepage=HOMEPAGE)
        self.parent.acknowledgementText = _(
            "The bundled models were trained on the ACDC challenge data: O. Bernard et al., "
            "\"Deep Learning Techniques for Automatic MRI Cardiac Multi-Structures Segmentation and "
            "Diagnosis: Is the Problem Solved?\", IEEE Transactions on Medical Imaging 37(11), "
            "2514-2525, 2018, <a href=\"https://doi.org/10.1109/TMI.2018.2837502\">doi:10.1109/TMI.2018.2837502</a>. "
            "Module layout after Slicer's scripted module template and KitwareMedical's SlicerNNUnet."
        )


#
# Parameter node
#

class Method(Enum):
    """The learned method (the conventional ones are comparisons)."""

    AE = "ae"
    CONTRASTIVE = "contrastive"

    def label(self) -> str:
        return {Method.AE: _("AE: latent interpolation (Sander et al.)"),
                Method.CONTRASTIVE: _("Contrastive (Li et al.)")}[self]


class SizeMode(Enum):
    """How the number of new slices is chosen."""

    ISOTROPIC = "isotropic"
    FACTOR = "factor"
    SPACING = "spacing"

    def label(self) -> str:
        return {SizeMode.ISOTROPIC: _("Near-isotropic voxels"),
                SizeMode.FACTOR: _("Upsampling factor"),
                SizeMode.SPACING: _("Target slice spacing")}[self]


@parameterNodeWrapper
class LatentSRParameterNode:
    """The panel's state, saved with the scene.

    inputNode - the cine (sequence of volumes) or volume to super-resolve.
    roi - optional box to crop to before processing.
    method - the learned method; compareBSpline/Lanczos/Linear - conventional methods shown beside it.
    sizeMode, factor, targetSpacing - how many slices to create.
    device - "auto", "cpu", "cuda:N" or "mps".
    outputPrefix - start of the output names (empty: the input's name).
    """

    inputNode: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, None]
    roi: Optional[vtkMRMLMarkupsROINode]
    method: Method = Method.AE
    compareBSpline: bool = True
    compareLanczos: bool = True
    compareLinear: bool = False
    sizeMode: SizeMode = SizeMode.ISOTROPIC
    factor: Annotated[int, WithinRange(1, 16)] = 4
    targetSpacing: Annotated[float, WithinRange(0.1, 20.0)] = 1.5  # decimals and step: see the .ui
    device: str = "auto"
    outputPrefix: str = ""


#
# LatentSRWidget
#

class LatentSRWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: a thin shell over LatentSRLogic (and so over LatentSRLib.mrml)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic: Optional[LatentSRLogic] = None
        self._parameterNode: Optional[LatentSRParameterNode] = None
        self._parameterNodeGuiTag = None
        self._observedRoi = None
        self._running = False
        self._cancelRequested = False
        self._lastNodes: list = []  # input and outputs of the last run, for "Show comparison"

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LatentSR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects mrmlSceneChanged to each node selector's setMRMLScene.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = LatentSRLogic()

        # Devices are listed once, with what was detected ("GPU 0: NVIDIA ..."), not bound by name:
        # their labels are only known at run time.
        for value, label in self.logic.devices():
            self.ui.deviceComboBox.addItem(label, value)
        self.ui.progressBar.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.superResolveButton.connect("clicked(bool)", self.onSuperResolveButton)
        self.ui.showComparisonButton.connect("clicked(bool)", self.onShowComparisonButton)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cancelRequested = True
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # A run keeps going while another module is shown; only the GUI binding is dropped.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRequested = True  # the nodes being processed are about to disappear
        self._lastNodes = []
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:
        """Reload LatentSRLib too, so edits to the library take effect without restarting Slicer."""
        for name in [n for n in sys.modules if n == "LatentSRLib" or n.startswith("LatentSRLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    # -- parameter node --------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputNode:
            self._parameterNode.inputNode = self.logic.defaultInput()

    def setParameterNode(self, inputParameterNode: Optional[LatentSRParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Binds every widget that has a SlicerParameterName property in the .ui.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def _observeRoi(self, roi) -> None:
        """Follow the ROI's edits so the resulting slice count stays current while it is dragged."""
        if roi is self._observedRoi:
            return
        if self._observedRoi is not None:
            self.removeObserver(self._observedRoi, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._observedRoi = roi
        if roi is not None:
            self.addObserver(roi, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        """What the bindings cannot do: enabled states, the device list, the resulting geometry."""
        parameters = self._parameterNode
        if parameters is None:
            self.ui.superResolveButton.enabled = False
            self.ui.outputDescriptionLabel.text = ""
            return
        self._observeRoi(parameters.roi)
        self.ui.factorSpinBox.enabled = parameters.sizeMode == SizeMode.FACTOR
        self.ui.spacingSpinBox.enabled = parameters.sizeMode == SizeMode.SPACING
        index = self.ui.deviceComboBox.findData(parameters.device)
        if index >= 0 and index != self.ui.deviceComboBox.currentIndex:
            self.ui.deviceComboBox.currentIndex = index
        if parameters.inputNode is None:
            self.ui.outputDescriptionLabel.text = _("Select a cine or volume.")
        else:
            try:
                self.ui.outputDescriptionLabel.text = self.logic.describe(
                    parameters.inputNode, *self._factorAndSpacing(), parameters.roi)
            except LatentSRError as error:
                self.ui.outputDescriptionLabel.text = str(error)
        self.ui.superResolveButton.enabled = self._running or parameters.inputNode is not None
        self.ui.showComparisonButton.enabled = not self._running and self._lastNodesAvailable()

    def onDeviceChanged(self, index: int) -> None:
        if self._parameterNode is not None and index >= 0:
            self._parameterNode.device = self.ui.deviceComboBox.itemData(index)

    def _factorAndSpacing(self) -> tuple:
        parameters = self._parameterNode
        if parameters.sizeMode == SizeMode.FACTOR:
            return parameters.factor, None
        if parameters.sizeMode == SizeMode.SPACING:
            return None, parameters.targetSpacing
        return None, None

    def _methods(self) -> list:
        parameters = self._parameterNode
        comparisons = [("bspline", parameters.compareBSpline), ("lanczos", parameters.compareLanczos),
                       ("linear", parameters.compareLinear)]
        return [parameters.method.value] + [method for method, chosen in comparisons if chosen]

    def _lastNodesAvailable(self) -> bool:
        return bool(self._lastNodes) and all(node.GetScene() is slicer.mrmlScene for node in self._lastNodes)

    # -- actions ---------------------------------------------------------------------------------

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self._cancelRequested = False
        for section in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton,
                        self.ui.resolutionCollapsibleButton, self.ui.advancedCollapsibleButton):
            section.enabled = not running
        self.ui.superResolveButton.text = _("Cancel") if running else _("Super-resolve")
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = running
        self.updateGUIFromParameterNode()

    def _progress(self, fraction: float) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        # Processing runs on the GUI thread: let Qt repaint and deliver a click on Cancel.
        slicer.app.processEvents()

    def onSuperResolveButton(self) -> None:
        if self._running:
            self._cancelRequested = True
            self.ui.statusLabel.text = _("Cancelling...")
            return
        parameters = self._parameterNode
        methods = self._methods()
        try:
            if not self.logic.ensureRequirements(methods, statusCallback=self._showStatus):
                self._showStatus(_("Nothing was done: the required Python packages are not installed."))
                return
        except Exception as error:
            slicer.util.errorDisplay(_("Could not install the required Python packages: {error}").format(error=error))
            return
        self._setRunning(True)
        self._showStatus(_("Super-resolving with {methods}...").format(methods=", ".join(methods)))
        started = time.perf_counter()
        try:
            factor, spacing = self._factorAndSpacing()
            outputs = self.logic.superResolve(
                parameters.inputNode, methods, factor=factor, spacing=spacing, device=parameters.device,
                roi=parameters.roi, prefix=parameters.outputPrefix or None,
                progress=self._progress, cancel=lambda: self._cancelRequested)
        except Cancelled:
            self._showStatus(_("Cancelled: nothing was added to the scene."))
        except LatentSRError as error:
            self._showStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=_("LatentSR"))
        except Exception as error:
            logging.exception("LatentSR failed")
            self._showStatus(_("Failed: {error}").format(error=error))
            slicer.util.errorDisplay(_("Super-resolution failed: {error}").format(error=error),
                                     windowTitle=_("LatentSR"))
        else:
            source = mrml.sequence_of_proxy(parameters.inputNode) or parameters.inputNode
            self._lastNodes = [source, *outputs]
            self._showStatus(_("Created {names} in {seconds:.1f} s.").format(
                names=", ".join(f'"{node.GetName()}"' for node in outputs), seconds=time.perf_counter() - started))
        finally:
            self._setRunning(False)

    def onShowComparisonButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not show the comparison."), waitCursor=True):
            self.logic.showComparison(self._lastNodes)

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 5000)
        slicer.app.processEvents()


#
# LatentSRLogic
#

class LatentSRLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable without it; each method delegates to LatentSRLib.mrml.

    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> LatentSRParameterNode:
        return LatentSRParameterNode(super().getParameterNode())

    @staticmethod
    def defaultInput():
        """A cine when there is one (what radiologists load), else the first volume."""
        inputs = mrml.scene_inputs(slicer.mrmlScene)
        sequences = [node for node in inputs if node.IsA("vtkMRMLSequenceNode")]
        return (sequences or inputs or [None])[0]

    @staticmethod
    def devices() -> list:
        return mrml.devices()

    @staticmethod
    def describe(node, factor: Optional[int], spacing: Optional[float], roi=None) -> str:
        return str(mrml.describe_output(node, factor, spacing, roi))

    def superResolve(self, node, methods: list, factor: Optional[int] = None, spacing: Optional[float] = None,
                     device: str = "auto", roi=None, prefix: Optional[str] = None,
                     progress: Optional[Callable[[float], None]] = None,
                     cancel: Optional[Callable[[], bool]] = None, show: bool = True) -> list:
        """Run each method (the first is the main one) and show the comparison; see
        ``LatentSRLib.mrml.super_resolve_and_compare``."""
        return mrml.super_resolve_and_compare(node, methods, factor, spacing, device=device, progress=progress,
                                              cancel=cancel, roi=roi, prefix=prefix, show=show)

    @staticmethod
    def showComparison(nodes: list):
        return mrml.show_comparison(nodes)

    @staticmethod
    def ensureRequirements(methods: list, askConfirmation: bool = True,
                           statusCallback: Optional[Callable[[str], None]] = None) -> bool:
        """Install what ``methods`` need and is missing, after asking the user; False if they decline.

        torch comes from the PyTorch extension's installer when it is present (it picks the build
        that matches the GPU driver), else from pip; the others from pip.
        """
        missing = mrml.missing_requirements(methods)
        if not missing:
            return True
        reasons = "\n".join(f"  - {name}: {REQUIREMENT_REASONS.get(name, 'needed by LatentSR')}" for name in missing)
        if askConfirmation and not slicer.app.commandOptions().testingEnabled:
            question = _("LatentSR needs these Python packages, which are not installed yet:\n{reasons}\n\n"
                         "Download and install them now? This can take several minutes.").format(reasons=reasons)
            if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("LatentSR: install packages")):
                return False
        report = statusCallback or (lambda text: None)
        with slicer.util.WaitCursor():
            if "torch" in missing:
                report(_("Installing PyTorch..."))
                LatentSRLogic._installTorch()
            others = [name for name in missing if name != "torch"]
            if others:
                report(_("Installing {names}...").format(names=", ".join(others)))
                slicer.util.pip_install(" ".join(others))
        importlib.invalidate_caches()
        still = mrml.missing_requirements(methods)
        if still:
            raise LatentSRError(f"still missing after installation: {', '.join(still)}")
        report(_("Installed {names}.").format(names=", ".join(missing)))
        return True

    @staticmethod
    def _installTorch() -> None:
        if hasattr(slicer.modules, "pytorchutils"):
            import PyTorchUtils
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                                  torchVersionRequirement=">=2.0")
            if torch is None:
                raise LatentSRError("PyTorch was not installed")
        else:
            slicer.util.pip_install("torch>=2.0")


#
# LatentSRTest
#

class LatentSRTest(ScriptedLoadableModuleTest):
    """Self-test in a running Slicer (Developer mode > Reload and Test, or ctest).

    The library's behaviour is covered by the pytest suite (Testing/ in the source tree, run with
    slicer-core outside Slicer); here we check the parts only a full Slicer has: the module's
    logic in the application scene, sequence browsers with proxies, and the comparison views the
    layout manager creates. Conventional methods only, so no weights or torch are needed.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SuperResolveVolume()
        self.setUp()
        self.test_SuperResolveCineAndCompare()
        self.setUp()
        self.test_CancelLeavesSceneUnchanged()

    @staticmethod
    def _syntheticVolume(frames: int = 1, phase: float = 0.0):
        import numpy as np
        from LatentSRLib.volume import Volume
        z, y, x = np.meshgrid(np.arange(6), np.arange(32), np.arange(40), indexing="ij")
        array = np.stack([100 + 50 * np.sin(0.3 * x + 0.2 * y + 0.9 * z + phase + t) for t in range(frames)])
        return Volume(array.astype(np.float32), (1.4, 1.4, 8.0), (12.0, -30.0, 5.0))

    def test_SuperResolveVolume(self) -> None:
        import numpy as np
        self.delayDisplay("Super-resolve a synthetic volume")
        node = mrml.node_from_volume(self._syntheticVolume(), "synthetic", slicer.mrmlScene)
        before = slicer.util.arrayFromVolume(node).copy()
        (output,) = LatentSRLogic().superResolve(node, ["bspline"], factor=4, show=False)
        self.assertEqual(output.GetName(), "synthetic B-spline x4")
        self.assertEqual(output.GetImageData().GetDimensions(), (40, 32, 21))
        self.assertAlmostEqual(output.GetSpacing()[2], 2.0)
        np.testing.assert_allclose(output.GetOrigin(), node.GetOrigin())
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(output)[::4], before)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), before)
        self.delayDisplay("Volume test passed")

    def test_SuperResolveCineAndCompare(self) -> None:
        self.delayDisplay("Super-resolve a synthetic cine and compare methods")
        sequence = mrml.sequence_from_volume(self._syntheticVolume(frames=5), "cine", slicer.mrmlScene)
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
        mrml.set_primary_sequence(browser, sequence)
        proxy = browser.GetProxyNode(sequence)
        self.assertIsNotNone(proxy)

        outputs = LatentSRLogic().superResolve(proxy, ["linear", "lanczos"], factor=2)  # proxy: whole cine
        self.assertEqual([o.GetName() for o in outputs], ["cine Linear x2", "cine Lanczos x2"])
        for output in outputs:
            self.assertTrue(output.IsA("vtkMRMLSequenceNode"))
            self.assertEqual(output.GetNumberOfDataNodes(), 5)
            self.assertTrue(browser.IsSynchronizedSequenceNodeID(output.GetID()))

        layoutManager = slicer.app.layoutManager()
        self.assertEqual(layoutManager.layout, mrml.COMPARISON_LAYOUT_ID)
        expected = [proxy] + [browser.GetProxyNode(o) for o in outputs]
        for number, volume in enumerate(expected, start=1):
            sliceWidget = layoutManager.sliceWidget(f"{mrml.COMPARISON_VIEW_PREFIX}{number}")
            self.assertIsNotNone(sliceWidget)
            composite = sliceWidget.mrmlSliceCompositeNode()
            self.assertEqual(composite.GetBackgroundVolumeID(), volume.GetID())
            self.assertTrue(composite.GetLinkedControl())
        browser.SetSelectedItemNumber(3)
        self.delayDisplay("Cine test passed")

    def test_CancelLeavesSceneUnchanged(self) -> None:
        self.delayDisplay("Cancel leaves the scene unchanged")
        sequence = mrml.sequence_from_volume(self._syntheticVolume(frames=4), "cine", slicer.mrmlScene)
        count = slicer.mrmlScene.GetNumberOfNodes()
        calls = []

        def cancel() -> bool:
            calls.append(1)
            return len(calls) > 2
        with self.assertRaises(Cancelled):
            LatentSRLogic().superResolve(sequence, ["linear", "bspline"], factor=3, cancel=cancel)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        self.delayDisplay("Cancel test passed")
