"""Files (not rasters) at URLs through GDAL's virtual file systems: read, list, upload, delete.

rasterio opens rasters at ``/vsis3/``, ``/vsicurl/`` ... paths but offers no call for the
other files a product or an output has (an item's JSON, a zip's members, a map's
sidecars). These few functions call GDAL's own VSI API (``VSIFOpenL`` ...) in the libgdal
rasterio loaded, so every byte s2pipe moves goes through one client with one set of
credentials and settings (``AWS_*``, ``AWS_S3_ENDPOINT``, ``GDAL_HTTP_*`` ...). Failures
become one-line errors naming the URL and what to check.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
from pathlib import Path
from typing import Any

from s2pipe.errors import InputNotFoundError, RemoteError

CHUNK = 4 * 2**20


@functools.cache
def _lib() -> Any:
    import rasterio
    import rasterio._base  # noqa: F401  (loads libgdal)

    here = Path(rasterio.__file__).parent
    candidates = sorted(glob.glob(str(here.parent / "rasterio.libs" / "libgdal*")))
    candidates += sorted(glob.glob(str(here / ".dylibs" / "libgdal*")))
    try:  # the libgdal this process already mapped for rasterio (a source build)
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            candidates += [line.split()[-1] for line in f if "libgdal" in line and "pyogrio" not in line]
    except OSError:
        pass
    found = ctypes.util.find_library("gdal")
    candidates += [found] if found else []
    if not candidates:
        raise RemoteError("cannot find the GDAL library rasterio uses; files at URLs cannot be read")
    lib = ctypes.CDLL(candidates[0])
    lib.VSIFOpenL.restype = ctypes.c_void_p
    lib.VSIFOpenL.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.VSIFReadL.restype = ctypes.c_size_t
    lib.VSIFReadL.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    lib.VSIFWriteL.restype = ctypes.c_size_t
    lib.VSIFWriteL.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
    lib.VSIFCloseL.restype = ctypes.c_int
    lib.VSIFCloseL.argtypes = [ctypes.c_void_p]
    lib.VSIStatL.restype = ctypes.c_int
    lib.VSIStatL.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.VSIUnlink.restype = ctypes.c_int
    lib.VSIUnlink.argtypes = [ctypes.c_char_p]
    lib.VSIReadDirRecursive.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.VSIReadDirRecursive.argtypes = [ctypes.c_char_p]
    lib.CSLDestroy.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.CPLGetLastErrorMsg.restype = ctypes.c_char_p
    lib.CPLErrorReset.restype = None
    lib.VSICurlClearCache.restype = None
    lib.CPLPushErrorHandler.argtypes = [ctypes.c_void_p]
    lib.CPLPopErrorHandler.restype = None
    return lib


class _Quiet:
    """GDAL's messages kept for :func:`_last_error` instead of printed on stderr."""

    def __enter__(self) -> Any:
        lib = _lib()
        lib.CPLErrorReset()
        lib.CPLPushErrorHandler(ctypes.cast(lib.CPLQuietErrorHandler, ctypes.c_void_p))
        return lib

    def __exit__(self, *exc: object) -> None:
        _lib().CPLPopErrorHandler()


def _vsi(url: str) -> str:
    from s2pipe.remote import gdal_path

    return gdal_path(url)


def _last_error() -> str:
    msg = _lib().CPLGetLastErrorMsg()
    return msg.decode("utf-8", "replace").strip() if msg else ""


def explain(url: str, detail: str, *, writing: bool = False) -> Exception:
    """The one-line error of a failed access to ``url`` (GDAL's message in ``detail``)."""
    d = detail.lower()
    if any(k in d for k in ("403", "accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch",
                            "forbidden", "authorization", "credentials")):
        return RemoteError(f"{url}: access denied ({detail or 'HTTP 403'}); check the credentials "
                           "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, "
                           "AZURE_STORAGE_CONNECTION_STRING) and that they may " + ("write there" if writing
                                                                                   else "read it"))
    if any(k in d for k in ("could not resolve", "couldn't resolve", "connection refused", "failed to connect",
                            "couldn't connect", "timed out", "timeout", "network is unreachable")) \
            or re.search(r"response code\b.*: 0$", d):
        return RemoteError(f"{url}: host unreachable or timed out ({detail}); check the URL, the network and "
                           "for S3-compatible stores AWS_S3_ENDPOINT / AWS_HTTPS / AWS_VIRTUAL_HOSTING")
    if writing:
        return RemoteError(f"{url}: cannot be written ({detail or 'no detail from GDAL'}); check the bucket "
                           "exists and the credentials may write to it")
    return InputNotFoundError(f"{url}: not found ({detail or 'HTTP 404'}); check the URL, and that the "
                              "bucket and key exist")


def exists(url: str) -> bool:
    """Whether ``url`` names an existing file (a failed request counts as absent)."""
    buf = ctypes.create_string_buffer(512)  # >= sizeof(VSIStatBufL) on every platform
    with _Quiet() as lib:
        return bool(lib.VSIStatL(_vsi(url).encode(), buf) == 0)


def read_file(url: str) -> bytes:
    """The whole content of the file at ``url`` (small files: items, metadata)."""
    chunks = []
    buf = ctypes.create_string_buffer(CHUNK)
    with _Quiet() as lib:
        fp = lib.VSIFOpenL(_vsi(url).encode(), b"rb")
        if not fp:
            raise explain(url, _last_error())
        try:
            while True:
                n = lib.VSIFReadL(buf, 1, CHUNK, fp)
                chunks.append(buf.raw[:n])
                if n < CHUNK:
                    break
        finally:
            lib.VSIFCloseL(fp)
        if len(chunks) == 1 and not chunks[0] and _last_error():
            raise explain(url, _last_error())
    return b"".join(chunks)


def list_files(url: str) -> list[str]:
    """Paths of the files under ``url`` (a folder, bucket prefix or ``/vsizip/`` archive)."""
    with _Quiet() as lib:
        entries = lib.VSIReadDirRecursive(_vsi(url).encode())
        if not entries:
            if _last_error():
                raise explain(url, _last_error())
            return []
    out = []
    i = 0
    while entries[i] is not None:
        out.append(entries[i].decode("utf-8", "replace"))
        i += 1
    lib.CSLDestroy(entries)
    return out


def upload(local: str | os.PathLike, url: str) -> None:
    """Copy the local file to ``url``; an object store shows it only once complete."""
    with _Quiet() as lib:
        fp = lib.VSIFOpenL(_vsi(url).encode(), b"wb")
        if not fp:
            raise explain(url, _last_error(), writing=True)
        ok = True
        try:
            with open(local, "rb") as f:
                while True:
                    data = f.read(CHUNK)
                    if not data:
                        break
                    if lib.VSIFWriteL(data, 1, len(data), fp) != len(data):
                        ok = False
                        break
        finally:
            ok = lib.VSIFCloseL(fp) == 0 and ok
        if not ok:
            raise explain(url, _last_error(), writing=True)
        lib.VSICurlClearCache()


def delete(url: str) -> None:
    """Remove the file at ``url`` if it is there (errors ignored)."""
    with _Quiet() as lib:
        lib.VSIUnlink(_vsi(url).encode())
