"""What a change map says, in numbers: the transition matrix, gains, losses, net change
and swap per class, and the report folder that shows them.

Areas here are *mapped* areas (pixels times pixel area): what the map says, not what the
ground did. Their error is measured by ``s2pipe sample`` + ``s2pipe evaluate``
(area-adjusted estimates with confidence intervals, Olofsson et al. 2014). Swap is
``2 * min(gain, loss)`` (Pontius): change that moves a class about without changing its
total. Uncertain pixels are counted apart, not in the matrix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2pipe.legend import LandCoverClass
from s2pipe.raster.transitions import Transitions


@dataclass(frozen=True)
class TransitionArea:
    code: int
    before: str
    after: str
    pixels: int
    hectares: float
    percent: float  # of the area mapped on both dates


@dataclass(frozen=True)
class ClassChange:
    value: int
    name: str
    before_ha: float
    after_ha: float
    gain_ha: float
    loss_ha: float
    net_ha: float
    swap_ha: float


@dataclass
class ChangeSummary:
    classes: list[str]
    pixel_area_ha: float
    matrix_pixels: list[list[int]]          # rows: before, columns: after
    mapped_ha: float                        # data on both dates, uncertain included
    changed_ha: float
    changed_percent: float
    uncertain_ha: float
    naive_changed_ha: float                 # where the two dates' classes differ at all
    transitions: list[TransitionArea] = field(default_factory=list)   # changes, largest first
    per_class: list[ClassChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def headline(self, top: int = 3) -> str:
        biggest = "; ".join(f"{t.before} -> {t.after} {t.hectares:.1f} ha" for t in self.transitions[:top])
        return (f"{self.changed_ha:.1f} ha changed ({self.changed_percent:.2f}% of {self.mapped_ha:.1f} ha "
                f"mapped on both dates), {self.uncertain_ha:.1f} ha uncertain; naive comparison: "
                f"{self.naive_changed_ha:.1f} ha" + (f". Largest: {biggest}" if biggest else ""))


def summarise(t: Transitions, counts: np.ndarray, pixel_area_ha: float, naive_changed_pixels: int) -> ChangeSummary:
    """The summary of a change map's code counts (``counts[code]``, code 0 = no data)."""
    n = t.n
    matrix = np.asarray(counts[1:n * n + 1], dtype=np.int64).reshape(n, n)
    uncertain = int(counts[t.uncertain]) if len(counts) > t.uncertain else 0
    mapped = int(matrix.sum()) + uncertain
    changed = int(matrix.sum() - np.trace(matrix))
    ha = pixel_area_ha
    names = [c.name for c in t.classes]
    transitions = []
    for i in range(n):
        for j in range(n):
            if i != j and matrix[i, j]:
                transitions.append(TransitionArea(t.code(i + 1, j + 1), names[i], names[j], int(matrix[i, j]),
                                                  round(matrix[i, j] * ha, 4),
                                                  round(100.0 * matrix[i, j] / mapped, 4)))
    transitions.sort(key=lambda x: (-x.pixels, x.code))
    per_class = []
    for k, c in enumerate(t.classes):
        gain = int(matrix[:, k].sum() - matrix[k, k])
        loss = int(matrix[k, :].sum() - matrix[k, k])
        per_class.append(ClassChange(c.value, c.name, round(matrix[k, :].sum() * ha, 4),
                                     round(matrix[:, k].sum() * ha, 4), round(gain * ha, 4), round(loss * ha, 4),
                                     round((gain - loss) * ha, 4), round(2 * min(gain, loss) * ha, 4)))
    return ChangeSummary(classes=names, pixel_area_ha=ha, matrix_pixels=matrix.tolist(),
                         mapped_ha=round(mapped * ha, 4), changed_ha=round(changed * ha, 4),
                         changed_percent=round(100.0 * changed / mapped, 4) if mapped else 0.0,
                         uncertain_ha=round(uncertain * ha, 4), naive_changed_ha=round(naive_changed_pixels * ha, 4),
                         transitions=transitions, per_class=per_class)


def markdown(s: ChangeSummary, title: str) -> str:
    lines = [f"# Change: {title}", "", s.headline() + ".", "",
             "Mapped areas (pixels x pixel area); for areas with confidence intervals, draw a sample "
             "(`s2pipe sample`), label it and run `s2pipe evaluate` on the change map.", "",
             "| from | to | hectares | % of mapped |", "|---|---|---:|---:|"]
    lines += [f"| {x.before} | {x.after} | {x.hectares:.2f} | {x.percent:.3f} |" for x in s.transitions]
    lines += ["", "| class | before (ha) | after (ha) | gain | loss | net | swap |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {c.name} | {c.before_ha:.2f} | {c.after_ha:.2f} | {c.gain_ha:.2f} | {c.loss_ha:.2f} | "
              f"{c.net_ha:+.2f} | {c.swap_ha:.2f} |" for c in s.per_class]
    n = len(s.classes)
    lines += ["", "Transition matrix (pixels; rows: before, columns: after)", "",
              "| before \\ after | " + " | ".join(str(i + 1) for i in range(n)) + " |", "|---|" + "---:|" * n]
    lines += [f"| {i + 1} {s.classes[i]} | " + " | ".join(str(v) for v in row) + " |"
              for i, row in enumerate(s.matrix_pixels)]
    return "\n".join(lines) + "\n"


def _chart(s: ChangeSummary, t_colours: dict[str, str], path: Path, top: int = 12) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s.transitions[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 2) + 1.2))
    if rows:
        ax.barh([f"{x.before} -> {x.after}" for x in rows], [x.hectares for x in rows],
                color=[t_colours.get(x.after, "#808080") for x in rows])
    else:
        ax.text(0.5, 0.5, "no change mapped", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("mapped area (ha)")
    ax.set_title(f"Largest transitions ({s.changed_ha:.1f} ha changed)")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FILES = {"json": "change.json", "csv": "transitions.csv", "markdown": "change.md",
         "chart": "transitions.png", "quicklook": "change.png"}


def write_report(folder: Path, s: ChangeSummary, legend: Sequence[LandCoverClass], *, title: str
                 ) -> dict[str, Path]:
    """Write the tables of the report into ``folder`` (which exists): JSON, CSV, Markdown
    and a chart of the largest transitions (``legend``: the classes, for their colours);
    the quick-look of the map is :func:`write_quicklook`'s."""
    out = {k: folder / v for k, v in FILES.items() if k != "quicklook"}
    out["json"].write_text(json.dumps(s.to_dict(), indent=2) + "\n", encoding="utf-8")
    with out["csv"].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["code", "from", "to", "pixels", "hectares", "percent_of_mapped"])
        for x in s.transitions:
            w.writerow([x.code, x.before, x.after, x.pixels, x.hectares, x.percent])
    out["markdown"].write_text(markdown(s, title), encoding="utf-8")
    _chart(s, {c.name: c.color for c in legend}, out["chart"])
    return out


def write_quicklook(folder: Path, change_map: Path) -> Path:
    """The report's quick-look of the change map (read decimated, from its overviews)."""
    from s2pipe.raster.quicklook import render_quicklook

    path = folder / FILES["quicklook"]
    render_quicklook(change_map, path, kind="classes", title="Change", overwrite=True)
    return path
