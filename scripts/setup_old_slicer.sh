#!/usr/bin/env bash
# Create .venv-old: the project's .venv with an older slicer-core (Slicer's MRML) in front of it, so
# that the Slicer-side file and sequence tests run against two Slicer versions whose behaviour differs
# (Testing/test_slicer_files.py; see its docstring for what differs and why it matters).
#
# Only slicer-core and the vtk it pins are installed here (--no-deps, about 30 s); every other package
# (numpy, SimpleITK, nibabel, pytest, ...) comes from .venv through a .pth file, which Python appends
# after this venv's own site-packages, so the old slicer and vtk win. Run scripts/setup.sh first.
# Safe to run again. OLD_SLICER_CORE picks another version (pip index versions slicer-core).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD_SLICER_CORE=${OLD_SLICER_CORE:-5.11.0.2}   # the oldest on PyPI: its volume sequences are NRRD only
OLD_VTK=${OLD_VTK:-9.6.0}                      # what that slicer-core pins (its Requires-Dist)
[ -x .venv/bin/python ] || { echo "run scripts/setup.sh first (no .venv)" >&2; exit 1; }
PYTHON=$(.venv/bin/python -c "import sys; print(sys.executable)")
if [ ! -x .venv-old/bin/python ]; then
    "$PYTHON" -m venv .venv-old
fi
.venv-old/bin/python -m pip install --quiet --no-deps "slicer-core==$OLD_SLICER_CORE" "vtk==$OLD_VTK"
OLD_SITE=$(cd / && "$OLDPWD/.venv-old/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
MAIN_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")
# addsitedir, not a bare path line: .venv's own .pth files (the editable LatentSR install) are read too.
echo "import site; site.addsitedir('$MAIN_SITE')" > "$OLD_SITE/latentsr-main-venv.pth"
cd / && "$OLDPWD/.venv-old/bin/python" -c "
import importlib.metadata as m, slicer, LatentSRLib
assert m.version('slicer-core') == '$OLD_SLICER_CORE', m.version('slicer-core')
print('.venv-old ready: slicer-core', m.version('slicer-core'), 'vtk', m.version('vtk'))
"
