"""GDAL's, PROJ's and libtiff's messages into Python logging, never straight onto stderr.

Three C libraries talk past rasterio's error handling:

- GDAL prints ``ERROR 1: ...`` on stderr whenever no rasterio environment is active, which
  is where a CRS is parsed (PROJ's ``crs not found`` of ``mosaic --crs EPSG:999999``);
- libtiff reports through a global handler GDAL leaves at libtiff's default, which prints
  ``_tiffWriteProc: No space left on device.`` on stderr and tells GDAL nothing: the write
  that failed looks like a success to rasterio;
- PROJ reports through GDAL (the first case).

:func:`route` (idempotent, called by :func:`s2pipe.raster.profiles.gdal_env` and when
:mod:`s2pipe.raster.profiles` is imported) installs GDAL's default error handler and
libtiff's global handlers, both logging to the ``s2pipe.gdal`` logger (failures at INFO,
which ``-v`` shows; the error of s2pipe's own that they cause says what matters), and
handing write failures to :func:`s2pipe.raster.profiles.note_gdal_failure`, so that
:func:`~s2pipe.raster.profiles.gdal_write_errors` raises them. A library that cannot be
found is left as it was.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import glob
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("s2pipe.gdal")

#: GDAL's error classes (CPLErr) -> the level their messages are logged at.
CPL_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.WARNING, 3: logging.INFO, 4: logging.INFO}
_CPL_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)
#: libtiff's "Ext" handlers: (client data, module, printf format, va_list).
_TIFF_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_lock = threading.Lock()
_installed: list[Any] = []  # the callbacks, kept alive for as long as the libraries hold them


def _loaded(name: str) -> list[str]:
    """Paths of the shared libraries called ``name`` this process mapped for rasterio
    (pyogrio and others bring their own copies, which keep their own handlers)."""
    import rasterio

    here = Path(rasterio.__file__).parent
    found = sorted(glob.glob(str(here.parent / "rasterio.libs" / f"{name}*")))
    found += sorted(glob.glob(str(here / ".dylibs" / f"{name}*")))
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            found += sorted({line.split()[-1] for line in f if f"/{name}" in line and "pyogrio" not in line
                             and "fiona" not in line})
    except OSError:
        pass
    system = ctypes.util.find_library(name.removeprefix("lib"))
    return found + ([system] if system else [])


def _text(raw: bytes | None) -> str:
    return " ".join((raw or b"").decode("utf-8", "replace").split())


def _on_cpl(err_class: int, err_no: int, msg: bytes | None) -> None:
    text = _text(msg)
    log.log(CPL_LEVELS.get(err_class, logging.INFO), "GDAL: %s", text)
    if err_class >= 3:
        from s2pipe.raster.profiles import note_gdal_failure

        note_gdal_failure(text)


def _tiff_handler(error: bool, vsnprintf: Any) -> Any:
    def handler(_client: Any, module: bytes | None, fmt: bytes | None, args: Any) -> None:
        buf = ctypes.create_string_buffer(2048)
        if fmt:
            vsnprintf(buf, len(buf), fmt, args)
        text = f"{_text(module)}: {_text(buf.value)}" if module else _text(buf.value)
        if not error:
            log.debug("libtiff: %s", text)
            return
        log.info("libtiff: %s", text)
        from s2pipe.raster.profiles import note_gdal_failure

        note_gdal_failure(text)
    return _TIFF_HANDLER(handler)


def _route_gdal() -> None:
    import rasterio._base  # noqa: F401  (loads libgdal)

    for path in _loaded("libgdal"):
        try:
            lib = ctypes.CDLL(path)
            lib.CPLSetErrorHandler.restype = ctypes.c_void_p
            lib.CPLSetErrorHandler.argtypes = [_CPL_HANDLER]
        except (OSError, AttributeError):
            continue
        handler = _CPL_HANDLER(_on_cpl)
        lib.CPLSetErrorHandler(handler)  # the default one; rasterio's environments push theirs
        _installed.append(handler)
        # no calls into Python once it shuts down: GDAL's quiet handler from then on
        quiet = ctypes.cast(lib.CPLQuietErrorHandler, _CPL_HANDLER)
        atexit.register(lib.CPLSetErrorHandler, quiet)
        return


def _route_tiff() -> None:
    try:
        libc = ctypes.CDLL(None)
        vsnprintf = libc.vsnprintf
    except (OSError, AttributeError):
        return
    vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    for path in _loaded("libtiff"):
        try:
            lib = ctypes.CDLL(path)
            for fn in (lib.TIFFSetErrorHandler, lib.TIFFSetWarningHandler):
                fn.argtypes, fn.restype = [ctypes.c_void_p], ctypes.c_void_p
            for fn in (lib.TIFFSetErrorHandlerExt, lib.TIFFSetWarningHandlerExt):
                fn.argtypes, fn.restype = [_TIFF_HANDLER], ctypes.c_void_p
        except (OSError, AttributeError):
            continue
        errors, warnings = _tiff_handler(True, vsnprintf), _tiff_handler(False, vsnprintf)
        lib.TIFFSetErrorHandler(None)  # the default printer to stderr
        lib.TIFFSetWarningHandler(None)
        lib.TIFFSetErrorHandlerExt(errors)
        lib.TIFFSetWarningHandlerExt(warnings)
        _installed.extend([errors, warnings])
        none = _TIFF_HANDLER()  # a NULL function pointer: libtiff's handlers off
        atexit.register(lib.TIFFSetErrorHandlerExt, none)
        atexit.register(lib.TIFFSetWarningHandlerExt, none)
        return


def route() -> None:
    """Send GDAL's and libtiff's messages to the ``s2pipe.gdal`` logger (once per process)."""
    with _lock:
        if _installed:
            return
        _route_gdal()
        _route_tiff()
        if not _installed:
            _installed.append(None)  # nothing found: do not look again
