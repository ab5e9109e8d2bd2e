"""What the engines hand to a cluster, and what comes back: no Dask needed here.

A task is one call of a module-level function on picklable arguments: one scene of
``predict``, one product of ``prepare`` (each pass), one group of output blocks of
``mosaic``. Its outcome is its value or a :class:`TaskFailure`: an :class:`S2PipeError`
raised inside it is a *data* failure, reported by its one-line message and never retried
(the data will not change); anything else is an *error* (a bug, or the machine: retried by
the runner, then reported with its traceback); a task whose workers kept dying is *lost*.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from s2pipe.errors import OutputError, S2PipeError, TaskError

log = logging.getLogger(__name__)

T = TypeVar("T")
FailureKind = Literal["data", "error", "lost"]


@dataclass(frozen=True)
class TaskFailure:
    """Why one task gave no result."""

    task: str                        # the scene, product or blocks it was about
    error: str                       # one line
    kind: FailureKind = "data"
    traceback: str | None = None     # for "error": where it happened

    def line(self) -> str:
        """``task: error``; the error alone where it already begins with the task's name."""
        return self.error if self.error.startswith(f"{self.task}:") else f"{self.task}: {self.error}"


@dataclass
class Outcome(Generic[T]):
    """One task's result: ``value``, or ``failure`` when it gave none."""

    task: str
    value: T | None = None
    failure: TaskFailure | None = None


class Runner(Protocol):
    """Where tasks run. The engines take one (``runner=None``: in this process, as always)."""

    @property
    def slots(self) -> int:
        """Tasks that can run at once (the workers' threads)."""

    def share(self, obj: Any) -> Any:
        """A handle of ``obj`` (e.g. the label polygons) that tasks can take as an argument,
        sent to the workers once rather than with every task."""

    def map(self, fn: Callable[..., T], args: Sequence[tuple[Any, ...]], *, names: Sequence[str],
            in_flight: int | None = None,
            progress: Callable[[int], None] | None = None) -> Iterator[Outcome[T]]:
        """``fn(*a)`` for each ``a`` of ``args``, the outcomes in the order of ``args``.
        At most ``in_flight`` tasks are ahead of the one being returned (None: all at
        once); ``progress(1)`` is called as each task ends."""


class _Data:
    """A data failure travelling back from a worker as a value (so it is not retried)."""

    def __init__(self, message: str) -> None:
        self.message = message


def run_task(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` on a worker; an :class:`S2PipeError` comes back as a value."""
    try:
        return fn(*args)
    except S2PipeError as exc:
        return _Data(str(exc))


def data_failure(value: Any, task: str) -> TaskFailure | None:
    """The data failure ``value`` stands for (see :func:`run_task`), else None."""
    return TaskFailure(task, value.message, "data") if isinstance(value, _Data) else None


def values(outcomes: Iterable[Outcome[T]], what: str) -> Iterator[T]:
    """The values of ``outcomes`` in order; the first failure raises :class:`TaskError`
    (for an output that is made of every task's part, such as a mosaic)."""
    for o in outcomes:
        if o.failure is not None:
            raise TaskError(f"{what} failed: {o.failure.line()}")
        yield o.value  # type: ignore[misc]  # a value when there is no failure


def gather(outcomes: Iterable[Outcome[T]], what: str) -> list[T]:
    """Every task's value in order, or :class:`TaskError` listing every failure (all tasks
    run first, so that one run shows every product that needs fixing)."""
    done = list(outcomes)
    failed = [o.failure for o in done if o.failure is not None]
    if failed:
        for f in failed:
            if f.traceback:
                log.error("%s failed:\n%s", f.task, f.traceback)
        raise TaskError(f"{len(failed)} of {len(done)} {what} failed: "
                        + "; ".join(f.line() for f in failed))
    return [o.value for o in done]  # type: ignore[misc]  # values when there is no failure


def absolute(path: str | os.PathLike) -> Path:
    """``path`` from the root (symbolic links kept): what a worker elsewhere can open, when
    it mounts the file system where the client does. URLs and GDAL's ``/vsi`` paths stay."""
    text = os.fspath(path)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", text) or text.startswith("/vsi"):
        return Path(text)
    return Path(os.path.abspath(text))


def made_folders(outputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Create the folders of ``outputs`` before tasks write there at once (two workers
    creating one folder would race); the folders created, deepest first."""
    created: list[Path] = []
    for p in map(Path, outputs):
        missing = [d for d in (p.parent, *p.parent.parents) if not d.exists()]
        for d in reversed(missing):
            try:
                d.mkdir(exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {d}: {exc.strerror or exc}; choose a writable "
                                  "output location") from None
        created += [d for d in missing if d not in created]
    return sorted(created, key=lambda d: -len(d.parts))


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove those of ``folders`` (deepest first) that nothing was written into."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


def sweep_temporaries(outputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove what tasks killed mid-write left beside ``outputs``: the hidden temporaries
    :func:`s2pipe.outputs.atomic_output` names ``.<name>.tmp-*`` / ``.<name>.old-*``, and
    the writers' own files named after those. Call it when every task of the run has
    ended: then no temporary of these outputs belongs to a task still writing."""
    removed: list[Path] = []
    by_folder: dict[Path, set[str]] = {}
    for p in map(Path, outputs):
        by_folder.setdefault(p.parent, set()).add(p.name)
    for folder, names in by_folder.items():
        prefixes = tuple(f"{n}.{kind}-" for n in names for kind in ("tmp", "old"))
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith(".") or not entry.name.lstrip(".").startswith(prefixes):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                continue
            removed.append(entry)
    if removed:
        log.info("removed %d temporaries of interrupted tasks", len(removed))
    return removed
