"""Accuracy of a land-cover map against reference labels (vectors or a label raster).

Only pixels labelled in the reference (1..n) and not no data (0) in the map count.
The confusion matrix and scores come from :mod:`s2pipe.evaluation.metrics`; this module adds the
reference handling, the area-adjusted estimates of Olofsson et al. (2014) and the
report files (metrics.json, metrics.md, metrics.csv, confusion.png).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from s2pipe.errors import InputNotFoundError, LabelError, OptionError, SafeFormatError, TileError
from s2pipe.legend import DEFAULT_LEGEND, NODATA_LABEL, LandCoverClass
from s2pipe.evaluation.metrics import Scores, confusion_matrix, scores
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.quicklook import raster_legend

log = logging.getLogger(__name__)

#: Reference files with these suffixes are label rasters; anything else is read as vectors.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
Z95 = 1.959964  # two-sided 95% normal quantile
STRIP_ROWS = 1024


def _nan_none(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


# ---------------------------------------------------------------- area-adjusted accuracy
@dataclass
class AreaAdjusted:
    """Stratified estimates (strata = map classes) with 95% confidence half-widths.

    ``per_class`` items: value, name, map_pixels, user_accuracy, user_ci95,
    producer_accuracy, producer_ci95, area_proportion, area_pixels, area_pixels_ci95,
    and map_area_ha, area_ha, area_ha_ci95 when the pixel area is known.
    """

    overall_accuracy: float
    overall_accuracy_ci95: float
    per_class: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"overall_accuracy": _nan_none(self.overall_accuracy),
                "overall_accuracy_ci95": _nan_none(self.overall_accuracy_ci95),
                "per_class": [{k: _nan_none(v) for k, v in c.items()} for c in self.per_class]}


def area_adjusted_accuracy(cm: np.ndarray, map_pixels: Sequence[int], *,
                           pixel_area_ha: float | None = None,
                           legend: Sequence[LandCoverClass] = DEFAULT_LEGEND) -> AreaAdjusted:
    """Olofsson et al. (2014) estimators from a confusion matrix and the map's class counts.

    ``cm`` has reference classes in rows and map classes in columns (as
    :func:`s2pipe.evaluation.metrics.confusion_matrix`); ``map_pixels[k]`` is the number of map
    pixels of class ``k + 1``. Each map class is a stratum weighted by its mapped area;
    strata with fewer than two reference pixels contribute no variance (their figures are
    NaN where undefined).
    """
    n = np.asarray(cm, dtype=np.float64).T  # rows: map class (stratum), cols: reference class
    k = n.shape[0]
    counts = np.asarray(map_pixels, dtype=np.float64)
    if counts.shape != (k,):
        raise ValueError(f"map_pixels must have {k} entries, got {counts.shape}")
    total = counts.sum()
    w = counts / total if total else np.zeros(k)
    ni = n.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ni[:, None] > 0, n / ni[:, None], 0.0)  # row proportions n_ij / n_i.
        var_q = np.where(ni[:, None] > 1, q * (1 - q) / (ni[:, None] - 1), 0.0)
        p = w[:, None] * q  # estimated area proportions p_ij
        p_ref = p.sum(axis=0)  # estimated proportion of each reference class
        users = np.where(ni > 0, np.diag(q), np.nan)
        producers = np.diag(p) / p_ref
        oa = float(np.trace(p))
        var_oa = float(np.sum(w ** 2 * np.diag(var_q)))
        n_ref = total * p_ref  # estimated pixels of each reference class
        var_prod = np.empty(k)
        for j in range(k):
            others = sum(counts[i] ** 2 * var_q[i, j] for i in range(k) if i != j)
            var_prod[j] = (counts[j] ** 2 * (1 - producers[j]) ** 2 * var_q[j, j]
                           + producers[j] ** 2 * others) / n_ref[j] ** 2
        se_p_ref = np.sqrt(np.sum(w[:, None] ** 2 * var_q, axis=0))
    names = {c.value: c.name for c in legend}
    per_class = []
    for j in range(k):
        item: dict[str, Any] = {
            "value": j + 1, "name": names.get(j + 1, f"class {j + 1}"), "map_pixels": int(counts[j]),
            "user_accuracy": float(users[j]), "user_ci95": float(Z95 * math.sqrt(var_q[j, j])) if ni[j] > 1 else math.nan,
            "producer_accuracy": float(producers[j]), "producer_ci95": float(Z95 * math.sqrt(var_prod[j])),
            "area_proportion": float(p_ref[j]), "area_pixels": float(n_ref[j]),
            "area_pixels_ci95": float(Z95 * total * se_p_ref[j])}
        if pixel_area_ha is not None:
            item["map_area_ha"] = item["map_pixels"] * pixel_area_ha
            item["area_ha"] = item["area_pixels"] * pixel_area_ha
            item["area_ha_ci95"] = item["area_pixels_ci95"] * pixel_area_ha
        per_class.append(item)
    return AreaAdjusted(overall_accuracy=oa, overall_accuracy_ci95=Z95 * math.sqrt(var_oa),
                        per_class=per_class)


# ---------------------------------------------------------------- reference and map
def _grid_of(ds) -> Any:
    from s2pipe.sentinel2.reader import Grid

    return Grid(crs=ds.crs, transform=ds.transform, width=ds.width, height=ds.height)


def read_map(path: Path) -> tuple[np.ndarray, Any, tuple[LandCoverClass, ...]]:
    """The map's band 1, its grid and its legend (class names and colours it carries)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise InputNotFoundError(f"{path} does not exist; give the map written by s2pipe predict")
    try:
        with rasterio.open(path) as ds:
            if ds.count != 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
                raise SafeFormatError(f"{path} has {ds.count} band(s) of {ds.dtypes[0]}; "
                                      "give a one-band class map written by s2pipe predict")
            if ds.crs is None:
                raise SafeFormatError(f"{path} has no CRS; give a georeferenced class map")
            data = ds.read(1)
            grid = _grid_of(ds)
            legend = raster_legend(ds)
    except RasterioIOError as exc:
        raise SafeFormatError(f"{path} is not a raster GDAL can read ({exc})") from None
    return data, grid, legend


