"""Sentinel-2 L2A product metadata: MTD_MSIL2A.xml and the granule's MTD_TL.xml.

Accepts a ``.SAFE`` folder, a zipped SAFE (read in place; GDAL paths use /vsizip/; also
at a URL) or the path of ``MTD_MSIL2A.xml``. Flat or re-packed layouts (no GRANULE folder,
files elsewhere) are read by finding the granule metadata and band files by name where
the standard place is empty. Both files are parsed with a real XML parser by element
local name, so namespaces and the small tag differences between processing baselines
(02.0x ... 05.xx) do not matter. Nothing here reads pixels.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from s2pipe.errors import InputNotFoundError, SafeFormatError
from s2pipe.sentinel2.facts import BAND_IDS, BAND_RESOLUTION, BANDS, DEFAULT_OFFSET_N0400, QUANTIFICATION, has_offset

log = logging.getLogger(__name__)

SUPPORTED = ("supported: a Sentinel-2 L2A .SAFE folder, a zipped .SAFE, its MTD_MSIL2A.xml, "
             "or a 12-band stack written by 's2pipe prepare --stack'")
_EXT = {"JPEG2000": (".jp2", ".tif"), "GeoTIFF": (".tif", ".jp2")}


@dataclass
class ProductInfo:
    """What s2pipe reads from a product's metadata (all plain JSON-able values)."""

    path: str
    name: str
    level: str
    product_type: str
    baseline: str
    tile: str
    sensing_time: str
    spacecraft: str
    epsg: int
    transform: list[float]  # 10 m grid: a, b, c, d, e, f of the affine transform
    width: int
    height: int
    quantification: float
    offsets: dict[str, int]  # per band of BANDS: the offset s2pipe adds to the DNs
    special_values: dict[str, int]
    band_files: dict[str, str]  # band -> GDAL path of its file (native resolution where offered)
    missing_bands: list[str]
    scl_file: str | None
    geopositions: dict[str, dict[str, float]] = field(default_factory=dict)
    # what the metadata says about the offset and where the offsets above come from
    radiometry_metadata: dict[str, Any] = field(default_factory=dict)
    # bands whose file is coarser than the band's native resolution (a catalogue that offers
    # them only so): band -> metres; read so and resampled to 10 m like any coarser band
    coarser_bands: dict[str, int] = field(default_factory=dict)
    # STAC Items: band (and SCL) -> the key of the asset read, with its resolution (``B02_60m (60 m)``)
    assets: dict[str, str] = field(default_factory=dict)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_all(root: ET.Element, *names: str) -> list[ET.Element]:
    return [e for e in root.iter() if _local(e.tag) in names]


def _text(root: ET.Element, *names: str, default: str | None = None, where: str = "") -> str:
    for e in _find_all(root, *names):
        if e.text and e.text.strip():
            return e.text.strip()
    if default is None:
        raise SafeFormatError(f"{where}: element {names[0]} not found; is this an unmodified "
                              "Sentinel-2 L2A product?")
    return default


