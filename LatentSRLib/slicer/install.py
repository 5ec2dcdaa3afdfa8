"""Python packages the methods need: what is missing or too old, and installing it inside Slicer.

Kept out of the module file, as SlicerNNUnet keeps its InstallLogic in its library. torch comes from
the PyTorch extension's installer when it is present (it picks the build that matches the GPU
driver), else from pip; the others from pip. Versions are read from the installed packages'
metadata (``importlib.metadata``), so nothing here imports torch or any package it checks.
A package that is already imported keeps running its old version until Slicer restarts (Python
cannot unload an extension module), so upgrading one asks for a restart.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from typing import Callable, Iterable

import slicer

from .. import LatentSRError
from .. import methods as registry

#: Why each requirement is needed, for the consent dialog.
REQUIREMENT_REASONS = {
    "torch": "runs the learned models, and the check of Flow and Motion for re-sampled stacks (a small network; "
             "switch the check off under Advanced to do without); a large download; uses the GPU when there is one",
    "SimpleITK": "reads and writes images",
    "scipy": "B-spline and Lanczos interpolation",
    "scikit-image": "image quality measures",
    "opencv-python-headless": "optical flow for the motion-compensated methods (flow, motion)",
}
#: pip requirement -> importable module that every method needs (both ship with Slicer, but an old one
#: is upgraded); each method adds its own (``Method.requirements``: torch for the learned ones, OpenCV
#: for the flow-based ones). Files are read with Slicer's readers or SimpleITK: no nibabel.
_REQUIREMENTS_ALWAYS = {"SimpleITK": "SimpleITK", "scipy": "scipy"}
#: What scoring ("Check on this scan") adds: SSIM and PSNR.
_REQUIREMENTS_SCORING = {"scikit-image": "skimage"}
#: The lowest version of each package the panel may install or upgrade: the same as pyproject.toml's
#: ``dependencies`` (Testing/test_slicer_panel.py checks that they agree; the built extension has no
#: pyproject.toml).
MINIMUM_VERSIONS = {"torch": "2.0", "SimpleITK": "2.2", "scikit-image": "0.21", "scipy": "1.10",
                    "opencv-python-headless": "4.8"}
#: Distributions that provide the same module (pip names differ from the module's).
_DISTRIBUTIONS = {"opencv-python-headless": ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                                             "opencv-contrib-python-headless")}


def _needed(methods: Iterable[str], scoring: bool = False, resampling_check: bool = True) -> dict[str, str]:
    """pip requirement -> module, for ``methods`` (unknown names refused with one line); with
    ``resampling_check``, methods that ask the cross-fade detector (a torch network) need torch too."""
    chosen = [registry.get(m) for m in methods]
    needed = {package: module for method in chosen for package, module in method.requirements}
    if resampling_check and any(method.asks_crossfade_detector for method in chosen):
        needed["torch"] = "torch"
    needed.update(_REQUIREMENTS_ALWAYS)
    needed.update(_REQUIREMENTS_SCORING if scoring else {})
    return needed


def missing_requirements(methods: Iterable[str], scoring: bool = False, resampling_check: bool = True) -> list[str]:
    """pip requirements that the given methods (run with ``resampling_check``, and ``scoring`` them for a
    check) need and that are not importable (the methods' own first)."""
    return [requirement for requirement, module in _needed(methods, scoring, resampling_check).items()
            if importlib.util.find_spec(module) is None]


def _version_tuple(version: str) -> tuple[int, ...]:
    """"2.13.0+cpu" -> (2, 13, 0): the release numbers, which is what a minimum compares."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("-")[0])[:3])


def installed_version(requirement: str) -> str | None:
    """The installed version of a pip requirement (any distribution providing it), or None."""
    for distribution in _DISTRIBUTIONS.get(requirement, (requirement,)):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def outdated_requirements(methods: Iterable[str], scoring: bool = False, resampling_check: bool = True) -> dict[str, str]:
    """Installed requirements of ``methods`` older than :data:`MINIMUM_VERSIONS`: name -> installed version.
    (A module importable without package metadata, e.g. one Slicer built itself, is taken as it is.)"""
    found = {}
    for requirement, module in _needed(methods, scoring, resampling_check).items():
        version = installed_version(requirement) if importlib.util.find_spec(module) is not None else None
        minimum = MINIMUM_VERSIONS.get(requirement)
        if version and minimum and _version_tuple(version) < _version_tuple(minimum):
            found[requirement] = version
    return found


def consent_text(missing: Iterable[str], outdated: dict[str, str] | None = None) -> str:
    """The question the panel asks before installing ``missing`` and upgrading ``outdated``."""
    lines = [f"  - {name}: {REQUIREMENT_REASONS.get(name, 'needed by LatentSR')}" for name in missing]
    lines += [f"  - {name}: version {version} is installed, LatentSR needs {MINIMUM_VERSIONS[name]} or later"
              for name, version in (outdated or {}).items()]
    return ("LatentSR needs these Python packages, which are not installed or too old:\n" + "\n".join(lines)
            + "\n\nDownload and install them now? This can take several minutes.")


def _pip_requirement(name: str) -> str:
    return f"{name}>={MINIMUM_VERSIONS[name]}" if name in MINIMUM_VERSIONS else name


def ensure_requirements(methods: Iterable[str], confirm: Callable[[str], bool] | None = None,
                        report: Callable[[str], None] | None = None,
                        restart: Callable[[str], None] | None = None, scoring: bool = False,
                        resampling_check: bool = True) -> bool:
    """Install what ``methods`` need and is missing or too old, after ``confirm(question)``; False if
    declined. An upgraded package that this process had already imported needs a restart:
    ``restart(message)`` is called (the panel asks whether to restart Slicer) and False is returned.

    Raises:
        LatentSRError: something is still missing or too old after installing.
    """
    methods = list(methods)
    needs = dict(scoring=scoring, resampling_check=resampling_check)
    missing, outdated = missing_requirements(methods, **needs), outdated_requirements(methods, **needs)
    if not missing and not outdated:
        return True
    if confirm is not None and not confirm(consent_text(missing, outdated)):
        return False
    report = report or (lambda text: None)
    needed = _needed(methods, **needs)
    loaded = [name for name in outdated if needed[name] in sys.modules]
    wanted = [*missing, *outdated]
    if "torch" in wanted:
        report("Installing PyTorch...")
        _install_torch()
    others = [name for name in wanted if name != "torch"]
    if others:
        report(f"Installing {', '.join(others)}...")
        slicer.util.pip_install(" ".join(_pip_requirement(name) for name in others))
    importlib.invalidate_caches()
    still = missing_requirements(methods, **needs) + list(outdated_requirements(methods, **needs))
    if still:
        raise LatentSRError(f"still missing or too old after installation: {', '.join(still)}")
    report(f"Installed {', '.join(wanted)}.")
    if loaded:
        message = (f"{', '.join(loaded)} was upgraded, but the old version is still loaded: restart Slicer "
                   "to use LatentSR.")
        report(message)
        if restart is not None:
            restart(message)
        return False
    return True


def _install_torch() -> None:
    modules = getattr(slicer, "modules", None)
    minimum = f">={MINIMUM_VERSIONS['torch']}"
    if modules is not None and hasattr(modules, "pytorchutils"):
        import PyTorchUtils
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=minimum)
        if torch is None:
            raise LatentSRError("PyTorch was not installed")
    else:
        slicer.util.pip_install(f"torch{minimum}")
