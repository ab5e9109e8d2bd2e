"""Safe output handling: refuse to overwrite unless asked, never leave half-written outputs.

Outputs are built under a hidden temporary name in the destination folder and renamed
into place only when complete, so a crash or an error leaves either the old output or
nothing, never something that looks finished.

Temporary names carry the writing process (``.<name>.tmp-<pid>-<host>-<random>``): a run
killed with SIGKILL cannot remove its own, so the next run on the same output removes those
whose process is gone, and never those of a run still going. A full disk inside an
:func:`atomic_output` block, whatever the writer (a plain file, GDAL, torch, PIL, OGR),
becomes one :class:`DiskFullError` naming the output being written.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from s2pipe.errors import DiskFullError, OutputError, OutputExistsError, S2PipeError

log = logging.getLogger(__name__)

#: Below this much free space a failed write is taken for a full disk: writers fill the
#: disk to the last block before they fail, and GDAL, torch and OGR do not keep the errno.
LOW_SPACE = 1 << 20
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"
_OWNER = re.compile(r"\.(?:tmp|old)-(\d+)-([0-9a-f]{4})-")
_active: list[tuple[Path, Path]] = []  # (output, temporary) of the blocks being written
_active_lock = threading.Lock()


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path


def _temporary_name(path: Path, kind: str) -> str:
    """``.<name>.<kind>-<pid>-<host>-<random>``: whose it is, so stale ones can be told apart."""
    return f".{path.name}.{kind}-{os.getpid()}-{_HOST}-{uuid.uuid4().hex[:6]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed runs left for ``path``; the removed paths.

    Only those named by this host for a process that no longer exists go: a run still
    writing the same output, or one on another machine sharing the folder, is left alone.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name.lstrip(".")
        if not (name.startswith(f"{path.name}.tmp-") or name.startswith(f"{path.name}.old-")):
            continue
        m = _OWNER.search(entry.name[entry.name.index(path.name) + len(path.name):])
        if m is None or m.group(2) != _HOST or _alive(int(m.group(1))):
            continue
        try:
            _remove(entry)
        except OSError:
            continue
        removed.append(entry)
        log.info("removed %s, left by an interrupted run", entry)
    return removed


def _written(tmp: Path) -> tuple[int, int]:
    """Bytes and latest modification time of a temporary output and its own temporaries
    (siblings named after it, such as a GDAL staging file)."""
    size, mtime = 0, 0
    parent = tmp.parent
    try:
        siblings = [p for p in parent.iterdir() if p.name.lstrip(".").startswith(tmp.name.lstrip("."))]
    except OSError:
        return 0, 0
    for p in siblings:
        files = [p] if not p.is_dir() else [p, *p.rglob("*")]
        for f in files:
            try:
                st = f.lstat()
            except OSError:
                continue
            size += st.st_size if not f.is_dir() else 0
            mtime = max(mtime, st.st_mtime_ns)
    return size, mtime


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def nearly_full(path: str | os.PathLike) -> bool:
    """Whether the file system holding ``path`` (or its folder) has less than
    :data:`LOW_SPACE` free: a writer that failed there ran out of space."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    free = _free(p)
    return free is not None and free < LOW_SPACE


def _as_output_error(exc: BaseException) -> S2PipeError | None:
    """The one-line error for a write that failed inside the active outputs, or None.

    A full disk (ENOSPC/EDQUOT, or any writer's failure while less than :data:`LOW_SPACE`
    is free) names the output written last; an ``OSError`` about one of the temporaries
    names its output.
    """
    if not isinstance(exc, Exception) or isinstance(exc, DiskFullError):
        return None
    with _active_lock:
        active = list(_active)
    if not active:
        return None
    chain = list(_chain(exc))
    named = None  # the output whose temporary an OSError names
    for e in chain:
        if isinstance(e, OSError) and not isinstance(e, S2PipeError) and e.filename:
            failed = Path(os.fsdecode(e.filename))
            named = next(((o, t) for o, t in active if t == failed or t in failed.parents
                          or failed.name.lstrip(".").startswith(t.name.lstrip("."))), None)
            if named is not None:
                break
    out, tmp = named or max(active, key=lambda a: _written(a[1])[1])  # else the last written
    parent = out.parent if str(out.parent) else Path(".")
    free = _free(parent)
    full = any(isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS for e in chain)
    if not full and (not isinstance(exc, S2PipeError) or isinstance(exc, OutputError)):
        full = free is not None and free < LOW_SPACE
    if full:
        written = _written(tmp)[0]
        return DiskFullError(
            f"cannot write {out}: no space left on the device ("
            + (f"{_size(written)} of it written, " if written else "")
            + f"{_size(free or 0)} free in {parent}); free some space or choose another "
            "output location")
    if named is not None:
        strerror = next(e.strerror for e in chain if isinstance(e, OSError) and e.filename)
        return OutputError(f"cannot write {out}: {strerror}; check the output location "
                           "(permissions, disk) and try again")
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False,
                  directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; move it to ``path`` on success.

    With ``directory=True`` the temporary path is created as an empty folder. The
    temporary name keeps the suffix of ``path`` so GDAL drivers see the right format.
    Missing parent folders are created, and removed again if the block fails. On any
    exception the temporary output is deleted and ``path`` is left as it was; a full disk
    is raised as :class:`DiskFullError` and an ``OSError`` about the temporary as
    :class:`OutputError`, both naming ``path``. Temporaries of killed runs on ``path``
    are removed first (:func:`remove_stale_temporaries`).
    """
    path = check_writable(path, overwrite=overwrite)
    created: list[Path] = []
    parent = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path)
    tmp = parent / f"{_temporary_name(path, 'tmp')}{''.join(path.suffixes)}"
    try:
        for p in reversed([parent, *parent.parents]):
            if not p.exists():
                p.mkdir()
                created.append(p)
        if directory:
            tmp.mkdir()
        else:  # fail here, not deep inside a writer, when the folder is not writable
            tmp.touch()
            tmp.unlink()
    except OSError as exc:
        for p in reversed(created):
            p.rmdir()
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(f"cannot write {path}: no space left on the device "
                                f"({_size(_free(parent) or 0)} free in {parent}); free some "
                                "space or choose another output location") from exc
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; "
                          "choose a writable output location") from exc
    entry = (path, tmp)
    with _active_lock:
        _active.append(entry)
    try:
        try:
            yield tmp
        except BaseException as exc:
            translated = _as_output_error(exc)  # before cleaning up: the free space at failure
            if translated is not None:
                raise translated from exc
            raise
        if path.exists() or path.is_symlink():
            if not overwrite:  # appeared while we were working
                raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
            if directory or path.is_dir():
                trash = parent / _temporary_name(path, "old")
                path.rename(trash)
                tmp.rename(path)
                _remove(trash)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)
        for p in reversed(created):
            with suppress(OSError):
                p.rmdir()
        raise
    finally:
        with _active_lock:
            _active.remove(entry)
