"""The land-cover legend: class values, names and display colours.

Label value 0 means "no data / unlabelled" everywhere in s2pipe: it is never a class,
is ignored by the loss and the metrics, and is the nodata value of every label and
map raster. The legend travels with the data: ``prepare.json`` and the model
checkpoint carry it, so a map is always drawn with the legend it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

NODATA_LABEL = 0


@dataclass(frozen=True)
class LandCoverClass:
    value: int
    name: str
    color: str  # "#rrggbb"

    @property
    def rgb(self) -> tuple[int, int, int]:
        h = self.color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


# Colours follow the CORINE Land Cover conventions for the nearest CLC class.
DEFAULT_LEGEND: tuple[LandCoverClass, ...] = (
    LandCoverClass(1, "Agricultural areas", "#e6cc4d"),
    LandCoverClass(2, "Forest and semi naturals", "#267300"),
    LandCoverClass(3, "Wetlands", "#a6a6ff"),
    LandCoverClass(4, "Water bodies", "#0070ff"),
    LandCoverClass(5, "Urban fabric", "#e6004d"),
    LandCoverClass(6, "Industrial, commercial and transport units", "#cc4df2"),
    LandCoverClass(7, "Mine, dump and construction sites", "#a600cc"),
    LandCoverClass(8, "Artificial, non-agricultural vegetated areas", "#ffa6ff"),
)


def legend_to_list(legend: Sequence[LandCoverClass] = DEFAULT_LEGEND) -> list[dict]:
    """The legend as plain JSON-able dicts (for prepare.json and checkpoints)."""
    return [asdict(c) for c in legend]


def legend_from_list(items: Iterable[dict]) -> tuple[LandCoverClass, ...]:
    """Inverse of :func:`legend_to_list`."""
    return tuple(LandCoverClass(int(d["value"]), str(d["name"]), str(d["color"])) for d in items)


def colormap(legend: Sequence[LandCoverClass] = DEFAULT_LEGEND) -> dict[int, tuple[int, int, int, int]]:
    """A GDAL colour table: 0 transparent black, each class its colour."""
    cmap = {i: (0, 0, 0, 0) for i in range(256)}
    for c in legend:
        cmap[c.value] = (*c.rgb, 255)
    return cmap
