"""The radiometry record: how a raster's DNs relate to reflectance, and how that was decided.

Every scene s2pipe reads carries one (:attr:`s2pipe.sentinel2.scene.Scene.radiometry`),
and it travels on into everything made from the scene: the stack's and the image tiles'
``S2PIPE_RADIOMETRY`` tag, ``prepare.json``, the checkpoint's contract and each map's
provenance. In memory it is this typed record; on disk it is the JSON object of
:meth:`Radiometry.to_dict`, whose keys keep one order so that the files s2pipe writes do
not change from run to run. Keys this version does not know (a newer s2pipe's, or an
older one's) are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class OffsetCheck:
    """What the pixels said about the stated offset (:mod:`s2pipe.sentinel2.radiometry`)."""

    checked: bool
    stated_offset: dict[str, int]
    dark_dn: dict[str, float] = field(default_factory=dict)  # raw DN at the dark percentile
    limit_dn: float | None = None
    contradicted: bool = False
    decision: str = "metadata"  # or "pixels"
    reason: str = ""


@dataclass(frozen=True)
class Radiometry:
    """The radiometry record of a scene, a tile set or a model (fields absent are None)."""

    convention: str | None = None
    baseline: str | None = None
    offset_applied: dict[str, int] | None = None   # per band, the offset added to the raw DNs
    quantification_value: float | None = None
    clipped_below: int | None = None
    nodata: int | None = None
    resampling: str | None = None
    scl_masked: tuple[int, ...] | None = None      # SCL classes read as no data
    offset_check: OffsetCheck | None = None
    metadata: dict[str, Any] | None = None         # what a catalogue stated (STAC Items)
    assumed: bool | None = None                    # a stack without s2pipe's tag
    tile_folders: tuple[str, ...] | None = None    # a model trained on several tile folders
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in field order, absent fields left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            if isinstance(value, OffsetCheck):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = dict(value)
            out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Radiometry:
        """The record of a JSON object written by any s2pipe version."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw: dict[str, Any] = {k: d.pop(k) for k in list(d) if k in known}
        if isinstance(kw.get("offset_check"), Mapping):
            kw["offset_check"] = OffsetCheck(**kw["offset_check"])
        for name in ("scl_masked", "tile_folders"):
            if kw.get(name) is not None:
                kw[name] = tuple(kw[name])
        return cls(**kw, extra=d)

    def replace(self, **changes: Any) -> Radiometry:
        return dataclasses.replace(self, **changes)
