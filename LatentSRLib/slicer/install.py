"""Python packages the methods need: what is missing, and installing it inside Slicer.

Kept out of the module file, as SlicerNNUnet keeps its InstallLogic in its library: torch comes
from the PyTorch extension's installer when it is present (it picks the build that matches the GPU
driver), else from pip; the others from pip. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Iterable

import slicer

from .. import LatentSRError
from .. import pipeline

#: Why each requirement is needed, for the consent dialog.
REQUIREMENT_REASONS = {
    "torch": "runs the learned super-resolution models (a large download; uses the GPU when there is one)",
    "SimpleITK": "reads and writes images",
    "scipy": "B-spline and Lanczos interpolation",
    "scikit-image": "image quality measures",
    "opencv-python-headless": "optical flow for the motion-compensated methods (flow, motion)",
    "nibabel": "reads NIfTI files whole (refuses truncated files)",
}
#: pip requirement -> importable module that every method needs; each method adds its own
#: (``Method.requirements``: torch for the learned ones, OpenCV for the flow-based ones).
_REQUIREMENTS_ALWAYS = {"SimpleITK": "SimpleITK", "scipy": "scipy", "scikit-image": "skimage", "nibabel": "nibabel"}


def missing_requirements(methods: Iterable[str]) -> list[str]:
    """pip requirements that the given methods need and that are not importable (theirs first)."""
    from .. import methods as registry

    methods = list(methods)
    unknown = [m for m in methods if m not in pipeline.METHODS]
    if unknown:
        raise LatentSRError(f"unknown method '{unknown[0]}' (choose from {', '.join(pipeline.METHODS)})")
    needed = {package: module for m in methods for package, module in registry.get(m).requirements}
    needed.update(_REQUIREMENTS_ALWAYS)
    return [requirement for requirement, module in needed.items() if importlib.util.find_spec(module) is None]


def consent_text(missing: Iterable[str]) -> str:
    """The question the panel asks before installing ``missing``."""
    reasons = "\n".join(f"  - {name}: {REQUIREMENT_REASONS.get(name, 'needed by LatentSR')}" for name in missing)
    return (f"LatentSR needs these Python packages, which are not installed yet:\n{reasons}\n\n"
            "Download and install them now? This can take several minutes.")


def ensure_requirements(methods: Iterable[str], confirm: Callable[[str], bool] | None = None,
                        report: Callable[[str], None] | None = None) -> bool:
    """Install what ``methods`` need and is missing, after ``confirm(question)``; False if declined.

    Raises:
        LatentSRError: something is still missing after installing.
    """
    methods = list(methods)
    missing = missing_requirements(methods)
    if not missing:
        return True
    if confirm is not None and not confirm(consent_text(missing)):
        return False
    report = report or (lambda text: None)
    if "torch" in missing:
        report("Installing PyTorch...")
        _install_torch()
    others = [name for name in missing if name != "torch"]
    if others:
        report(f"Installing {', '.join(others)}...")
        slicer.util.pip_install(" ".join(others))
    importlib.invalidate_caches()
    still = missing_requirements(methods)
    if still:
        raise LatentSRError(f"still missing after installation: {', '.join(still)}")
    report(f"Installed {', '.join(missing)}.")
    return True


def _install_torch() -> None:
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "pytorchutils"):
        import PyTorchUtils
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.0")
        if torch is None:
            raise LatentSRError("PyTorch was not installed")
    else:
        slicer.util.pip_install("torch>=2.0")
