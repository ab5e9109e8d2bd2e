"""Products and outputs at URLs: ``s3://``, ``gs://``, ``az://``, ``http(s)://``.

Rasters are read through GDAL's virtual file systems (``/vsis3/``, ``/vsigs/``,
``/vsiaz/``, ``/vsicurl/``), with the credentials and settings GDAL takes from the
standard environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_S3_ENDPOINT`` for S3-compatible stores, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_CONNECTION_STRING`` ...). Outputs at
URLs are written locally and uploaded when complete (:func:`staged_outputs`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from s2pipe.errors import InputNotFoundError, OutputExistsError

log = logging.getLogger(__name__)

#: URL schemes and the GDAL virtual file system each is read through.
VSI_PREFIXES: dict[str, str] = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/",
                                "http": "/vsicurl/", "https": "/vsicurl/"}


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL of a scheme in :data:`VSI_PREFIXES` (or a GDAL /vsi path)."""
    text = str(path)
    return text.split("://", 1)[0].lower() in VSI_PREFIXES and "://" in text


def is_unsigned_blob(href: str) -> bool:
    """Whether ``href`` is an Azure Blob URL (the Planetary Computer's) without a SAS token,
    which the Planetary Computer refuses: its Items must be signed first."""
    return ".blob.core.windows.net/" in href and "?" not in href and not os.environ.get("AZURE_STORAGE_SAS_TOKEN")


def gdal_path(href: str | os.PathLike) -> str:
    """The path GDAL opens ``href`` with: local paths as they are, URLs under /vsi..."""
    text = str(href)
    if not is_url(text):
        return text[len("file://"):] if text.startswith("file://") else text
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    return VSI_PREFIXES[scheme] + (text if scheme in ("http", "https") else rest)


def read_bytes(href: str | os.PathLike) -> bytes:
    """The content of a small file (an item, a metadata XML) at a local path or URL."""
    text = str(href)
    if is_url(text):
        from s2pipe.vsi import read_file

        return read_file(text)
    path = Path(text[len("file://"):] if text.startswith("file://") else text)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputNotFoundError(f"{path} does not exist") from None
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _relocate(value: Any, local: Path, url: str) -> Any:
    """``value`` with every path under ``local`` replaced by the same path under ``url``."""
    if isinstance(value, Path):
        try:
            rest = value.relative_to(local)
        except ValueError:
            return value
        return url if str(rest) == "." else f"{url.rstrip('/')}/{rest.as_posix()}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _relocate(getattr(value, f.name), local, url)
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, list):
        return [_relocate(v, local, url) for v in value]
    if isinstance(value, dict):
        return {k: _relocate(v, local, url) for k, v in value.items()}
    return value


def _upload_tree(local: Path, url: str) -> None:
    """Upload ``local`` (a file and its sidecars, or a folder) to ``url``; rasters last, so
    that a map's presence means its sidecars are there; on failure remove what was sent."""
    from s2pipe import vsi

    if local.is_dir():
        files = [(p, f"{url.rstrip('/')}/{p.relative_to(local).as_posix()}") for p in local.rglob("*") if p.is_file()]
    else:  # the stand-in's own folder: the file and its sidecars (.aux.xml, .qml)
        base = url.rsplit("/", 1)[0]
        files = [(p, f"{base}/{p.name}") for p in local.parent.iterdir() if p.is_file()]
    files.sort(key=lambda f: (f[0].suffix.lower() in (".tif", ".tiff"), str(f[0])))
    sent: list[str] = []
    try:
        for path, target in files:
            log.info("uploading %s -> %s", path.name, target)
            vsi.upload(path, target)
            sent.append(target)
    except BaseException:
        for target in reversed(sent):
            vsi.delete(target)
        raise


@contextmanager
def staged_outputs(*targets: str | os.PathLike | None, overwrite: bool = False) -> Iterator[list[Any]]:
    """Local stand-ins for ``targets`` that are URLs (others, and None, are yielded as they
    are). Each URL target is refused if it exists (unless ``overwrite``), written locally
    in a temporary folder (``TMPDIR``), and uploaded when the block completes; nothing is
    uploaded when it fails. Yields the list of paths to write.
    """
    from s2pipe import vsi

    urls = [str(t) for t in targets if t is not None and is_url(t)]
    for url in urls:
        if not overwrite and vsi.exists(url):
            raise OutputExistsError(f"{url} already exists; pass --overwrite to replace it")
    if not urls:
        yield [None if t is None else Path(t) for t in targets]
        return
    with tempfile.TemporaryDirectory(prefix="s2pipe-upload-") as tmp:
        local: list[Any] = []
        for i, t in enumerate(targets):
            if t is not None and is_url(t):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                local.append(folder / str(t).rstrip("/").rsplit("/", 1)[-1])
            else:
                local.append(None if t is None else Path(t))
        yield local
        for t, stand_in in zip(targets, local):
            if t is not None and is_url(t):
                _upload_tree(stand_in, str(t))


def with_urls(result: Any, targets: Sequence[str | os.PathLike | None], stand_ins: Sequence[Any]) -> Any:
    """``result`` with the paths of local stand-ins replaced by their target URLs."""
    for t, local in zip(targets, stand_ins):
        if t is not None and is_url(t):
            result = _relocate(result, local, str(t))
    return result
