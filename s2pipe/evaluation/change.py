"""Accuracy and area-adjusted areas of a change map against reference labels of both dates.

The reference is points or polygons whose fields name the class before and after
(``ref_before`` / ``ref_after`` by default, as ``s2pipe sample`` writes them; class
values or legend names). Each labelled point (or pixel of a polygon) is a sample unit
whose reference transition is compared with the map's code there.

Strata: points drawn by ``s2pipe sample`` from this map carry their stratum (a code of
the map, or a buffer stratum of stable pixels near change) and its size, and the
estimates are those of that stratified random sample (with the finite-population
correction; strata that are not the map's codes are handled as Stehman 2014 shows).
Other references (polygons, hand-placed points) are taken as if they were a random
sample within each of the map's codes, weighted by the codes' mapped areas, as
``evaluate --area-adjusted`` does for class maps: a reasonable summary, but without a
probability sample the intervals are not a guarantee, and the report says so.

Reported (:mod:`s2pipe.evaluation.stratified`): overall accuracy, change/no-change
accuracy (uncertain pixels count as "no change claimed"), user's and producer's
accuracy of every transition and stable class, and each one's area-adjusted hectares
with its 95% confidence interval, beside the mapped hectares.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.errors import InputNotFoundError, LabelError
from s2pipe.evaluation.metrics import nan_none
from s2pipe.evaluation.sample import POOLED, map_code, value_counts
from s2pipe.evaluation.stratified import Design, Estimate
from s2pipe.labels import class_key, default_class_map
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.grid import pixel_area_ha
from s2pipe.raster.maps import MapRaster, open_map, read_band
from s2pipe.raster.profiles import with_gdal_env
from s2pipe.raster.transitions import Transitions

log = logging.getLogger(__name__)

BEFORE_FIELDS, AFTER_FIELDS = ("ref_before", "before"), ("ref_after", "after")
#: A code found at fewer reference units than this has an interval that rests on too few
#: points for the normal approximation (the rule of thumb n p >= 5): the report flags it.
#: (In the benchmark, bench/RESULTS.md issue 19, the two transitions the model mapped worst
#: had intervals that covered the truth in only 30-55% of repeated samples of 400 points,
#: 90% of samples of 2000.)
FEW_UNITS = 5


@dataclass
class ChangeAccuracy:
    """What :func:`evaluate_change` measured and wrote (areas in hectares, ± 95% CI)."""

    report_dir: Path
    files: dict[str, Path]
    change_map: Path
    reference: Path
    design: str                     # "sample" (s2pipe sample of this map) or "map strata"
    units: int                      # labelled points or pixels compared
    unlabelled: int                 # features without both reference classes
    overall_accuracy: dict[str, float | None]
    change: dict[str, Any]          # change/no-change accuracy and the area of change
    per_code: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(report_dir=str(self.report_dir), change_map=str(self.change_map), reference=str(self.reference),
                 files={k: str(v) for k, v in self.files.items()})
        return d


def _est(e: Estimate, scale: float = 1.0) -> dict[str, float | None]:
    return {"value": nan_none(e.value * scale), "ci95": nan_none(e.ci95 * scale)}


def _field(gdf: Any, given: str | None, defaults: tuple[str, ...], what: str, path: Path) -> str:
    if given is not None:
        if given not in gdf.columns:
            raise LabelError(f"{path} has no field {given!r}; its fields: {', '.join(map(str, gdf.columns[:-1]))}")
        return given
    lower = {str(c).lower(): str(c) for c in gdf.columns}
    found = next((lower[f] for f in defaults if f in lower), None)
    if found is None:
        raise LabelError(f"{path} has no reference class of the {what} date: give --before-field and "
                         f"--after-field (its fields: {', '.join(map(str, gdf.columns[:-1]))})")
    return found


def _positions(values: Any, t: Transitions, path: Path, name: str) -> np.ndarray:
    """Legend positions (1..n, 0 = unlabelled) of class values or names."""
    value_of = default_class_map(t.classes)
    position = {c.value: k for k, c in enumerate(t.classes, start=1)}
    keys = [None if v is None or v != v else class_key(v) for v in values]
    bad = sorted({k for k in keys if k is not None and k not in value_of})
    if bad:
        raise LabelError(f"{path}: field {name!r} holds values that are no class of the map's legend "
                         f"({', '.join(bad[:8])}); use values 1..{t.n} or class names")
    return np.array([0 if k is None else position[value_of[k]] for k in keys], dtype=np.uint8)


def _units(gdf: Any, m: MapRaster, rb: np.ndarray, ra: np.ndarray) -> tuple[np.ndarray, ...]:
    """(map code, before, after, feature index) of every sample unit inside the map."""
    import rasterio
    from rasterio import features

    g = m.grid
    if (gdf.geom_type == "Point").all():
        rows, cols = rasterio.transform.rowcol(g.transform, gdf.geometry.x.values, gdf.geometry.y.values)
        rows, cols = np.asarray(rows), np.asarray(cols)
        inside = (rows >= 0) & (rows < g.height) & (cols >= 0) & (cols < g.width)
        codes = np.zeros(len(gdf), dtype=np.int64)
        with rasterio.open(m.path) as ds:
            for i in np.flatnonzero(inside):
                codes[i] = int(ds.read(1, window=rasterio.windows.Window(int(cols[i]), int(rows[i]), 1, 1))[0, 0])
        return codes, rb, ra, np.arange(len(gdf))
    if not gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise LabelError("reference features must be all points or all polygons")
    shape = (g.height, g.width)
    index = features.rasterize(((geom, i + 1) for i, geom in enumerate(gdf.geometry)), out_shape=shape,
                               transform=g.transform, fill=0, dtype="int32")
    labelled = np.flatnonzero(index.ravel())
    feature = index.ravel()[labelled] - 1
    codes = read_band(m).ravel()[labelled].astype(np.int64)
    return codes, rb[feature], ra[feature], feature


@with_gdal_env
def evaluate_change(change_map: str | os.PathLike, reference: str | os.PathLike, report_dir: str | os.PathLike, *,
                    layer: str | None = None, before_field: str | None = None, after_field: str | None = None,
                    overwrite: bool = False) -> ChangeAccuracy:
    """Compare a change map with reference labels of both dates; write the report folder
    (metrics.json, metrics.md, transitions.csv). See the module docstring."""
    import geopandas as gpd

    change_map, reference, report_dir = Path(change_map), Path(reference), Path(report_dir)
    check_writable(report_dir, overwrite=overwrite)
    m = open_map(change_map, ("change",))
    t = m.transitions
    if not reference.exists():
        raise InputNotFoundError(f"{reference} does not exist; give the reference points or polygons")
    try:
        gdf = gpd.read_file(reference, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio's own errors
        raise LabelError(f"{reference}: not a readable vector file ({exc})") from None
    if gdf.crs is None:
        raise LabelError(f"{reference} has no CRS; assign one (ogr2ogr -a_srs) and retry")
    bf = _field(gdf, before_field, BEFORE_FIELDS, "earlier", reference)
    af = _field(gdf, after_field, AFTER_FIELDS, "later", reference)
    gdf = gdf.to_crs(m.grid.crs)
    rb, ra = _positions(gdf[bf], t, reference, bf), _positions(gdf[af], t, reference, af)
    labelled = (rb > 0) & (ra > 0) & gdf.geometry.notna().values
    unlabelled = int((~labelled).sum())
    gdf, rb, ra = gdf[labelled], rb[labelled], ra[labelled]
    if len(gdf) == 0:
        raise LabelError(f"{reference}: no feature has both reference classes ({bf!r}, {af!r}); "
                         "label the points first")
    codes, ub, ua, feature = _units(gdf, m, rb, ra)
    keep = (codes > 0) & (codes <= t.uncertain)
    counts = value_counts(m)
    mapped = {int(c): int(counts[c]) for c in np.flatnonzero(counts) if c > 0}  # pixels of each map code
    sampled = {"stratum", "stratum_pixels"} <= set(gdf.columns) and (gdf.geom_type == "Point").all()
    if sampled:
        strata = gdf["stratum"].to_numpy()[feature].astype(np.int64)
        pooled = (strata == POOLED) & t.changed(codes)
        differ = keep & (map_code(strata) != codes) & ~pooled
        if differ.any():
            raise LabelError(f"{reference}: {int(differ.sum())} of {int(keep.sum())} points lie on another code "
                             f"than their stratum: they were drawn from another map; evaluate the map they were "
                             "drawn from (or drop the stratum fields to evaluate without the sample design)")
        sizes = {int(s): int(n) for s, n in zip(gdf["stratum"], gdf["stratum_pixels"])}
        design = Design(strata[keep], sizes, fpc=True)
        kind = "sample"
    else:
        design = Design(codes[keep], mapped, fpc=False)
        kind = "map strata"
        log.warning("%s carries no sample design (s2pipe sample): its units are taken as a random sample "
                    "within each of the map's codes; the intervals are indicative", reference)
    codes, ub, ua = codes[keep], ub[keep], ua[keep]
    if len(codes) == 0:
        raise LabelError(f"no labelled feature of {reference} lies on data of {change_map}; check that they overlap")
    ref = t.encode(ub, ua).astype(np.int64)
    px_ha = pixel_area_ha(m.grid) or 0.0
    area_ha = design.total * px_ha
    map_changed, ref_changed = t.changed(codes), ub != ua
    both = map_changed & ref_changed
    change = {"accuracy": _est(design.proportion(map_changed == ref_changed)),
              "user_accuracy": _est(design.ratio(both, map_changed)),
              "producer_accuracy": _est(design.ratio(both, ref_changed)),
              "mapped_ha": nan_none(sum(v for k, v in mapped.items() if t.is_change(k)) * px_ha),
              "area_ha": _est(design.proportion(ref_changed), area_ha)}
    per_code = []
    for code in sorted(set(mapped) | set(ref.tolist())):
        hit = (codes == code) & (ref == code)
        per_code.append({"code": int(code), "name": t.name(int(code)), "change": t.is_change(int(code)),
                         "map_units": int((codes == code).sum()), "reference_units": int((ref == code).sum()),
                         "few_units": bool((ref == code).sum() < FEW_UNITS),
                         "user_accuracy": _est(design.ratio(hit, codes == code)),
                         "producer_accuracy": _est(design.ratio(hit, ref == code)),
                         "mapped_ha": nan_none(mapped.get(code, 0) * px_ha),
                         "area_ha": _est(design.proportion(ref == code), area_ha)})
    result = ChangeAccuracy(report_dir=report_dir, files={}, change_map=change_map, reference=reference,
                            design=kind, units=int(len(codes)), unlabelled=unlabelled,
                            overall_accuracy=_est(design.proportion(codes == ref)), change=change,
                            per_code=per_code)
    names = {"metrics_json": "metrics.json", "metrics_md": "metrics.md", "transitions_csv": "transitions.csv"}
    with atomic_output(report_dir, overwrite=overwrite, directory=True) as tmp:
        result.files = {k: report_dir / v for k, v in names.items()}
        (tmp / names["metrics_json"]).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        (tmp / names["metrics_md"]).write_text(markdown(result))
        _csv(tmp / names["transitions_csv"], result)
    return result


def _f(e: dict[str, float | None], digits: int = 3) -> str:
    v, c = e["value"], e["ci95"]
    return "n/a" if v is None else f"{v:.{digits}f} ± {c:.{digits}f}" if c is not None else f"{v:.{digits}f}"


def markdown(r: ChangeAccuracy) -> str:
    lines = [f"# Change accuracy of {r.change_map.name}", "", f"Reference: `{r.reference}` ({r.units} units; "
             + ("stratified random sample of this map" if r.design == "sample" else
                "no sample design: taken as a random sample within each code, intervals indicative") + ")", "",
             f"Overall accuracy: {_f(r.overall_accuracy)}  ",
             f"Change/no-change accuracy: {_f(r.change['accuracy'])}  ",
             f"Change: user's {_f(r.change['user_accuracy'])}, producer's {_f(r.change['producer_accuracy'])}  ",
             f"Area of change: mapped {r.change['mapped_ha']:.1f} ha, estimated {_f(r.change['area_ha'], 1)} ha "
             "(95% CI)", "",
             "| code | transition | user's | producer's | mapped (ha) | estimated (ha) |",
             "|---:|---|---:|---:|---:|---:|"]
    for c in r.per_code:
        flag = f" (†{c['reference_units']})" if c["few_units"] else ""
        lines.append(f"| {c['code']} | {c['name']} | {_f(c['user_accuracy'])} | {_f(c['producer_accuracy'])} | "
                     f"{c['mapped_ha']:.1f} | {_f(c['area_ha'], 1)}{flag} |")
    if any(c["few_units"] for c in r.per_code):
        lines += ["", f"† (k): found at only k < {FEW_UNITS} reference points; its interval rests on too few "
                  "points and is likely too short. Extend the labelled sample (s2pipe sample --extend) and label "
                  "the new points: more points in the strata where it hides give a trustworthy one."]
    return "\n".join(lines) + "\n"


def _csv(path: Path, r: ChangeAccuracy) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "change", "user_accuracy", "user_ci95", "producer_accuracy", "producer_ci95",
                    "mapped_ha", "area_ha", "area_ha_ci95", "reference_units", "few_units"])
        for c in r.per_code:
            w.writerow([c["code"], c["name"], c["change"], c["user_accuracy"]["value"], c["user_accuracy"]["ci95"],
                        c["producer_accuracy"]["value"], c["producer_accuracy"]["ci95"], c["mapped_ha"],
                        c["area_ha"]["value"], c["area_ha"]["ci95"], c["reference_units"], c["few_units"]])
