"""The evaluation report: Markdown table, per-class CSV and confusion-matrix plot."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.evaluation.metrics import Scores
from s2pipe.legend import LandCoverClass


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown(sc: Scores, cm: np.ndarray, legend: Sequence[LandCoverClass], adjusted: dict | None,
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


def write_csv(path: Path, per_class: list[dict[str, Any]], adjusted: dict | None) -> None:
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
