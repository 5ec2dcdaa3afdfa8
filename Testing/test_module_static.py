"""The Slicer module without Slicer: files, .ui, CMake lists and names must agree.

LatentSR.py imports qt/ctk and the full Slicer application, which slicer-core does not have, so it is
checked statically here (its behaviour below the panel is LatentSRLib.slicer, tested in test_mrml.py,
test_slicer_jobs.py and, with stand-ins for Qt, test_slicer_panel.py).
"""

from __future__ import annotations

import ast
import py_compile
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "LatentSR"
MODULE_SCRIPT = MODULE_DIR / "LatentSR.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "LatentSR.ui"
ICON = MODULE_DIR / "Resources" / "Icons" / "LatentSR.png"
MODELS = ROOT / "Resources" / "Models"
#: Widgets that Qt's own loader knows; anything else needs a <customwidget> entry in the .ui.
QT_WIDGETS = {"QWidget", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox",
              "QLineEdit", "QProgressBar", "QRadioButton", "QGroupBox", "QTextEdit", "QSlider", "QTableWidget"}


def cmake_lists(path: Path) -> dict[str, list[str]]:
    """The ``set(NAME item item ...)`` lists of a CMakeLists.txt, with ${MODULE_NAME} expanded."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    lists = {name: body.split() for name, body in re.findall(r"set\(\s*(\w+)\s+([^)]*)\)", text)}
    lists.update({name: [] for name in re.findall(r"set\(\s*(\w+)\s*\)", text)})
    module = lists.get("MODULE_NAME", ["LatentSR"])[0]
    return {name: [item.replace("${MODULE_NAME}", module) for item in items] for name, items in lists.items()}


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def script() -> ast.Module:
    return ast.parse(MODULE_SCRIPT.read_text(), filename=str(MODULE_SCRIPT))


def widget_names(ui: ET.Element) -> set[str]:
    return {widget.get("name") for widget in ui.iter("widget")}


def test_module_script_compiles(tmp_path):
    py_compile.compile(str(MODULE_SCRIPT), cfile=str(tmp_path / "LatentSR.pyc"), doraise=True)


def test_module_classes_follow_slicer_naming(script):
    """Slicer finds <Name>, <Name>Widget, <Name>Logic, <Name>Test by name (the generic tests too)."""
    classes = {node.name for node in script.body if isinstance(node, ast.ClassDef)}
    assert {"LatentSR", "LatentSRWidget", "LatentSRLogic", "LatentSRTest", "LatentSRParameterNode"} <= classes


def test_ui_parses_with_a_mrml_widget_at_the_top(ui):
    assert ui.tag == "ui"
    top = ui.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "LatentSR"
    names = [widget.get("name") for widget in ui.iter("widget")]
    assert len(names) == len(set(names)), "duplicate objectName in the .ui"


def test_every_custom_widget_is_declared(ui):
    declared = {entry.findtext("class") for entry in ui.iter("customwidget")}
    used = {widget.get("class") for widget in ui.iter("widget")}
    assert used - QT_WIDGETS <= declared


def test_node_selectors_get_the_scene(ui):
    receivers = {c.findtext("receiver") for c in ui.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {w.get("name") for w in ui.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors <= receivers


def test_every_ui_widget_the_script_uses_exists(ui):
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_SCRIPT.read_text()))
    assert used, "LatentSR.py uses no self.ui.X widgets?"
    assert used <= widget_names(ui), f"not in the .ui: {sorted(used - widget_names(ui))}"


def test_bound_widgets_name_parameters_of_the_parameter_node(ui, script):
    (wrapper,) = [n for n in script.body if isinstance(n, ast.ClassDef) and n.name == "LatentSRParameterNode"]
    fields = {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}
    bound = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("name")
    assert set(bound) <= fields, f"bound to unknown parameters: {sorted(set(bound) - fields)}"
    # Every parameter has a widget, except those whose lists are filled at run time (bound by hand).
    assert fields - set(bound) == {"device", "method", "model", "sizeMode"}


def test_every_library_function_the_script_calls_exists(script):
    import LatentSRLib.slicer as lsr  # lazy: its names resolve on first use

    defined = set(lsr.__all__)
    used = {n.attr for n in ast.walk(script)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "lsr"}
    assert used and used <= defined, f"missing in LatentSRLib.slicer: {sorted(used - defined)}"
    if pytest.importorskip("slicer", reason="slicer-core is not installed"):
        assert all(getattr(lsr, name) is not None for name in used)


def test_module_file_is_a_thin_panel_that_never_pumps_events(script):
    """Module, Widget and Test only (plus the parameter node): under 300 lines, no processEvents (runs
    go to a background process polled by a timer), and no Slicer glue of its own."""
    text = MODULE_SCRIPT.read_text()
    assert len(text.splitlines()) < 300
    assert "processEvents" not in text
    assert "pip_install" not in text and "PyTorchUtils" not in text   # installation is LatentSRLib.slicer.install
    assert "QTimer" in text


def test_slicer_glue_files_are_small():
    for path in (ROOT / "LatentSRLib" / "slicer").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, f"{path.name} is over 300 lines"


def test_module_cmake_lists_exist():
    lists = cmake_lists(MODULE_DIR / "CMakeLists.txt")
    assert lists["MODULE_PYTHON_SCRIPTS"] == ["LatentSR.py"]
    for item in lists["MODULE_PYTHON_SCRIPTS"] + lists["MODULE_PYTHON_RESOURCES"]:
        assert (MODULE_DIR / item).is_file(), f"LatentSR/CMakeLists.txt lists a missing file: {item}"
    assert {"Resources/UI/LatentSR.ui", "Resources/Icons/LatentSR.png"} <= set(lists["MODULE_PYTHON_RESOURCES"])
    assert "WITH_GENERIC_TESTS" in (MODULE_DIR / "CMakeLists.txt").read_text()


def test_library_cmake_lists_exist_and_are_complete():
    lists = cmake_lists(MODULE_DIR / "CMakeLists.txt")
    scripts, resources = lists["LIBRARY_PYTHON_SCRIPTS"], lists["LIBRARY_PYTHON_RESOURCES"]
    for item in scripts + resources:
        assert (ROOT / item).is_file(), f"LatentSR/CMakeLists.txt lists a missing library file: {item}"
    present = {p.relative_to(ROOT).as_posix() for p in (ROOT / "LatentSRLib").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert not present - set(scripts), (
        f"add these to LIBRARY_PYTHON_SCRIPTS in LatentSR/CMakeLists.txt (else the extension ships "
        f"without them): {sorted(present - set(scripts))}")
    weights = {p.relative_to(ROOT).as_posix() for p in MODELS.rglob("*")
               if p.is_file() and not p.name.startswith(".")} if MODELS.is_dir() else set()
    assert not weights - set(resources), (
        f"add these bundled model files to LIBRARY_PYTHON_RESOURCES in LatentSR/CMakeLists.txt: "
        f"{sorted(weights - set(resources))}")


def test_extension_cmake_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({variable}\s+\"[^\"]+\"\)", text), f"{variable} is not set"
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"[^"]*\bPyTorch\b', text)
    assert "add_subdirectory(LatentSR)" in text
    assert "project(LatentSR)" in text


def test_icon_is_a_128_pixel_png():
    header = ICON.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


def test_help_cites_the_papers_and_the_data(script):
    text = MODULE_SCRIPT.read_text()
    for needle in ("2010.13172", "2310.15767", "10.1109/TMI.2018.2837502", "Sander", "Li et al."):
        assert needle in text
