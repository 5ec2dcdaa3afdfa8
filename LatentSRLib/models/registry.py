"""Weights files: saving, checked loading, and the registry of weights bundled in Resources/Models.

A weights file is a ``torch.save`` dict ``{"format": "latentsr-weights-1", "kind", "config",
"state_dict", "meta"}``. Bundled files are listed in ``Resources/Models/models.json`` with their
sha256, which is checked on every load so a truncated or swapped file is caught with a clear error.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from .. import LatentSRError, atomic

# torch is imported inside save() and load() only: listing and resolving bundled weights (the Slicer
# panel's model selector, `latentsr models`, evaluate's checks) must not load torch.

FORMAT = "latentsr-weights-1"
MANIFEST = "models.json"


def models_folder() -> Path:
    """Where bundled weights live: $LATENTSR_MODELS, else Resources/Models beside the library."""
    if os.environ.get("LATENTSR_MODELS"):
        return Path(os.environ["LATENTSR_MODELS"])
    here = Path(__file__).resolve().parent.parent  # LatentSRLib/
    for candidate in (here.parent / "Resources" / "Models", here / "Resources" / "Models"):
        if candidate.is_dir():
            return candidate
    return here.parent / "Resources" / "Models"


def manifest() -> dict[str, dict[str, Any]]:
    """Bundled models by name: {"file", "sha256", "kind", "description"}."""
    path = models_folder() / MANIFEST
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # a hand-edited or half-copied models.json
        raise LatentSRError(f"{path} cannot be read as the list of bundled models "
                            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                            "repair it, or unset LATENTSR_MODELS to use the bundled one") from None
    for name, entry in entries.items() if isinstance(entries, dict) else [(None, None)]:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("file", "sha256", "kind"))):
            what = "is not a JSON object of models" if name is None else f"entry '{name}' lacks a file, sha256 or kind"
            raise LatentSRError(f"{path} {what}; repair it, or unset LATENTSR_MODELS to use the bundled one")
    return entries


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_weights(kind: str) -> str:
    """Name of the bundled model used for ``kind`` ("ae" or "contrastive") when none is given."""
    for name, entry in manifest().items():
        if entry.get("kind") == kind and entry.get("default", False):
            return name
    for name, entry in manifest().items():
        if entry.get("kind") == kind:
            return name
    raise LatentSRError(f"no bundled weights for method '{kind}' in {models_folder()}; pass --weights FILE")


def resolve(weights: str | os.PathLike | None, kind: str) -> tuple[Path, str | None]:
    """A weights argument (bundled name, file path or None) -> (file, expected sha256 or None)."""
    entries = manifest()
    name = str(weights) if weights is not None else default_weights(kind)
    if name in entries:
        return models_folder() / entries[name]["file"], entries[name]["sha256"]
    path = Path(name)
    if path.is_dir():
        raise LatentSRError(f"weights '{name}' is a folder: give a weights file or a bundled model name")
    if not path.exists():
        known = ", ".join(entries) or "none"
        raise LatentSRError(f"weights '{name}' is neither a file nor a bundled model (bundled: {known})")
    # A path to a bundled file is still checked against its recorded digest.
    for entry in entries.values():
        if (models_folder() / entry["file"]).resolve() == path.resolve():
            return path, entry["sha256"]
    return path, None


def save(path: str | os.PathLike, kind: str, config: dict, state_dict: dict, meta: dict | None = None,
         half: bool = True) -> Path:
    """Write a weights file (float16 tensors with ``half``; integer buffers kept as they are)."""
    import torch

    tensors = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
               for k, v in state_dict.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Metadata as plain JSON types, so weights_only loading accepts it (no numpy or torch objects).
    meta = json.loads(json.dumps(meta or {}, default=str))
    content = {"format": FORMAT, "kind": kind, "config": config, "state_dict": tensors, "meta": meta}
    # Through a private staging folder: never partial, never through a symlink planted at a fixed name.
    return atomic.write_file(path, lambda staged: torch.save(content, staged))


def load(weights: str | os.PathLike | None, kind: str) -> dict[str, Any]:
    """Load and check a weights file; returns its dict with float32 tensors.

    Raises:
        LatentSRError: missing file, sha256 mismatch with the registry, not a LatentSR weights file,
            or weights of another kind of model.
    """
    import torch

    path, expected = resolve(weights, kind)
    if not path.exists():
        raise LatentSRError(f"weights file is missing: {path}")
    data = path.read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise LatentSRError(f"weights file {path} is corrupt: its sha256 does not match the one recorded "
                            f"in {MANIFEST} (re-download or restore it)")
    try:
        # TorchVersion (a str) is allowed for files written before metadata was made plain JSON.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for garbage; all mean the same to a user
        raise LatentSRError(f"{path} is not a readable weights file ({type(error).__name__})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise LatentSRError(f"{path} is not a LatentSR weights file (expected format '{FORMAT}')")
    if content.get("kind") != kind:
        raise LatentSRError(f"{path} holds weights for '{content.get('kind')}', not for '{kind}'")
    # The parts every loader uses, checked here so a hand-made file fails with one line, not in a network.
    for key, expected in (("config", "a dict of network settings"), ("state_dict", "a dict of tensors")):
        if not isinstance(content.get(key), dict):
            raise LatentSRError(f"{path} is not a complete LatentSR weights file: its '{key}' should be {expected}")
    if not all(isinstance(v, torch.Tensor) for v in content["state_dict"].values()):
        raise LatentSRError(f"{path} is not a complete LatentSR weights file: its 'state_dict' holds non-tensors")
    if not isinstance(content.setdefault("meta", {}), dict):
        raise LatentSRError(f"{path} is not a complete LatentSR weights file: its 'meta' should be a dict")
    content["state_dict"] = {k: (v.float() if v.is_floating_point() else v) for k, v in content["state_dict"].items()}
    content["path"] = str(path)
    return content


def copy_with_meta(source: str | os.PathLike | None, target: str | os.PathLike, kind: str, **updates: Any) -> Path:
    """Write ``source``'s weights to ``target`` with ``updates`` merged into the metadata.

    Used to record inference options chosen on validation after training (e.g. the autoencoder's
    correction smoothing and gain); the tensors are copied unchanged (float16 stays float16).
    """
    content = load(source, kind)
    meta = {**content.get("meta", {}), **updates}
    return save(target, kind, content["config"], content["state_dict"], meta)


def register(name: str, file: str | os.PathLike, kind: str, description: str, default: bool = False) -> dict:
    """Add or update a bundled model in the manifest, recording its sha256 (run after training).

    ``file`` must already be in :func:`models_folder`. With ``default``, it becomes the model used
    for ``kind`` when none is named (any other default of that kind is cleared).
    """
    folder = models_folder()
    path = Path(file)
    if not path.is_absolute():
        path = folder / path
    if path.parent.resolve() != folder.resolve():
        raise LatentSRError(f"bundled weights must be in {folder}, not {path.parent}")
    entries = manifest()
    if default:
        for entry in entries.values():
            if entry.get("kind") == kind:
                entry["default"] = False
    entries[name] = {"file": path.name, "sha256": sha256(path), "kind": kind, "description": description,
                     "default": default}
    (folder / MANIFEST).write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return entries[name]
