#!/usr/bin/env bash
# Create .venv (if missing) with LatentSR and its test dependencies. Safe to run again.
# Where torch is missing, torch==2.13.0 is asked for in the same install: here that resolves to the
# local CPU wheel, whereas an unpinned torch resolved from scratch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Editable installs from pyproject.toml alone need pip 21.3 (PEP 660): upgrade only an older pip.
if ! .venv/bin/python -c "import sys, pip; sys.exit(tuple(map(int, pip.__version__.split('.')[:2])) < (21, 3))"; then
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
REQUIREMENTS=(-e ".[test]")
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    REQUIREMENTS=("torch==2.13.0" "${REQUIREMENTS[@]}")
fi

# uv installs the same packages in a fraction of pip's time (parallel downloads and unpacking).
# It is taken from PATH, else installed into .venv; where neither works, pip does the install
# (INSTALLER=pip: pip only).
UV=
if [ "${INSTALLER:-uv}" = uv ]; then
    if command -v uv >/dev/null; then
        UV=uv
    elif [ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet uv 2>/dev/null; then
        UV=.venv/bin/uv
    fi
fi
# uv does not read pip's configuration: pass it the package sources pip is configured with (find-links,
# extra indexes, constraints), and let it weigh all indexes together as pip does.
uv_sources() {
    .venv/bin/python - <<'PY'
import ast, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint", "no-index": "--no-index"}
seen = []
for line in listed.splitlines():  # scope.name='value', e.g. global.find-links='/opt/wheels'
    key, _, value = line.partition("=")
    flag = flags.get(key.rsplit(".", 1)[-1])
    for item in ast.literal_eval(value).split() if flag else ():
        if flag == "--no-index":  # a switch: no-index='true'
            item = "" if item.lower() in ("1", "true", "yes", "on") else None
        if item is not None and (flag, item) not in seen:
            seen.append((flag, item))
            print(flag, *[item] if item else [], sep="\n")
PY
}
# No bytecode for the whole environment (pip's default; about 9,500 files, half of pip's time): the
# modules the command line imports are compiled below, the rest on first use.
installed=false
if [ -n "$UV" ]; then
    mapfile -t SOURCES < <(uv_sources)
    "$UV" pip install --quiet --python .venv/bin/python --index-strategy unsafe-best-match "${SOURCES[@]}" \
        "${REQUIREMENTS[@]}" && installed=true || echo "uv could not install; trying pip" >&2
fi
if ! $installed; then
    .venv/bin/python -m pip install --quiet --no-compile "${REQUIREMENTS[@]}"
fi

# Import what the methods, the scoring and the figures use (the check that the environment works),
# and byte-compile those modules once, as pip would have (about 1,900 files of the 9,500).
.venv/bin/python -c "
import compileall, sys, sysconfig
import torch, SimpleITK, nibabel, scipy.ndimage, scipy.stats, skimage.metrics, matplotlib.pyplot, cv2, slicer, LatentSRLib.cli
site = sysconfig.get_path('purelib')
files = [m.__file__ for m in list(sys.modules.values()) if (getattr(m, '__file__', None) or '').startswith(site)]
assert all(compileall.compile_file(f, quiet=1) for f in files if f.endswith('.py'))
print('LatentSR environment ready: torch', torch.__version__)
"

# A second, older slicer-core beside .venv (.venv-old), so the Slicer-side tests also run against a
# Slicer whose sequence reader is NRRD-only (Testing/test_slicer_files.py). Required in CI; elsewhere a
# failure (e.g. offline) only means those tests skip, and the rest of the environment is ready.
if ! bash scripts/setup_old_slicer.sh; then
    [ "${CI:-}" = true ] && { echo "CI: the older slicer-core could not be installed" >&2; exit 1; }
    echo "warning: no .venv-old (scripts/setup_old_slicer.sh failed): the older-Slicer tests will skip" >&2
fi
