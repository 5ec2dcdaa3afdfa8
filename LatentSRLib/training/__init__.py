"""Training loops for the learned methods, on anisotropic scans only (no high-resolution truth)."""
