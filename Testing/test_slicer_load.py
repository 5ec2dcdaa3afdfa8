"""What a stock 3D Slicer imports when it starts, and when the user opens the LatentSR panel.

Slicer runs every scripted module's file at start-up (``Base/QTGUI/qSlicerScriptedLoadableModuleFactory.cxx``)
and drops a module whose import fails. A stock Slicer's Python has NumPy, SciPy, SimpleITK, pydicom,
Pillow and a few small packages (``SuperBuild/External_python-*.cmake``), not scikit-image, OpenCV,
torch, nibabel, Dask, tqdm or matplotlib. So the module file must import only what Slicer has loaded
anyway (qt, ctk, vtk, slicer, numpy) and pure-Python parts of the library: the rest is imported when
the user acts, after the panel has offered to install it.

The tests run a Python that has only a stock Slicer's packages: this interpreter without its site
packages (``-I -S``), with a folder that links slicer-core (``slicer``, ``slicer_core``, ``vtk``),
NumPy, SciPy, SimpleITK and Pillow from this environment; the packages a stock Slicer lacks are also
made unimportable (``None`` in ``sys.modules``) in case something else on the path had them. Qt, the application and
``ScriptedLoadableModule``, which slicer-core lacks, are the stand-ins of ``slicer_standins.py``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("slicer", reason="slicer-core is not installed")

pytestmark = pytest.mark.mrml

ROOT = Path(__file__).resolve().parents[1]
#: What a stock Slicer's Python has of this environment's packages (top-level names in site-packages).
STOCK = ("slicer", "slicer_core", "vtkmodules", "vtk.py", "numpy", "numpy.libs", "scipy", "scipy.libs",
         "SimpleITK", "PIL", "pillow.libs")
#: Packages a stock Slicer does not have: the panel installs them on first use.
NOT_IN_SLICER = ("skimage", "torch", "cv2", "nibabel", "dask", "distributed", "matplotlib", "tqdm", "kornia")
#: Packages Slicer has but that its start-up must not pay for on LatentSR's behalf.
NOT_AT_STARTUP = NOT_IN_SLICER + ("scipy", "SimpleITK")

PROBE = r'''
import json, sys, time
for name in sys.argv[1].split(","):  # unimportable, and importlib.util.find_spec says "not installed"
    sys.modules[name] = None

import numpy, slicer, vtk  # loaded by Slicer itself before any scripted module
import slicer_standins as standins

def top(names):
    return sorted({name.split(".")[0] for name in names})

fakes = standins.new_fakes()
standins.install(fakes, lambda d, k, v: d.__setitem__(k, v), setattr)
scene = slicer.vtkMRMLScene(); slicer.mrmlScene = scene
before = set(sys.modules)
start = time.perf_counter()
module = standins.load_module_file(lambda d, k, v: d.__setitem__(k, v))
seconds = time.perf_counter() - start
at_load = set(sys.modules) - before
library_at_load = sorted(n for n in at_load if n.startswith("LatentSRLib"))

before = set(sys.modules)
widget = module.LatentSRWidget(); widget.setup()   # the user opens the panel
widget.updateGUIFromParameterNode()
at_panel = set(sys.modules) - before
import LatentSRLib.slicer as lsr
for name in lsr.__all__:                            # every function the panel and the console reach
    getattr(lsr, name)
at_api = set(sys.modules) - before

print(json.dumps({"seconds": seconds, "at_load": top(at_load), "library_at_load": library_at_load,
                  "at_panel": top(at_panel), "at_api": top(at_api), "errors": fakes.errors,
                  "methods": [widget.ui.methodComboBox.itemData(i) for i in range(widget.ui.methodComboBox.count())]}))
'''


def stock_python(folder: Path) -> list[str]:
    """The command line of a Python with only a stock Slicer's packages (see the module docstring)."""
    site = Path(sysconfig.get_path("purelib"))
    links = folder / "site"
    links.mkdir(parents=True)
    for name in STOCK:
        if (site / name).exists():
            (links / name).symlink_to(site / name)
    paths = [str(ROOT), str(ROOT / "Testing"), str(links)]
    return [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {paths!r}; exec(sys.argv.pop(1))"]


def probe(folder: Path) -> dict:
    done = subprocess.run([*stock_python(folder), PROBE, ",".join(NOT_IN_SLICER)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> list[dict]:
    return [probe(tmp_path_factory.mktemp(f"stock{i}")) for i in range(3)]


def test_the_stock_python_really_lacks_what_slicer_lacks(tmp_path):
    for name in ("skimage", "torch", "cv2", "nibabel", "dask"):
        done = subprocess.run([*stock_python(tmp_path / name), f"import {name}"], capture_output=True, text=True)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr
    done = subprocess.run([*stock_python(tmp_path / "ok"), "import slicer, numpy, scipy.ndimage, SimpleITK"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_slicer_start_up_imports_only_light_parts_of_the_library(probes):
    for result in probes:
        assert not set(result["at_load"]) & set(NOT_AT_STARTUP), result["at_load"]
        # The module file, the library's root and its pure-Python registry of methods.
        assert set(result["at_load"]) <= {"LatentSR", "LatentSRLib", "concurrent", "dataclasses", "logging",
                                          "threading", "queue", "heapq", "string", "copy", "traceback", "atexit",
                                          "weakref", "_heapq", "_queue", "_string", "typing", "warnings"}
        # The library's root, the lazy LatentSRLib.slicer (none of its modules) and the methods' registry
        # (for the default method), with the NumPy-only helpers the method files import.
        light = ("LatentSRLib", "LatentSRLib.slicer", "LatentSRLib.opticalflow", "LatentSRLib.synthesize",
                 "LatentSRLib.synthesize.gates")
        assert "LatentSRLib.slicer" in result["library_at_load"]
        assert all(name in light or name.startswith("LatentSRLib.methods")
                   for name in result["library_at_load"]), result["library_at_load"]
    seconds = statistics.median(result["seconds"] for result in probes)
    assert seconds < 0.5, f"the module file takes {seconds:.2f} s to load (median of 3 fresh processes)"


def test_the_panel_opens_and_the_api_loads_in_a_stock_slicer(probes):
    result = probes[0]
    assert result["errors"] == []
    assert "flow" in result["methods"] and "motion" in result["methods"]
    assert not set(result["at_panel"]) & set(NOT_IN_SLICER), result["at_panel"]  # torch only when a method runs
    assert not set(result["at_api"]) & set(NOT_IN_SLICER), result["at_api"]