class _Container:
    """A SAFE folder or zip: lists members, reads small files, gives GDAL paths."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.suffix.lower() == ".zip":
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise SafeFormatError(f"{path}: not a readable zip file ({exc}); {SUPPORTED}") from None
            self.names = set(self.zip.namelist())
            mtds = [n for n in self.names if PurePosixPath(n).name.startswith("MTD_MSIL")
                    and len(PurePosixPath(n).parts) <= 2]
            if not mtds:
                raise SafeFormatError(f"{path}: no MTD_MSIL2A.xml in the zip; {SUPPORTED}")
            self.root = str(PurePosixPath(sorted(mtds)[0]).parent)
            self.mtd_name = PurePosixPath(sorted(mtds)[0]).name
        else:
            self.root = ""
            self.names = set()
            self.mtd_name = next((n for n in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
                                  if (path / n).is_file()), "MTD_MSIL2A.xml")

    def member(self, rel: str) -> str:
        return str(PurePosixPath(self.root, rel)) if self.root not in ("", ".") else rel

    def exists(self, rel: str) -> bool:
        if self.zip is not None:
            return self.member(rel) in self.names
        return (self.path / rel).is_file()

    def read(self, rel: str) -> bytes:
        if self.zip is not None:
            return self.zip.read(self.member(rel))
        return (self.path / rel).read_bytes()

    def gdal_path(self, rel: str) -> str:
        if self.zip is not None:
            return f"/vsizip/{self.path.resolve()}/{self.member(rel)}"
        return str(self.path / rel)

    def display(self, rel: str) -> str:
        return f"{self.path}/{self.member(rel)}" if self.zip is not None else str(self.path / rel)

    def all_files(self) -> list[str]:
        """Every file of the product, relative to its root (to find files by name)."""
        if self.zip is not None or not self.path.is_dir():
            prefix = "" if self.root in ("", ".") else self.root.rstrip("/") + "/"
            return sorted(n[len(prefix):] for n in self.names if n.startswith(prefix) and not n.endswith("/"))
        return sorted(str(PurePosixPath(Path(d).relative_to(self.path), f)) for d, _, fs in os.walk(self.path)
                      for f in fs)

    def listdir(self, rel: str) -> list[str]:
        if self.zip is not None:
            prefix = self.member(rel).rstrip("/") + "/"
            return sorted({n[len(prefix):].split("/")[0] for n in self.names if n.startswith(prefix)})
        p = self.path / rel
        return sorted(os.listdir(p)) if p.is_dir() else []


class _RemoteZip(_Container):
    """A zipped SAFE at a URL, read in place through ``/vsizip/`` over GDAL's network file
    systems (only the members asked for are fetched)."""

    def __init__(self, url: str) -> None:
        from s2pipe.remote import gdal_path
        from s2pipe.vsi import list_files

        self.path = Path(url.rsplit("/", 1)[-1])
        self.url = url
        self.vsi = f"/vsizip/{gdal_path(url)}"
        self.zip = None
        self.names = {n.rstrip("/") for n in list_files(self.vsi)}
        mtds = sorted(n for n in self.names if PurePosixPath(n).name.startswith("MTD_MSIL")
                      and len(PurePosixPath(n).parts) <= 2)
        if not mtds:
            raise SafeFormatError(f"{url}: no MTD_MSIL2A.xml in the zip; {SUPPORTED}")
        self.root = str(PurePosixPath(mtds[0]).parent)
        self.mtd_name = PurePosixPath(mtds[0]).name

    def exists(self, rel: str) -> bool:
        return self.member(rel) in self.names

    def read(self, rel: str) -> bytes:
        from s2pipe.vsi import read_file

        return read_file(f"{self.vsi}/{self.member(rel)}")

    def gdal_path(self, rel: str) -> str:
        return f"{self.vsi}/{self.member(rel)}"

    def display(self, rel: str) -> str:
        return f"{self.url}/{self.member(rel)}"

    def listdir(self, rel: str) -> list[str]:
        prefix = self.member(rel).rstrip("/") + "/"
        return sorted({n[len(prefix):].split("/")[0] for n in self.names if n.startswith(prefix)})


def _container(path: str | os.PathLike) -> _Container:
    from s2pipe.remote import is_url

    if is_url(path):
        if not str(path).lower().endswith(".zip"):
            raise SafeFormatError(f"{path}: a product at a URL must be a zipped SAFE (.zip), a STAC Item "
                                  "(.json) or a stack (.tif)")
        return _RemoteZip(str(path))
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist; give a Sentinel-2 L2A .SAFE folder, .zip "
                                 "or MTD_MSIL2A.xml")
    if p.is_file() and p.suffix.lower() == ".xml":
        if p.name.startswith("MTD_MSIL1C"):
            raise SafeFormatError(f"{p}: a Level-1C product; s2pipe needs Level-2A (run Sen2Cor "
                                  "or download the L2A product)")
        c = _Container(p.parent)
        c.mtd_name = p.name
        return c
    if p.is_dir() or p.suffix.lower() == ".zip":
        return _Container(p)
    raise SafeFormatError(f"{p}: not a Sentinel-2 product; {SUPPORTED}")


def _parse(c: _Container, rel: str) -> ET.Element:
    if not c.exists(rel):
        raise SafeFormatError(f"{c.display(rel)} not found; {SUPPORTED}")
    try:
        return ET.fromstring(c.read(rel))
    except ET.ParseError as exc:
        raise SafeFormatError(f"{c.display(rel)}: unreadable XML ({exc}); the product is "
                              "damaged, download it again") from None


def _check_level(root: ET.Element, where: str) -> str:
    kind = _local(root.tag)
    level = _text(root, "PROCESSING_LEVEL", default="", where=where)
    ptype = _text(root, "PRODUCT_TYPE", default="", where=where)
    if "1C" in kind or "1C" in level or ptype.startswith("S2MSI1C"):
        raise SafeFormatError(f"{where}: a Level-1C product; s2pipe needs Level-2A (surface "
                              "reflectance): run Sen2Cor or download the L2A product")
    if "Level-2A" not in kind and "2A" not in level:
        raise SafeFormatError(f"{where}: not Sentinel-2 L2A metadata (root <{kind}>); {SUPPORTED}")
    return level or "Level-2A"


def _band_files(c: _Container, mtd: ET.Element) -> tuple[dict[str, str], list[str], str | None]:
    granule = next(iter(_find_all(mtd, "Granule", "Granules")), None)
    fmt = granule.get("imageFormat", "JPEG2000") if granule is not None else "JPEG2000"
    exts = _EXT.get(fmt, (".jp2", ".tif"))
    images = [e.text.strip() for e in _find_all(mtd, "IMAGE_FILE", "IMAGE_FILE_2A") if e.text]

    def locate(token: str) -> tuple[str | None, str | None]:
        """(found file, expected file) for a token like 'B05_20m': where the metadata
        lists it, else (a flat or re-packed product) a file of that name anywhere in the
        product, else any ``*_B05_20m.jp2|tif``."""
        hits = [i for i in images if re.search(rf"_{token}$", i)]
        for ext in exts:
            if hits and c.exists(hits[0] + ext):
                return hits[0] + ext, hits[0] + ext
        wanted = {PurePosixPath(hits[0]).name + ext for ext in exts} if hits else set()
        for rel in c.all_files():
            name = PurePosixPath(rel).name
            if name in wanted or (not wanted and re.search(rf"_{token}\.(jp2|tif)$", name)):
                log.info("%s: %s found at %s, not where the metadata lists it", c.path, token, rel)
                return rel, rel
        return None, (hits[0] + exts[0]) if hits else None

    files: dict[str, str] = {}
    missing: list[str] = []
    for band in BANDS:
        token = f"{band}_{BAND_RESOLUTION[band]}m"
        found, expected = locate(token)
        if found is None:
            missing.append(band)
            files[band] = c.display(expected) if expected else ""
        else:
            files[band] = c.gdal_path(found)
    scl, _ = locate("SCL_20m")
    return files, missing, (c.gdal_path(scl) if scl else None)


def _tile_metadata(c: _Container, mtd: ET.Element, where: str) -> ET.Element:
    images = [e.text.strip() for e in _find_all(mtd, "IMAGE_FILE", "IMAGE_FILE_2A") if e.text]
    granules = sorted({"/".join(i.split("/")[:2]) for i in images if i.startswith("GRANULE/")})
    if not granules:
        granules = [f"GRANULE/{g}" for g in c.listdir("GRANULE")]
    if granules:
        for name in ["MTD_TL.xml", *[n for n in c.listdir(granules[0]) if n.endswith(".xml")]]:
            if c.exists(f"{granules[0]}/{name}"):
                return _parse(c, f"{granules[0]}/{name}")
    # a flat or re-packed product: the granule metadata by name, wherever it is
    found = [rel for rel in c.all_files() if re.fullmatch(r"(MTD_TL|S2._OPER_MTD_L2A_TL_.*)\.xml",
                                                           PurePosixPath(rel).name)]
    if found:
        log.info("%s: granule metadata found at %s (not a standard SAFE layout)", where, found[0])
        return _parse(c, sorted(found, key=len)[0])
    standard = c.display(f"{granules[0]}/MTD_TL.xml") if granules else c.display("GRANULE/<granule>/MTD_TL.xml")
    raise SafeFormatError(f"{where}: no granule metadata: not at {standard} nor any MTD_TL.xml elsewhere in the "
                          "product; the product is incomplete, download it again")


def read_product_metadata(path: str | os.PathLike) -> ProductInfo:
    """Parse a product's metadata and check which of the 12 band files exist.

    Raises :class:`InputNotFoundError` for a missing path and :class:`SafeFormatError`
    for unreadable metadata, L1C or non-Sentinel-2 input. Missing band files are listed
    in ``missing_bands``, not raised: readers decide.
    """
    c = _container(path)
    where = c.display(c.mtd_name)
    mtd = _parse(c, c.mtd_name)
    level = _check_level(mtd, where)
    tl = _tile_metadata(c, mtd, where)
    tl_where = f"{where} (MTD_TL)"

    code = _text(tl, "HORIZONTAL_CS_CODE", where=tl_where)
    m = re.search(r"(\d+)$", code)
    if not m:
        raise SafeFormatError(f"{tl_where}: unreadable CRS code {code!r}")
    geo: dict[str, dict[str, float]] = {}
    for gp in _find_all(tl, "Geoposition"):
        geo[str(gp.get("resolution", "?"))] = {k.lower(): float(_text(gp, k, where=tl_where))
                                          for k in ("ULX", "ULY", "XDIM", "YDIM")}
    for sz in _find_all(tl, "Size"):
        res = str(sz.get("resolution"))
        if res in geo:
            geo[res].update(nrows=float(_text(sz, "NROWS", where=tl_where)),
                                             ncols=float(_text(sz, "NCOLS", where=tl_where)))
    g10 = geo.get("10")
    if not g10 or "nrows" not in g10:
        raise SafeFormatError(f"{tl_where}: no 10 m Geoposition/Size; the product is damaged")

    baseline = _text(mtd, "PROCESSING_BASELINE", default="", where=where)
    raw = {e.get("band_id"): int(float(e.text)) for e in _find_all(mtd, "BOA_ADD_OFFSET")
           if e.text and e.get("band_id") is not None}
    if not raw and has_offset(baseline):
        log.warning("%s: baseline %s but no BOA_ADD_OFFSET list; assuming ESA's %d",
                    where, baseline, DEFAULT_OFFSET_N0400)
        raw = {str(i): DEFAULT_OFFSET_N0400 for i in range(len(BAND_IDS))}
    offsets = {b: raw.get(str(BAND_IDS.index(b)), 0) for b in BANDS}
    special = {}
    for sv in _find_all(mtd, "Special_Values"):
        special[_text(sv, "SPECIAL_VALUE_TEXT", where=where)] = int(_text(sv, "SPECIAL_VALUE_INDEX", where=where))
    files, missing, scl = _band_files(c, mtd)
    uri = _text(mtd, "PRODUCT_URI", "PRODUCT_URI_2A", default=Path(str(c.path)).name, where=where)
    name = re.sub(r"\.(SAFE|zip)$", "", uri)
    tile = _text(tl, "TILE_ID", default="", where=tl_where)
    mt = re.search(r"_T(\d{2}[A-Z]{3})_", tile) or re.search(r"_T(\d{2}[A-Z]{3})_", name)
    return ProductInfo(
        path=str(path), name=name, level=level,
        product_type=_text(mtd, "PRODUCT_TYPE", default="", where=where),
        baseline=baseline, tile=mt.group(1) if mt else "",
        sensing_time=_text(tl, "SENSING_TIME", default=_text(mtd, "PRODUCT_START_TIME", default="", where=where),
                           where=tl_where),
        spacecraft=_text(mtd, "SPACECRAFT_NAME", default="", where=where),
        epsg=int(m.group(1)),
        transform=[g10["xdim"], 0.0, g10["ulx"], 0.0, g10["ydim"], g10["uly"]],
        width=int(g10["ncols"]), height=int(g10["nrows"]),
        quantification=float(_text(mtd, "BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE",
                                   default=str(QUANTIFICATION), where=where)),
        offsets=offsets, special_values=special, band_files=files, missing_bands=missing,
        scl_file=scl, geopositions=geo,
    )
