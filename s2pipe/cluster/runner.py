"""Tasks on a Dask cluster: connect or start one, limit the workers' threads, map, close.

``open_runner(scheduler=ADDRESS)`` connects to a running scheduler (started by
``dask scheduler``, dask-jobqueue on SLURM/PBS, or dask-kubernetes);
``open_runner(workers=N)`` starts a local cluster of N worker processes on 127.0.0.1 and
stops it afterwards. Workers must import the same s2pipe as the client and reach the
inputs and outputs by the same paths (a shared file system, or URLs).

A worker whose process dies (killed, out of memory) has its tasks run again on another
worker by the scheduler, up to ``distributed.scheduler.allowed-failures`` (3) times; a
task raising anything but an :class:`~s2pipe.errors.S2PipeError` is retried
:data:`RETRIES` times. Outputs are written atomically, and every task rewrites the same
bytes, so a rerun task leaves complete, identical outputs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from distributed import Client, Future, KilledWorker, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from s2pipe import __version__
from s2pipe.cluster.tasks import Outcome, TaskFailure, data_failure, run_task
from s2pipe.errors import OptionError
from s2pipe.resources import usable_cpus

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Reruns of a task that raised an error other than an S2PipeError (a full /tmp, a lost
#: connection to the file server...); a worker's death is handled by the scheduler.
RETRIES = 1
#: Environment variables that size the thread pools of OpenMP (torch), BLAS and GDAL.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GDAL_NUM_THREADS",
                    "S2PIPE_THREADS")
#: Set on a worker, the compute threads of each of its tasks (default: its Dask threads).
THREADS_VARIABLE = "S2PIPE_WORKER_THREADS"
CONNECT_TIMEOUT = "20s"


class ThreadLimits(WorkerPlugin):
    """Sizes each worker's compute threads (torch, BLAS, GDAL) to ``threads``, else to the
    worker's :data:`THREADS_VARIABLE` (a GPU worker's reading wants a few cores), else to
    its Dask thread count, so that N workers on N cores do not oversubscribe them."""

    idempotent = True

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        n = max(1, int(self.threads or os.environ.get(THREADS_VARIABLE) or worker.state.nthreads))
        for var in THREAD_VARIABLES:  # GDAL reads it per job (raster.profiles.gdal_env defers to it)
            os.environ[var] = str(n)
        if "torch" in sys.modules:  # otherwise torch reads OMP_NUM_THREADS when imported
            sys.modules["torch"].set_num_threads(n)


def _worker_version() -> str:
    return __version__


class DaskRunner:
    """A :class:`~s2pipe.cluster.tasks.Runner` on the workers of a ``distributed.Client``."""

    def __init__(self, client: Client, *, cluster: LocalCluster | None = None, retries: int = RETRIES) -> None:
        self.client, self.cluster, self.retries = client, cluster, retries

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard of a local cluster started here (None without bokeh)."""
        if self.cluster is None or importlib.util.find_spec("bokeh") is None:
            return None
        return str(self.cluster.dashboard_link)

    @property
    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def share(self, obj: Any) -> Any:
        return self.client.scatter([obj], broadcast=True, hash=False)[0]  # in a list: sent as one object

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], *, names: Sequence[str],
            in_flight: int | None = None,
            progress: Callable[[int], None] | None = None) -> Iterator[Outcome[T]]:
        token = uuid.uuid4().hex[:8]
        label = getattr(fn, "__name__", "task").strip("_")
        futures: dict[int, Future] = {}

        def submit(i: int) -> None:
            key = f"{label}-{i}-{re.sub(r'[^A-Za-z0-9_.]+', '_', names[i])[-80:]}-{token}"
            fut = self.client.submit(run_task, fn, *args[i], key=key, retries=self.retries, pure=False)
            if progress is not None:
                fut.add_done_callback(lambda _: progress(1))
            futures[i] = fut

        ahead = len(args) if in_flight is None else max(1, in_flight)
        try:
            for i in range(min(ahead, len(args))):
                submit(i)
            for i in range(len(args)):
                if i + ahead < len(args):
                    submit(i + ahead)
                yield self._outcome(futures.pop(i), names[i])
        finally:
            if futures:  # the caller stopped early (an error): drop the tasks left
                self.client.cancel(list(futures.values()))

    @staticmethod
    def _outcome(fut: Future, name: str) -> Outcome[Any]:
        try:
            value = fut.result()
        except KilledWorker:
            return Outcome(name, failure=TaskFailure(
                name, "the workers running it died repeatedly (out of memory?); see the workers' logs",
                "lost"))
        except Exception as exc:  # anything else is a bug (or the machine): keep its traceback
            first = (str(exc).strip().splitlines() or [""])[0]
            return Outcome(name, failure=TaskFailure(
                name, f"{type(exc).__name__}: {first}", "error", "".join(traceback.format_exception(exc))))
        failure = data_failure(value, name)
        return Outcome(name, failure=failure) if failure else Outcome(name, value)


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _connect(scheduler: str) -> Client:
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one "
                          "(dask scheduler) or check --scheduler / S2PIPE_SCHEDULER") from None


def _check_workers(client: Client) -> None:
    try:
        versions = client.run(_worker_version)
    except (ImportError, AttributeError) as exc:
        raise OptionError(f"the Dask workers cannot run s2pipe ({exc}); install s2pipe {__version__} "
                          "on every worker") from None
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        raise OptionError(f"Dask workers run another s2pipe ({', '.join(sorted(set(other.values())))}) "
                          f"than this one ({__version__}); install the same version everywhere")
    if not versions:
        log.warning("the Dask scheduler has no worker yet; tasks wait for one")


@contextmanager
def open_runner(scheduler: str | None = None, workers: int | None = None, *,
                threads: int | None = None) -> Iterator[DaskRunner]:
    """A runner on the scheduler at ``scheduler``, or on a local cluster of ``workers``
    processes (one Dask thread each, ``threads`` compute threads each: default the CPUs
    shared out) that is stopped on exit. Raises :class:`OptionError` when neither or both
    are given, or when the scheduler cannot be reached."""
    if (scheduler is None) == (workers is None):
        raise OptionError("give a scheduler address or a number of local workers, not both")
    cluster: LocalCluster | None = None
    if scheduler is not None:
        client = _connect(scheduler)
        limits = ThreadLimits(threads)
    else:
        assert workers is not None
        if workers < 1:
            raise OptionError(f"--workers {workers}: give 1 or more")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0" if _has_bokeh() else None)
        client = Client(cluster)
        limits = ThreadLimits(threads or max(1, usable_cpus() // workers))
    try:
        client.register_plugin(limits, name="s2pipe-thread-limits")
        _check_workers(client)
        yield DaskRunner(client, cluster=cluster)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
