#!/usr/bin/env bash
# Create .venv (if missing) with LatentSR and its test dependencies. Safe to run again.
# torch==2.13.0 is installed first, on its own: here that resolves to the local CPU wheel, whereas an
# unpinned torch resolved from scratch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # A local wheel (pip's find-links) first, without asking the index; else the index.
    .venv/bin/python -m pip install --quiet --no-index "torch==2.13.0" 2>/dev/null \
        || .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c "import torch, SimpleITK, skimage, slicer, LatentSRLib; print('LatentSR environment ready: torch', torch.__version__)"
