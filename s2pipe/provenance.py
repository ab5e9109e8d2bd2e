"""Typed records that travel with s2pipe's data: the radiometry record (how a raster's DNs
relate to reflectance, and how that was decided) and a map's :class:`Provenance`.

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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2pipe.errors import RasterError
from s2pipe.legend import LandCoverClass, legend_from_list, legend_to_list


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
    unmasked: str | None = None                    # why no pixel was masked by scene class
    coarser_bands: dict[str, int] | None = None    # band -> metres, read coarser than native
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


#: :attr:`Radiometry.unmasked` of a scene that was to be masked but has no SCL.
UNMASKED_NO_SCL = "no scene classification (SCL) in the product: clouds, shadows and no-data not masked"


#: The prefix of s2pipe's dataset tags.
PREFIX = "S2PIPE_"


@dataclass(frozen=True)
class Provenance:
    """Where a map came from, written as ``S2PIPE_<FIELD>`` tags in field order (absent
    fields left out); tags this version does not know are kept in ``extra``."""

    product: str | None = None          # the product's name
    scene: str | None = None            # the path it was read from
    model: str | None = None
    model_version: str | None = None    # the s2pipe version that trained the model
    version: str | None = None          # the s2pipe version that wrote the map
    overlap: int | None = None
    tile_size: int | None = None
    tta: str | None = None
    precision: str | None = None
    runtime: str | None = None
    mask_clouds: bool | None = None
    radiometry: Radiometry | None = None
    legend: tuple[LandCoverClass, ...] | None = None
    rule: str | None = None             # mosaic: how scenes were joined
    feather: int | None = None
    scenes: tuple[dict[str, Any], ...] | None = None
    before: str | None = None           # change: the two maps compared
    after: str | None = None
    min_confidence: float | None = None  # change: both dates at least this sure, else uncertain
    mmu_ha: float | None = None         # change: smaller change patches dropped
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra" or v is None:
                continue
            if isinstance(v, Radiometry):
                text = json.dumps(v.to_dict())
            elif f.name == "legend":
                text = json.dumps(legend_to_list(v))
            elif f.name == "scenes":
                text = json.dumps(list(v))
            else:
                text = str(v)
            out[PREFIX + f.name.upper()] = text
        out.update(self.extra)
        return out

    @classmethod
    def from_tags(cls, tags: dict[str, str], where: Path | str = "") -> Provenance:
        """The record of a raster's dataset tags (:class:`RasterError` on a damaged one)."""
        kw: dict[str, Any] = {}
        extra: dict[str, str] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, text in tags.items():
            name = key[len(PREFIX):].lower() if key.startswith(PREFIX) else ""
            if name not in types or name == "extra":
                if key.startswith(PREFIX):
                    extra[key] = text
                continue
            try:
                if name == "radiometry":
                    kw[name] = Radiometry.from_dict(json.loads(text))
                elif name == "legend":
                    kw[name] = legend_from_list(json.loads(text))
                elif name == "scenes":
                    kw[name] = tuple(json.loads(text))
                elif name in ("overlap", "tile_size", "feather"):
                    kw[name] = int(text)
                elif name in ("min_confidence", "mmu_ha"):
                    kw[name] = float(text)
                elif name == "mask_clouds":
                    kw[name] = text == "True"
                else:
                    kw[name] = text
            except (ValueError, KeyError, TypeError):
                raise RasterError(f"{where}: its {key} tag is damaged; write the map again with "
                                  "s2pipe") from None
        return cls(**kw, extra=extra)
