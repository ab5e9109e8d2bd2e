"""What every reader of a scene offers: the 10 m grid and harmonised 12-band windows.

:class:`Scene` is the one interface ``prepare``, ``predict`` and ``write_stack`` use;
:class:`s2pipe.sentinel2.safe.SafeScene` reads a product's band files,
:class:`s2pipe.sentinel2.stack.StackScene` a stack written by ``prepare --stack``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np
from rasterio.windows import Window

from s2pipe.errors import OptionError
from s2pipe.provenance import Radiometry
from s2pipe.raster.grid import Grid
from s2pipe.sentinel2.facts import BANDS
from s2pipe.sentinel2.metadata import ProductInfo

if TYPE_CHECKING:
    from s2pipe.sentinel2.reader import Product


def check_window(window: Window | None, grid: Grid) -> Window:
    """``window`` as whole pixels inside ``grid`` (default: the whole grid)."""
    if window is None:
        return Window(0, 0, grid.width, grid.height)
    w = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    if (w.col_off < 0 or w.row_off < 0 or w.width <= 0 or w.height <= 0
            or w.col_off + w.width > grid.width or w.row_off + w.height > grid.height):
        raise OptionError(f"window {window} is not inside the {grid.width} x {grid.height} grid")
    return w


class Scene(ABC):
    """An open scene; use as a context manager. Not safe for concurrent ``read`` calls.

    ``read(window)`` returns uint16 ``(12, h, w)`` in :data:`BANDS` order, harmonised to
    DN = 10000 * reflectance, 0 = no data in every band.
    """

    bands: tuple[str, ...] = BANDS

    def __init__(self, info: ProductInfo, grid: Grid, radiometry: Radiometry) -> None:
        self.info = info
        self.name = info.name
        self.grid = grid
        self.radiometry = radiometry
        #: what opening learnt (set by :func:`s2pipe.sentinel2.reader.open_scene`): hand it
        #: on, and reopen with it, instead of opening the path again
        self.product: Product | None = None

    @abstractmethod
    def read(self, window: Window | None = None) -> np.ndarray:
        """Harmonised uint16 ``(12, h, w)`` of ``window`` (default: the whole grid)."""

    def read_scl(self, window: Window | None = None) -> np.ndarray | None:
        """The scene classification (10 m) of ``window``, or None if the scene has none."""
        return None

    @property
    def scl_masked(self) -> tuple[int, ...]:
        """SCL classes whose pixels are no data in what :meth:`read` returns."""
        return tuple(self.radiometry.scl_masked or ())

    @abstractmethod
    def close(self) -> None:
        """Release the files."""

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
