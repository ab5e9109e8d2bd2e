"""Safe output handling: refuse to overwrite unless asked, never leave half-written outputs.

Outputs are built under a hidden temporary name in the destination folder and renamed
into place only when complete, so a crash or an error leaves either the old output or
nothing, never something that looks finished.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from s2pipe.errors import OutputError, OutputExistsError


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path


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
    exception the temporary output is deleted and ``path`` is left as it was.
    """
    path = check_writable(path, overwrite=overwrite)
    created: list[Path] = []
    parent = path.parent if str(path.parent) else Path(".")
    tmp = parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{''.join(path.suffixes)}"
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
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; "
                          "choose a writable output location") from exc
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            if not overwrite:  # appeared while we were working
                raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
            if directory or path.is_dir():
                trash = parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
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
            try:
                p.rmdir()
            except OSError:
                pass
        raise
