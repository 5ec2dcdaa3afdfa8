"""Learned super-resolution models and their bundled weights."""
