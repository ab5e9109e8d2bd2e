"""Accuracy of a land-cover map against reference labels (vectors or a label raster).

Only pixels labelled in the reference (1..n) and not no data (0) in the map count.
The confusion matrix and scores come from :mod:`s2pipe.evaluation.metrics`, the
reference from :mod:`s2pipe.evaluation.reference`, the area-adjusted estimates from
:mod:`s2pipe.evaluation.area` and the report files (metrics.json, metrics.md,
metrics.csv, confusion.png) from :mod:`s2pipe.evaluation.report`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.errors import InputNotFoundError, LabelError, OptionError, RasterError
from s2pipe.evaluation.area import area_adjusted_accuracy
from s2pipe.evaluation.change import ChangeAccuracy, evaluate_change
from s2pipe.evaluation.metrics import confusion_matrix, scores
from s2pipe.evaluation.reference import RASTER_SUFFIXES, read_map, read_reference_raster, split_mask
from s2pipe.evaluation.report import markdown, plot_confusion, write_csv
from s2pipe.legend import NODATA_LABEL
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.raster.grid import pixel_area_ha
from s2pipe.raster.maps import open_map
from s2pipe.raster.profiles import with_gdal_env

STRIP_ROWS = 1024  # confusion matrices are counted in strips: int64, 8 bytes per pixel


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


@with_gdal_env
def evaluate_map(prediction: str | os.PathLike, reference: str | os.PathLike,
                 report_dir: str | os.PathLike, *, layer: str | None = None,
                 class_field: str | None = None, class_map: str | os.PathLike | None = None,
                 all_touched: bool = False, split_from: str | os.PathLike | None = None,
                 area_adjusted: bool = False, before_field: str | None = None, after_field: str | None = None,
                 overwrite: bool = False) -> Evaluation | ChangeAccuracy:
    """Compare a class map with reference labels and write the report folder.

    ``reference`` is a label raster (suffix in :data:`RASTER_SUFFIXES`; resampled
    nearest onto the map's grid if needed) or vectors read and rasterised exactly as
    ``prepare`` does. ``split_from`` (a ``prepare`` output) keeps only its test tiles.
    ``area_adjusted`` adds Olofsson et al. (2014) estimates over the whole map's class
    counts. Writes metrics.json, metrics.md, metrics.csv and confusion.png. A change map
    (``s2pipe change``) is evaluated by :func:`s2pipe.evaluation.change.evaluate_change`
    against reference classes of both dates (``before_field``, ``after_field``).
    """
    prediction, reference, report_dir = Path(prediction), Path(reference), Path(report_dir)
    if open_map(prediction, ("classes", "change")).kind == "change":
        given = [f for f, v in (("--class-field", class_field), ("--class-map", class_map),
                                ("--split-from", split_from), ("--area-adjusted", area_adjusted),
                                ("--all-touched", all_touched)) if v]
        if given:
            raise OptionError(f"{prediction} is a change map: {', '.join(given)} apply to class maps; "
                              "give --before-field/--after-field (a change map's areas are always area-adjusted)")
        return evaluate_change(prediction, reference, report_dir, layer=layer, before_field=before_field,
                               after_field=after_field, overwrite=overwrite)
    if before_field is not None or after_field is not None:
        raise OptionError(f"{prediction} is a class map: --before-field/--after-field apply to change maps "
                          "(s2pipe change); give --class-field")
    check_writable(report_dir, overwrite=overwrite)
    if not reference.exists():
        raise InputNotFoundError(f"{reference} does not exist; give a label raster or vector file")
    pred, grid, legend = read_map(prediction)
    n = max(c.value for c in legend)
    if pred.max(initial=0) > n or pred.min(initial=0) < 0:
        raise RasterError(f"{prediction} holds values outside 0..{n}; give a map written by s2pipe predict")
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
    cm = np.zeros((n, n), dtype=np.int64)
    for r in range(0, grid.height, STRIP_ROWS):
        cm += confusion_matrix(ref[r:r + STRIP_ROWS], pred[r:r + STRIP_ROWS], num_classes=n)
    if cm.sum() == 0:
        raise LabelError(f"no pixel is labelled in {reference} and mapped in {prediction}"
                         + (" within the test tiles" if split else "") + "; check that they overlap")
    sc = scores(cm, legend)
    adjusted = None
    if area_adjusted:
        counts = np.bincount(pred.ravel(), minlength=n + 1)[1:n + 1].tolist()
        px_ha = pixel_area_ha(grid)
        adjusted = area_adjusted_accuracy(cm, counts, pixel_area_ha=px_ha, legend=legend).to_dict()
    d = sc.to_dict()
    table = markdown(sc, cm, legend, adjusted, prediction, reference, split)
    result = Evaluation(report_dir=report_dir, files={}, prediction=prediction, reference=reference,
                        split=split, pixels=d["pixels"], overall_accuracy=d["overall_accuracy"],
                        kappa=d["kappa"], miou=d["miou"], per_class=d["per_class"],
                        confusion_matrix=cm.tolist(), area_adjusted=adjusted,
                        labels_report=labels_info)
    names = {"metrics_json": "metrics.json", "metrics_md": "metrics.md",
             "metrics_csv": "metrics.csv", "confusion_png": "confusion.png"}
    with atomic_output(report_dir, overwrite=overwrite, directory=True) as tmp:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
                   if k != "files"}
        payload["classes"] = [c.name for c in legend]
        (tmp / names["metrics_json"]).write_text(json.dumps(payload, indent=2) + "\n")
        (tmp / names["metrics_md"]).write_text(table + "\n")
        write_csv(tmp / names["metrics_csv"], d["per_class"], adjusted)
        plot_confusion(cm, legend, tmp / names["confusion_png"])
    result.files = {k: report_dir / v for k, v in names.items()}
    return result
