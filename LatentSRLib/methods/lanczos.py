"""``lanczos``: radius-5 Lanczos windowed sinc along the slice axis (sitkLanczosWindowedSinc)."""

from .kernel import KernelInterpolation

METHOD = KernelInterpolation("lanczos", "Lanczos", "Lanczos windowed sinc along the slice axis (sitkLanczosWindowedSinc)")
