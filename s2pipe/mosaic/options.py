"""How a mosaic is made, as plain data: the CLI builds it, the engine takes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s2pipe.errors import OptionError

DEFAULT_FEATHER = 100  # px: width of the ramp from a scene's edge and no data


@dataclass(frozen=True)
class MosaicOptions:
    """The output grid (``crs``, default the first map's; ``resolution`` m; ``bounds`` W S E N
    in that CRS, or ``clip``'s polygons, or the union of the maps), the feathering, the
    optional sources raster, the optional blended probabilities (of probability inputs:
    what ``change`` needs for its confidence rule) and whether outputs may be replaced. The options that exclude
    each other are checked here, the one place."""

    crs: str | None = None
    resolution: float = 10.0
    bounds: tuple[float, float, float, float] | None = None
    clip: Path | None = None
    feather: int = DEFAULT_FEATHER
    sources: Path | None = None
    probabilities: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.bounds is not None and self.clip is not None:
            raise OptionError("give --bounds or --clip, not both")
        if self.feather < 0:
            raise OptionError(f"--feather {self.feather}: give 0 or more pixels")
        if self.resolution <= 0:
            raise OptionError(f"--resolution {self.resolution}: give a positive size in the CRS's units")