def read_reference_raster(path: Path, grid: Any, num_classes: int, *,
                          class_map: str | os.PathLike | None = None) -> np.ndarray:
    """A label raster on ``grid``: read as is when it shares it, else resampled nearest.

    With ``class_map`` (as ``prepare --class-map``) its values are translated to classes
    and values the map does not list become unlabelled.
    """
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.warp import Resampling, reproject

    try:
        with rasterio.open(path) as ds:
            if ds.count != 1:
                raise LabelError(f"{path} has {ds.count} bands; a label raster has one band of class values")
            if ds.crs is None:
                raise LabelError(f"{path} has no CRS; assign one (gdal_edit.py -a_srs) and retry")
            same = (ds.crs == grid.crs and ds.width == grid.width and ds.height == grid.height
                    and ds.transform.almost_equals(grid.transform))
            src = ds.read(1)
            nodata = ds.nodata
            if same:
                ref = src
            else:
                log.info("resampling %s onto the map's grid (nearest)", path)
                ref = np.zeros((grid.height, grid.width), dtype=src.dtype)
                reproject(src, ref, src_transform=ds.transform, src_crs=ds.crs, src_nodata=nodata,
                          dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=NODATA_LABEL,
                          resampling=Resampling.nearest)
    except RasterioIOError as exc:
        raise LabelError(f"{path} is not a raster GDAL can read ({exc})") from None
    if nodata is not None and nodata != NODATA_LABEL:
        ref = np.where(ref == nodata, NODATA_LABEL, ref)
    if class_map is not None:
        from s2pipe.labels import load_class_map

        mapping = load_class_map(class_map)
        values = [v for v in np.unique(ref) if v != NODATA_LABEL]
        lut = {v: mapping.get(str(int(v)) if float(v).is_integer() else str(v), NODATA_LABEL) for v in values}
        unmapped = sorted(str(v) for v, t in lut.items() if t == NODATA_LABEL)
        if unmapped:
            log.warning("%s: values not in the class map left unlabelled: %s", path, ", ".join(unmapped[:10]))
        out = np.zeros(ref.shape, dtype=np.uint8)
        for v, t in lut.items():
            out[ref == v] = t
        ref = out
    bad = (ref < 0) | (ref > num_classes)
    if bad.any():
        raise LabelError(f"{path} holds values outside 0..{num_classes} (e.g. {ref[bad][0]}); "
                         f"recode it to 0 = unlabelled and classes 1..{num_classes}")
    if not (ref > 0).any():
        raise LabelError(f"{path} has no labelled pixel on the map's grid; check that it overlaps the map")
    return ref.astype(np.uint8)


