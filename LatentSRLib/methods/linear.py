"""``linear``: linear interpolation between neighbouring slices (SimpleITK's sitkLinear)."""

from .kernel import KernelInterpolation

METHOD = KernelInterpolation("linear", "Linear", "linear interpolation between slices (sitkLinear)")
