"""LatentSR: through-plane super-resolution of anisotropic MRI, trained on anisotropic data only.

The pure-Python library behind the 3D Slicer module and the ``latentsr`` command line.
It never imports Qt; only :mod:`LatentSRLib.mrml` imports Slicer's MRML.
"""

__version__ = "0.1.0"


class LatentSRError(Exception):
    """An error a user can act on: its message names the problem in one line."""
