"""Products and outputs at URLs: ``s3://``, ``gs://``, ``az://``, ``http(s)://``.

Rasters are read through GDAL's virtual file systems (``/vsis3/``, ``/vsigs/``,
``/vsiaz/``, ``/vsicurl/``), with the credentials and settings GDAL takes from the
standard environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_S3_ENDPOINT`` for S3-compatible stores, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_CONNECTION_STRING`` ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from s2pipe.errors import InputNotFoundError

#: URL schemes and the GDAL virtual file system each is read through.
VSI_PREFIXES: dict[str, str] = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/",
                                "http": "/vsicurl/", "https": "/vsicurl/"}


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL of a scheme in :data:`VSI_PREFIXES` (or a GDAL /vsi path)."""
    text = str(path)
    return text.split("://", 1)[0].lower() in VSI_PREFIXES and "://" in text


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
