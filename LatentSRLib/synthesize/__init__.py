"""Inference of the learned methods over slices and frames (each module implements the
``upsample(array, factor, spacing_zyx, run)`` contract of :mod:`LatentSRLib.pipeline`)."""
