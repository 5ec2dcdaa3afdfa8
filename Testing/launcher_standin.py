"""Stand-in for Slicer's ``PythonSlicer`` (a CTKAppLauncher), for the background-job tests on POSIX.

Run as ``python launcher_standin.py ARGS...``: it runs ``python ARGS...`` as a child, the way
``PythonSlicer ARGS...`` runs ``python-real ARGS...``. What it copies, and where:

- Slicer ``SuperBuild/python_configure_python_launcher.cmake`` lines 136-152: PythonSlicer is
  ``ctkAppLauncherConfigureForExecutable(APPLICATION_NAME SlicerPython ...)`` whose application is the
  real interpreter (``APPLICATION_INSTALL_EXECUTABLE_NAME python-real``).
- commontk/AppLauncher ``Base/ctkAppLauncher.cpp`` (commit 05c8846), ``ctkAppLauncherInternal::runProcess``:
  ``QProcess::start(ApplicationToLaunch, ApplicationToLaunchArguments)`` with the launcher's own
  arguments appended (``configure``: unparsed arguments), output forwarded
  (``QProcess::ForwardedChannels``), in the launcher's own process group (QProcess starts no group
  or session), and the launcher waits for it.
- ``applicationFinished``: the launcher exits with the child's exit code; a crashed child is reported as
  ``error: [<app>] exit abnormally - Report the problem.`` and the launcher exits with EXIT_FAILURE.
- The launcher installs no signal handler anywhere, so no signal reaches python-real. This stand-in
  goes one step further and ignores SIGTERM and SIGINT, so ``terminate()`` on it does nothing at all:
  the worst case (a real Qt launcher dies of SIGTERM, leaving python-real behind all the same).
"""

import signal
import subprocess
import sys

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _default_signals() -> None:
    for number in STOP_SIGNALS:  # the child gets default dispositions, as QProcess's child does
        signal.signal(number, signal.SIG_DFL)


def main() -> int:
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, *sys.argv[1:]], preexec_fn=_default_signals)
    code = child.wait()
    if code < 0:
        print(f"error: [{sys.executable}] exit abnormally - Report the problem.", file=sys.stderr, flush=True)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
