"""Area-adjusted accuracy: the good-practice estimators of Olofsson et al. (2014).

Strata are the map's classes, weighted by their mapped area; the reference is assumed to
be a random sample within each stratum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2pipe.evaluation.metrics import nan_none
from s2pipe.evaluation.stratified import Design
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass


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
        return {"overall_accuracy": nan_none(self.overall_accuracy),
                "overall_accuracy_ci95": nan_none(self.overall_accuracy_ci95),
                "per_class": [{k: nan_none(v) for k, v in c.items()} for c in self.per_class]}


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
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    counts = np.asarray(map_pixels, dtype=np.int64)
    if counts.shape != (k,):
        raise ValueError(f"map_pixels must have {k} entries, got {counts.shape}")
    ref, mapped = np.nonzero(cm)  # one row per (reference, map) cell, weighted by its pixels
    design = Design(mapped, {i: int(counts[i]) for i in range(k)}, fpc=False, freq=cm[ref, mapped])
    total = int(counts.sum())
    ni = cm.sum(axis=0)
    oa = design.proportion(ref == mapped)
    users = [design.ratio((mapped == j) & (ref == j), mapped == j) for j in range(k)]
    producers = [design.ratio((mapped == j) & (ref == j), ref == j) for j in range(k)]
    areas = [design.proportion(ref == j) for j in range(k)]
    names = {c.value: c.name for c in legend}
    per_class = []
    for j in range(k):
        item: dict[str, Any] = {
            "value": j + 1, "name": names.get(j + 1, f"class {j + 1}"), "map_pixels": int(counts[j]),
            "user_accuracy": users[j].value if ni[j] > 0 else math.nan,
            "user_ci95": users[j].ci95 if ni[j] > 1 else math.nan,
            "producer_accuracy": producers[j].value, "producer_ci95": producers[j].ci95,
            "area_proportion": areas[j].value, "area_pixels": areas[j].value * total,
            "area_pixels_ci95": areas[j].ci95 * total}
        if pixel_area_ha is not None:
            item["map_area_ha"] = item["map_pixels"] * pixel_area_ha
            item["area_ha"] = item["area_pixels"] * pixel_area_ha
            item["area_ha_ci95"] = item["area_pixels_ci95"] * pixel_area_ha
        per_class.append(item)
    return AreaAdjusted(overall_accuracy=oa.value, overall_accuracy_ci95=oa.ci95,
                        per_class=per_class)
