"""Run the LatentSR module's self-test inside a real 3D Slicer and exit with its result.

    Slicer --no-splash --testing --additional-module-paths <repo>/LatentSR --python-script scripts/slicer_self_test.py

(``--testing`` makes Slicer use a fresh settings file and lets the module install missing Python
packages without asking, as Slicer's own module tests do; ``--additional-module-paths`` is read in
``Base/QTCore/qSlicerCoreCommandOptions.cxx``.) The same test runs from the module's
"Reload and Test" button (Developer mode) and, in an extension build, as the ctest ``py_LatentSR``
(``slicer_add_python_unittest`` in ``LatentSR/CMakeLists.txt``).
"""

import sys
import unittest

import slicer


def main() -> int:
    import LatentSR  # the module file, on Slicer's path through --additional-module-paths

    result = unittest.TextTestRunner(verbosity=2).run(LatentSR.LatentSRTest("runTest"))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    slicer.util.exit(code)
