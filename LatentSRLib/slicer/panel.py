"""The panel's run lifecycle without Qt: start (after installing what is needed), poll, cancel, finish.

The widget calls :meth:`PanelRunner.start` from a button and :meth:`PanelRunner.poll` from a Qt
timer, and shows each :class:`Update` it gets back: a percentage, one status line, and at the end
the new nodes, a check table, or one readable error (its details go to the log). Nothing here
waits for the work or pumps Qt events, so Slicer stays usable while it runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

from typing import TYPE_CHECKING

from .. import LatentSRError
from ..methods import Cancelled
from .install import ensure_requirements

if TYPE_CHECKING:  # the check loads scikit-image, which a stock Slicer installs on first use
    from ..check import CheckResult

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Update:
    """What the panel shows after a call: progress, status, and what finished."""

    percent: int
    status: str
    running: bool
    error: str | None = None           # one readable line for a dialog
    outputs: list | None = None        # a finished run: [input, output per method]
    check: "CheckResult | None" = None   # a finished check
    log: str | None = None             # a failed run: the worker's whole log, kept for the user to open


class PanelRunner:
    """Holds the panel's current background job (a :class:`.jobs.NodeJob` or :class:`.checking.CheckJob`)."""

    def __init__(self) -> None:
        self.job = None

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, methods: list[str], start: Callable[[], object], confirm: Callable[[str], bool] | None = None,
              report: Callable[[str], None] | None = None, restart: Callable[[str], None] | None = None,
              scoring: bool = False, resampling_check: bool = True) -> Update:
        """Install what ``methods`` (run with ``resampling_check``; and ``scoring`` them, for a check) need,
        asking ``confirm`` (and ``restart`` when an upgrade needs one), then ``start()`` the job."""
        try:
            if not ensure_requirements(methods, confirm, report, restart, scoring, resampling_check):
                return Update(0, "Nothing was done: the required Python packages are not installed (or need a "
                                 "restart of Slicer).", False)
            self.job = start()
        except Exception as error:  # noqa: BLE001 - one readable line; details in the log
            return self._failed(error)
        return self.poll()

    def cancel(self) -> Update:
        """Stop the job at once: nothing is added to the scene (without a job, nothing happens)."""
        if self.job is not None:
            self.job.cancel()
        return self.poll()

    def poll(self) -> Update:
        job = self.job
        if job is None:
            return Update(0, "", False)  # nothing runs (a cancel without a job)
        progress = job.progress()
        percent = int(round(100 * progress.fraction))
        if not job.done():
            return Update(percent, "\n".join([str(progress), *progress.notes]), True)
        self.job = None
        try:
            result = job.finish()
        except Cancelled:
            return Update(0, "Cancelled: nothing was added to the scene.", False)
        except Exception as error:  # noqa: BLE001
            return self._failed(error, _log_path(job))
        if not isinstance(result, list):  # a check's result (a CheckResult), not nodes
            return Update(100, job.summary(), False, check=result)
        return Update(100, job.summary(), False, outputs=[job.node, *result])

    @staticmethod
    def _failed(error: Exception, log_file: str | None = None) -> Update:
        if isinstance(error, LatentSRError):
            message = str(error)
        else:
            log.exception("LatentSR failed", exc_info=error)
            message = f"LatentSR failed: {type(error).__name__}: {error} (details in the log)"
        return Update(0, message.splitlines()[0] if message else message, False, error=message, log=log_file)


def _log_path(job) -> str | None:
    """The failed job's worker log, where the background job kept it (``background.Job.log_path``)."""
    path = getattr(getattr(job, "job", None), "log_path", None)
    return str(path) if path is not None and os.path.isfile(path) else None
