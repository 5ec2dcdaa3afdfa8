"""The methods: one file each, one object each, registered in :data:`REGISTRY`.

Adding a method = one file defining ``METHOD`` (a :class:`~.base.Method`) plus one line below.
Method files import torch (or OpenCV) only inside ``upsample``, so listing methods is cheap and the
conventional ones never load torch.
"""

from __future__ import annotations

from .. import LatentSRError
from . import ae, bspline, contrastive, flow, lanczos, linear, motion
from .base import Cancelled, Method, Run

#: Every method, in the order tables and menus show them.
REGISTRY: tuple[Method, ...] = (
    linear.METHOD,
    bspline.METHOD,
    lanczos.METHOD,
    flow.METHOD,
    ae.METHOD,
    ae.LATENT_ONLY,
    contrastive.METHOD,
    motion.METHOD,
)

#: The method the command line and the Slicer panel preselect: the one that wins the protocol on the
#: test sets (README, Results).
DEFAULT = "flow"

_BY_NAME = {method.name: method for method in REGISTRY}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def get(name: str) -> Method:
    """The method called ``name`` (case-insensitive: "AE" is "ae").

    Raises:
        LatentSRError: no such method.
    """
    method = _BY_NAME.get(str(name).strip().lower())
    if method is None:
        raise LatentSRError(f"unknown method '{name}' (choose from {', '.join(_BY_NAME)})")
    return method


__all__ = ["DEFAULT", "REGISTRY", "Cancelled", "Method", "Run", "get", "names"]
