"""The extension as the Slicer Extensions Index sees it: its index entry, its CMake metadata, the files
they name, and Python 3.9 syntax for Slicer 5.4-5.8 (PUBLISHING.md says what is left to fill in)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "LatentSR.json"
CMAKE = ROOT / "CMakeLists.txt"
MODULE_CMAKE = ROOT / "LatentSR" / "CMakeLists.txt"
PUBLISHING = ROOT / "PUBLISHING.md"

#: Slicer's catalog-entry schema v1.0.2 (Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-
#: v1.0.2.json at 5767566: required "$schema", "category", "scm_url"; "additionalProperties": false),
#: as property -> JSON type; the index's CI validates entries against the schema their "$schema" names.
SCHEMA_PROPERTIES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                     "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
                     "enabled": bool, "tier": int}
SCHEMA_REQUIRED = ("$schema", "category", "scm_url")
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
RAW = re.compile(r"https://raw\.githubusercontent\.com/([^/]+)/([^/]+)/([^/]+)/(.+)")


def cmake_set(text: str, name: str) -> str:
    match = re.search(rf'^set\({name}\s+"([^"]*)"', text, flags=re.M)
    assert match, f"{name} not set in CMakeLists.txt"
    return match.group(1)


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(ENTRY.read_text())


@pytest.fixture(scope="module")
def cmake() -> str:
    return CMAKE.read_text()


def test_entry_follows_slicers_catalog_schema(entry):
    assert entry["$schema"] == SCHEMA_URL
    assert all(key in entry for key in SCHEMA_REQUIRED)
    assert set(entry) <= set(SCHEMA_PROPERTIES), set(entry) - set(SCHEMA_PROPERTIES)
    for key, value in entry.items():
        assert type(value) is SCHEMA_PROPERTIES[key], key  # noqa: E721 (bool is not an int here)
    assert entry.get("scm_type", "git") in ("git", "local")
    assert 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(name, str) for name in entry.get("build_dependencies", []))
    assert entry.get("build_subdirectory", ".") == "."  # not a superbuild: the top CMakeLists builds it


def test_entry_agrees_with_cmakelists_and_the_module(entry, cmake):
    assert ENTRY.stem == re.search(r"^project\((\w+)\)", cmake, flags=re.M).group(1)
    category = cmake_set(cmake, "EXTENSION_CATEGORY")
    assert entry["category"] == category
    module = (ROOT / "LatentSR" / "LatentSR.py").read_text()
    assert re.search(rf'categories = \[translate\("qSlicerAbstractCoreModule", "{category}"\)\]', module)
    depends = cmake_set(cmake, "EXTENSION_DEPENDS")
    assert entry.get("build_dependencies", []) == ([] if depends == "NA" else re.split(r"[;\s]+", depends))
    # One repository and branch everywhere: the entry's scm_url and revision, the homepage, the raw URLs.
    owner_repo = re.fullmatch(r"https://github\.com/([^/]+/[^/#]+?)(\.git)?", entry["scm_url"]).group(1)
    assert cmake_set(cmake, "EXTENSION_HOMEPAGE").startswith(f"https://github.com/{owner_repo}")
    for field in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmake_set(cmake, field).split():
            owner, repo, branch, _ = RAW.fullmatch(url).groups()
            assert (f"{owner}/{repo}", branch) == (owner_repo, entry["scm_revision"]), url


def test_every_file_the_metadata_names_exists(cmake):
    from PIL import Image
    icon = ROOT / RAW.fullmatch(cmake_set(cmake, "EXTENSION_ICONURL")).group(4)
    with Image.open(icon) as image:
        assert image.format == "PNG" and image.size == (128, 128)
    module_cmake = MODULE_CMAKE.read_text()
    for resource in re.findall(r"^\s*(Resources/\S+)", module_cmake.split("MODULE_PYTHON_RESOURCES")[1].split(")")[0],
                               flags=re.M):
        assert (ROOT / "LatentSR" / resource.replace("${MODULE_NAME}", "LatentSR")).is_file(), resource
    for url in cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split():
        assert (ROOT / RAW.fullmatch(url).group(4)).is_file(), url


def test_screenshot_is_a_small_real_image(cmake):
    from PIL import Image
    path = ROOT / RAW.fullmatch(cmake_set(cmake, "EXTENSION_SCREENSHOTURLS").split()[0]).group(4)
    assert path.stat().st_size < 300 * 1024
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 200
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    # Four views of an image, not a blank or text-only picture: many grey levels, real contrast.
    assert len(np.unique(grey)) > 64 and grey.std() > 20
    # It is what scripts/render_screenshot.py writes by default.
    script = (ROOT / "scripts" / "render_screenshot.py").read_text()
    assert 'ROOT / "Resources" / "Screenshots" / "LatentSR-comparison.png"' in script
    assert path == ROOT / "Resources" / "Screenshots" / "LatentSR-comparison.png"


def test_publishing_lists_every_placeholder_url(entry, cmake):
    listed = PUBLISHING.read_text()
    urls = [entry["scm_url"]] + [u for field in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS")
                                 for u in cmake_set(cmake, field).split()]
    for url in urls:
        assert url in listed, f"{url} is not listed in PUBLISHING.md"


def test_code_parses_as_python_3_9():
    # Slicer 5.4-5.8 run Python 3.9 (SuperBuild/External_python-scipy.cmake at 028fb319 installs cp39
    # wheels). Checked here: 3.9 grammar (no match statements, no parenthesised context managers), and
    # "X | Y" annotations only where `from __future__ import annotations` keeps them unevaluated.
    files = sorted((ROOT / "LatentSRLib").rglob("*.py")) + [ROOT / "LatentSR" / "LatentSR.py"]
    assert len(files) > 50
    for path in files:
        source = path.read_text()
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                        and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
        annotations = [node.annotation for node in ast.walk(tree) if isinstance(node, (ast.arg, ast.AnnAssign))
                       and node.annotation is not None]
        annotations += [node.returns for node in ast.walk(tree)
                        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None]
        uses_union = any(isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr)
                         for annotation in annotations for sub in ast.walk(annotation))
        assert postponed or not uses_union, f"{path}: 'X | Y' annotations need `from __future__ import annotations`"
        assert "zip(" not in source or "strict=" not in source, f"{path}: zip(strict=) is Python 3.10"