def split_mask(tiles_dir: Path, grid: Any, split: str = "test") -> np.ndarray:
    """Pixels of the map covered by the ``split`` tiles of a ``prepare`` output."""
    manifest = tiles_dir / "prepare.json"
    if not manifest.is_file():
        raise InputNotFoundError(f"{manifest} does not exist; give a folder written by s2pipe prepare")
    try:
        info = json.loads(manifest.read_text())
        size = int(info["tile_size"])
        tiles = [t for t in info["tiles"] if t.get("split") == split]
    except (ValueError, KeyError, TypeError) as exc:
        raise TileError(f"{manifest} is not a prepare manifest ({exc}); re-run s2pipe prepare") from None
    if not tiles:
        raise TileError(f"{manifest} lists no {split} tiles; re-run prepare with a {split} share in --split")
    product = info.get("product") or {}
    if {"transform", "width", "height"} <= product.keys():
        same = (int(product["width"]) == grid.width and int(product["height"]) == grid.height
                and np.allclose(product["transform"][:6], list(grid.transform)[:6], atol=1e-6)
                and (product.get("epsg") is None or grid.crs.to_epsg() == int(product["epsg"])))
        if not same:
            raise TileError(f"{manifest} was prepared on another grid ({product.get('name')}, "
                            f"{product['width']} x {product['height']} px) than the map; "
                            "give the tiles of the scene the map was predicted on")
    mask = np.zeros((grid.height, grid.width), dtype=bool)
    for t in tiles:
        r, c = int(t["row"]), int(t["col"])
        if r >= grid.height or c >= grid.width:
            raise TileError(f"{manifest}: tile {t.get('id')} lies outside the map "
                            f"({grid.width} x {grid.height} px); evaluate the map of the same scene")
        mask[r:r + size, c:c + size] = True
    return mask


# ---------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """What :func:`evaluate_map` measured and wrote."""

    report_dir: Path
    files: dict[str, Path]
    prediction: Path
    reference: Path
    split: str | None
    pixels: int
    overall_accuracy: float | None
    kappa: float | None
    miou: float | None
    per_class: list[dict[str, Any]]
    confusion_matrix: list[list[int]]
    area_adjusted: dict[str, Any] | None
    labels_report: dict[str, Any] | None  # what read_labels did with vector labels


