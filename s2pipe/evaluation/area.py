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
from s2pipe.legend import DEFAULT_LEGEND, LandCoverClass

Z95 = 1.959964  # two-sided 95% normal quantile


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
            "user_accuracy": float(users[j]),
            "user_ci95": float(Z95 * math.sqrt(var_q[j, j])) if ni[j] > 1 else math.nan,
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
