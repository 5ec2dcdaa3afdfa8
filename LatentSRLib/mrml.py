"""Deprecated name of :mod:`LatentSRLib.slicer` (the Slicer glue, split by concern): kept for one
release so scripts written against ``from LatentSRLib import mrml`` keep working."""

from __future__ import annotations

from .slicer import *  # noqa: F401,F403
from .slicer import __all__  # noqa: F401
