"""Runs one function over many items, in-process or on a Dask cluster (local or remote): the engine
of folder runs (:mod:`.cohort`). Dask is imported only when a run asks for workers or a scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator, Sequence

from . import LatentSRError
from .manifest import one_line


def check_engine(workers: int, scheduler: str | None) -> None:
    """Refuse a negative worker count or a scheduler address Dask cannot parse, before any work."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise LatentSRError(f"--workers must be 0 or more, got {workers}")
    if scheduler is not None:
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend
        try:
            get_backend(parse_address(scheduler)[0])
        except (ValueError, TypeError) as error:
            raise LatentSRError(f"--scheduler {scheduler}: {one_line(error)}") from None


class _ClosingHeartbeat(logging.Filter):
    """Drops "Failed to communicate with scheduler during heartbeat" and its traceback (distributed's
    Worker.heartbeat): as our cluster closes, a heartbeat in flight finds its connection closed, as meant."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "during heartbeat" not in record.getMessage()


def _quiet_for_shutdown(dask_worker) -> None:
    """On each worker of our cluster before it closes: no new heartbeat, and one in flight ends quietly."""
    dask_worker.periodic_callbacks["heartbeat"].stop()
    logging.getLogger("distributed.worker").addFilter(_ClosingHeartbeat())


class Engine:
    """Runs one function over many items: in-process (workers <= 1) or on a Dask cluster."""

    def __init__(self, workers: int = 1, scheduler: str | None = None, echo: Callable[[str], None] = print):
        check_engine(workers, scheduler)
        self.workers, self.scheduler, self.echo = workers, scheduler, echo
        self.distributed = bool(scheduler) or workers >= 2
        self.client = self.cluster = None
        # Local cluster: share the cores; a remote cluster's workers keep their own settings.
        self.threads = max(1, (os.cpu_count() or 1) // workers) if self.distributed and not scheduler else None

    def __enter__(self) -> "Engine":
        if not self.distributed:
            return self
        from dask.distributed import Client, LocalCluster  # lazily: only cohort runs need Dask
        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout="30s")
            else:
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":8787", silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError, ValueError, ImportError, RuntimeError) as error:
            self.__exit__()
            where = f"reach the Dask scheduler {self.scheduler}" if self.scheduler else "start a local Dask cluster"
            raise LatentSRError(f"cannot {where}: {one_line(error)}") from None
        import importlib.util
        viewable = importlib.util.find_spec("bokeh") is not None  # the dashboard's pages need bokeh
        hint = "" if viewable else " (pip install bokeh to view it)"
        self.echo(f"Dask dashboard: {self.client.dashboard_link}{hint}")
        return self

    def __exit__(self, *exc) -> None:
        # Our own cluster only (a remote one's workers go on): quiet workers first, then the client
        # that talks to the scheduler, then the cluster (workers, then the scheduler).
        if self.cluster is not None and self.client is not None:
            with contextlib.suppress(Exception):  # a worker already gone has no heartbeat to stop
                self.client.run(_quiet_for_shutdown)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def map(self, function: Callable, items: Sequence, **kwargs) -> Iterator[tuple[int, Any, BaseException | None]]:
        """(index, result, error) per item, in completion order; ``error`` is what the task raised."""
        kwargs = {**kwargs, "threads": self.threads} if self.threads else kwargs
        if self.client is None:
            for i, item in enumerate(items):
                yield i, function(item, **kwargs), None
            return
        from dask.distributed import as_completed
        futures = self.client.map(function, items, pure=False, **kwargs)
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in as_completed(futures):
                try:
                    yield index[future.key], future.result(), None
                except Exception as error:  # noqa: BLE001 -- e.g. KilledWorker: the worker died (OOM)
                    yield index[future.key], None, error
        finally:
            self.client.cancel(futures)
