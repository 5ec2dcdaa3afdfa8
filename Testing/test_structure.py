"""The house rules of ARCHITECTURE.md, read from the code: layers, no circles, small files.

Every library module is assigned a layer; an import (anywhere in a module, including lazy ones in
function bodies) may only go to the same layer or one below. ``training`` sits beside ``methods``:
it may import the ground only. Within the methods floor, inference (``synthesize``) sits under the
method files: ``methods/*`` import ``synthesize/*`` (their torch inference, the gates ``flow`` and
``motion`` share), never the other way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "LatentSRLib"
MODULE_FILE = Path(__file__).resolve().parents[1] / "LatentSR" / "LatentSR.py"

#: Module (dotted, relative to LatentSRLib) prefix -> layer. Longest prefix wins.
LAYERS = {
    "": 0,  # LatentSRLib/__init__.py: the error type
    "volume": 0, "readers": 0, "atomic": 0, "outputs": 0, "memory": 0, "intensity": 0, "metrics": 0, "devices": 0,
    "interpolate": 0, "opticalflow": 0, "phantom": 0, "models": 0, "bandlimit": 0, "dicom": 0, "folders": 0,
    "processes": 0,
    "methods": 1, "synthesize": 1,
    "training": 1,
    "pipeline": 2,
    "evaluate": 3, "report": 3, "figures": 3, "calibrate": 3, "adapt": 3, "check": 3, "cohort": 3, "engine": 3,
    "manifest": 3, "background": 3, "fallback": 3,
    "cli": 4, "demo": 4, "progress": 4, "slicer": 4, "mrml": 4,
}
NAMES = {0: "ground", 1: "methods/training", 2: "pipeline", 3: "workflows", 4: "faces"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LIBRARY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".") or p == ""), key=len)
    return LAYERS[best]


def library_imports(path: Path) -> set[str]:
    """Library modules imported by the file at ``path`` (relative and absolute forms)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("LatentSRLib"):
                target = node.module[len("LatentSRLib."):] if node.module != "LatentSRLib" else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if (LIBRARY / Path(*sub.split("."))).with_suffix(".py").exists()
                          or (LIBRARY / Path(*sub.split("."))).is_dir() else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("LatentSRLib."):
                    found.add(alias.name[len("LatentSRLib."):])
    found.discard(name)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in LIBRARY.rglob("*.py")}


def test_every_library_file_has_a_layer():
    assert all(layer_of(name) is not None for name in all_modules())


def test_nothing_imports_upward():
    upward = []
    for name, path in all_modules().items():
        for target in library_imports(path):
            here, there = layer_of(name), layer_of(target)
            if there > here:
                upward.append(f"{name} ({NAMES[here]}) imports {target} ({NAMES[there]})")
            if name.startswith("training") and there == 1 and not target.startswith("training"):
                upward.append(f"{name} (training) imports {target} (methods): training may use the ground only")
            if name.startswith("synthesize") and target.startswith("methods"):
                upward.append(f"{name} (inference) imports {target} (a method): move what both use to synthesize/")
    assert upward == []


def test_no_import_circles():
    modules = all_modules()
    graph = {name: {t for t in library_imports(p) if t in modules and t != ""} for name, p in modules.items()}
    # Package __init__ files importing their own submodules are registries, not circles.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_library_files_are_small(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_slicer_module_file_is_short():
    assert len(MODULE_FILE.read_text().splitlines()) < 300


def test_pipeline_and_cli_do_not_import_torch_and_inference_does_not_import_training():
    code = ("import sys, LatentSRLib.pipeline, LatentSRLib.cli; a = 'torch' in sys.modules; "
            "import LatentSRLib.synthesize.autoencoder, LatentSRLib.synthesize.contrastive, "
            "LatentSRLib.synthesize.motion; "
            "print(a, any(m.startswith('LatentSRLib.training') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