def evaluate_map(prediction: str | os.PathLike, reference: str | os.PathLike,
                 report_dir: str | os.PathLike, *, layer: str | None = None,
                 class_field: str | None = None, class_map: str | os.PathLike | None = None,
                 all_touched: bool = False, split_from: str | os.PathLike | None = None,
                 area_adjusted: bool = False, overwrite: bool = False) -> Evaluation:
    """Compare a class map with reference labels and write the report folder.

    ``reference`` is a label raster (suffix in :data:`RASTER_SUFFIXES`; resampled
    nearest onto the map's grid if needed) or vectors read and rasterised exactly as
    ``prepare`` does. ``split_from`` (a ``prepare`` output) keeps only its test tiles.
    ``area_adjusted`` adds Olofsson et al. (2014) estimates over the whole map's class
    counts. Writes metrics.json, metrics.md, metrics.csv and confusion.png.
    """
    prediction, reference, report_dir = Path(prediction), Path(reference), Path(report_dir)
    check_writable(report_dir, overwrite=overwrite)
    if not reference.exists():
        raise InputNotFoundError(f"{reference} does not exist; give a label raster or vector file")
    pred, grid, legend = read_map(prediction)
    n = max(c.value for c in legend)
    if pred.max(initial=0) > n or pred.min(initial=0) < 0:
        raise SafeFormatError(f"{prediction} holds values outside 0..{n}; give a map written by s2pipe predict")
    labels_info = None
    if reference.suffix.lower() in RASTER_SUFFIXES:
        if class_field is not None or layer is not None:
            raise OptionError(f"--class-field and --layer apply to vector labels, and {reference} "
                              "is a raster; leave them out (--class-map works for both)")
        ref = read_reference_raster(reference, grid, n, class_map=class_map)
    else:
        from s2pipe.labels import rasterize_labels, read_labels

        gdf, label_report = read_labels(reference, layer=layer, class_field=class_field,
                                        class_map=class_map, grid=grid, legend=legend)
        labels_info = asdict(label_report)
        ref = rasterize_labels(gdf, grid, all_touched=all_touched)
    split = None
    if split_from is not None:
        split = "test"
        ref = np.where(split_mask(Path(split_from), grid, split), ref, NODATA_LABEL)
    # in strips of rows: confusion_matrix works in int64, 8 bytes per pixel of a full scene
    cm = sum(confusion_matrix(ref[r:r + STRIP_ROWS], pred[r:r + STRIP_ROWS], num_classes=n)
             for r in range(0, grid.height, STRIP_ROWS))
    if cm.sum() == 0:
        raise LabelError(f"no pixel is labelled in {reference} and mapped in {prediction}"
                         + (" within the test tiles" if split else "") + "; check that they overlap")
    sc = scores(cm, legend)
    adjusted = None
    if area_adjusted:
        counts = np.bincount(pred.ravel(), minlength=n + 1)[1:n + 1]
        px_ha = _pixel_area_ha(grid)
        adjusted = area_adjusted_accuracy(cm, counts, pixel_area_ha=px_ha, legend=legend).to_dict()
    d = sc.to_dict()
    table = _markdown(sc, cm, legend, adjusted, prediction, reference, split)
    result = Evaluation(report_dir=report_dir, files={}, prediction=prediction, reference=reference,
                        split=split, pixels=d["pixels"], overall_accuracy=d["overall_accuracy"],
                        kappa=d["kappa"], miou=d["miou"], per_class=d["per_class"],
                        confusion_matrix=cm.tolist(), area_adjusted=adjusted,
                        labels_report=labels_info)
    names = {"metrics_json": "metrics.json", "metrics_md": "metrics.md",
             "metrics_csv": "metrics.csv", "confusion_png": "confusion.png"}
    with atomic_output(report_dir, overwrite=overwrite, directory=True) as tmp:
        payload = {k: v for k, v in _plain(result).items() if k != "files"}
        payload["classes"] = [c.name for c in legend]
        (tmp / names["metrics_json"]).write_text(json.dumps(payload, indent=2) + "\n")
        (tmp / names["metrics_md"]).write_text(table + "\n")
        _write_csv(tmp / names["metrics_csv"], d["per_class"], adjusted)
        plot_confusion(cm, legend, tmp / names["confusion_png"])
    result.files = {k: report_dir / v for k, v in names.items()}
    return result


