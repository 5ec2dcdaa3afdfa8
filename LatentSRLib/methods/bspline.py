"""``bspline``: cubic B-spline interpolation along the slice axis (SimpleITK's sitkBSpline)."""

from .kernel import KernelInterpolation

METHOD = KernelInterpolation("bspline", "B-spline", "cubic B-spline interpolation along the slice axis (sitkBSpline)")
