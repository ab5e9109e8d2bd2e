"""Built-in class maps of public land-cover products: CORINE Land Cover and Urban Atlas.

Each preset is a CSV shipped in ``s2pipe/data/class_maps/`` (``code,class,name``): the
product's codes, the s2pipe class each becomes, and the product's own class name. Class
0 marks a code the preset knows but cannot map (Urban Atlas 91000/92000 "no data",
CORINE 999 "NODATA"): features with it are dropped and counted, never guessed. The
tables are printed in ``docs/class-presets.md``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: Preset names, as ``--class-map`` accepts them.
PRESETS: tuple[str, ...] = ("corine", "urban-atlas")
#: Target class of a known code that the preset does not map.
DROPPED = 0


@dataclass(frozen=True)
class ClassPreset:
    """One preset: source code -> s2pipe class (0 = known, dropped) and the source's names."""

    name: str
    classes: dict[str, int]
    names: dict[str, str]


def is_preset(value: object) -> bool:
    """Whether ``value`` names a preset (case-insensitive)."""
    return isinstance(value, str) and value.strip().lower() in PRESETS


@cache
def load_preset(name: str) -> ClassPreset:
    """The preset ``name`` (one of :data:`PRESETS`); raises ``KeyError`` for another name."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise KeyError(f"no class-map preset {name!r}; presets: {', '.join(PRESETS)}")
    text = resources.files("s2pipe").joinpath("data", "class_maps", f"{key}.csv").read_text(encoding="utf-8")
    rows = [r for r in csv.reader(line for line in text.splitlines() if not line.startswith("#"))]
    header, body = rows[0], [r for r in rows[1:] if r]
    assert header == ["code", "class", "name"], header
    return ClassPreset(key, {r[0]: int(r[1]) for r in body}, {r[0]: r[2] for r in body})


def preset_table(name: str, class_names: dict[int, str]) -> list[str]:
    """The Markdown table of preset ``name`` (as in ``docs/class-presets.md``)."""
    preset = load_preset(name)
    rows = ["| code | name | class | s2pipe class |", "|---:|---|---:|---|"]
    return rows + [f"| {code} | {preset.names[code]} | {cls} | {class_names.get(cls, '(dropped, counted)')} |"
                   for code, cls in preset.classes.items()]