def _pixel_area_ha(grid: Any) -> float | None:
    """Area of one pixel in hectares, or None when the CRS is not in metres."""
    crs = grid.crs
    if crs is None or not crs.is_projected or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        return None
    return abs(grid.transform.a * grid.transform.e - grid.transform.b * grid.transform.d) / 10_000


def _plain(result: Evaluation) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _markdown(sc: Scores, cm: np.ndarray, legend: Sequence[LandCoverClass], adjusted: dict | None,
              prediction: Path, reference: Path, split: str | None) -> str:
    """The report as Markdown: summary, per-class table, confusion matrix, area estimates."""
    lines = [f"# Accuracy of {prediction.name}", "",
             f"Reference: `{reference}`" + (f" ({split} tiles only)" if split else ""),
             f"Pixels compared: {sc.pixels}  ", f"Overall accuracy: {_fmt(sc.overall_accuracy)}  ",
             f"Cohen's kappa: {_fmt(sc.kappa)}  ", f"mIoU: {_fmt(sc.miou)}", "",
             "| value | class | precision | recall | F1 | IoU | support |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for c in sc.per_class:
        lines.append(f"| {c['value']} | {c['name']} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | "
                     f"{_fmt(c['f1'])} | {_fmt(c['iou'])} | {c['support']} |")
    names = [c.name for c in legend]
    lines += ["", "Confusion matrix (rows: reference, columns: map, pixels)", "",
              "| reference \\ map | " + " | ".join(f"{i + 1}" for i in range(len(cm))) + " |",
              "|---|" + "---:|" * len(cm)]
    for i, row in enumerate(cm):
        lines.append(f"| {i + 1} {names[i] if i < len(names) else ''} | " + " | ".join(str(v) for v in row) + " |")
    if adjusted is not None:
        unit = "ha" if "area_ha" in adjusted["per_class"][0] else "pixels"
        key, mapped = ("area_ha", "map_area_ha") if unit == "ha" else ("area_pixels", "map_pixels")
        lines += ["", "Area-adjusted accuracy (Olofsson et al. 2014; ± = 95% confidence interval)", "",
                  f"Overall accuracy: {_fmt(adjusted['overall_accuracy'])} ± "
                  f"{_fmt(adjusted['overall_accuracy_ci95'])}", "",
                  f"| value | class | user's | producer's | mapped ({unit}) | estimated area ({unit}) |",
                  "|---:|---|---:|---:|---:|---:|"]
        for c in adjusted["per_class"]:
            lines.append(f"| {c['value']} | {c['name']} | {_fmt(c['user_accuracy'])} ± {_fmt(c['user_ci95'])} | "
                         f"{_fmt(c['producer_accuracy'])} ± {_fmt(c['producer_ci95'])} | {_fmt(float(c[mapped]), 1)} | "
                         f"{_fmt(c[key], 1)} ± {_fmt(c[key + '_ci95'], 1)} |")
    return "\n".join(lines)


def _write_csv(path: Path, per_class: list[dict[str, Any]], adjusted: dict | None) -> None:
    rows = [dict(c) for c in per_class]
    if adjusted is not None:
        for row, extra in zip(rows, adjusted["per_class"]):
            row.update({f"adjusted_{k}": v for k, v in extra.items() if k not in ("value", "name")})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


def plot_confusion(cm: np.ndarray, legend: Sequence[LandCoverClass], out_png: Path) -> None:
    """A row-normalised confusion matrix with class names, each cell annotated in percent."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    k = len(cm)
    names = [f"{c.value} {c.name}" for c in legend][:k]
    fig = Figure(figsize=(2.2 + 0.8 * k, 1.6 + 0.7 * k), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.nan_to_num(norm), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if not np.isnan(norm[i, j]):
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("map (predicted)")
    ax.set_ylabel("reference")
    ax.set_title("Confusion matrix, % of each reference class")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(out_png, format="png")
