"""The values of a change map: one per from -> to pair of a legend's classes.

For a legend of ``n`` classes (its ``k``-th class, 1-based, in legend order), a change
map's pixel holds ``(k_from - 1) * n + k_to``: the diagonal codes (``k_from == k_to``)
are the stable classes, every other code one transition; ``n * n + 1`` marks pixels
whose classes differ but where either date was not sure enough to call it change
(``--min-confidence``); 0 is no data (either date had none, or clouds). With at most 15
classes every code fits a byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from s2pipe.errors import RasterError
from s2pipe.legend import LandCoverClass

MAX_CLASSES = 15  # 15 * 15 + 1 = 226 codes: uint8
UNCERTAIN_NAME = "Uncertain (classes differ, not confident)"
UNCERTAIN_COLOUR = "#5a5a5a"
ARROW = " -> "


def _mix(colour: str, towards: tuple[int, int, int], share: float) -> str:
    h = colour.lstrip("#")
    rgb = [int(h[i:i + 2], 16) for i in (0, 2, 4)]
    out = [round(c + (t - c) * share) for c, t in zip(rgb, towards)]
    return "#{:02x}{:02x}{:02x}".format(*out)


@dataclass(frozen=True)
class Transitions:
    """The change-map codes of one class legend."""

    classes: tuple[LandCoverClass, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            raise RasterError(f"a change map takes legends of 1..{MAX_CLASSES} classes, not {len(self.classes)}")

    @property
    def n(self) -> int:
        return len(self.classes)

    @property
    def uncertain(self) -> int:
        return self.n * self.n + 1

    def code(self, before: int, after: int) -> int:
        """The code of the 1-based legend positions ``before`` -> ``after``."""
        return (before - 1) * self.n + after

    def decode(self, code: int) -> tuple[int, int]:
        """(before, after) legend positions of a transition or stable code."""
        if not 1 <= code <= self.n * self.n:
            raise ValueError(f"{code} is no transition code of {self.n} classes")
        return (code - 1) // self.n + 1, (code - 1) % self.n + 1

    def is_change(self, code: int) -> bool:
        return 1 <= code <= self.n * self.n and (code - 1) // self.n != (code - 1) % self.n

    def name(self, code: int) -> str:
        if code == self.uncertain:
            return UNCERTAIN_NAME
        b, a = self.decode(code)
        if b == a:
            return f"{self.classes[b - 1].name} (no change)"
        return f"{self.classes[b - 1].name}{ARROW}{self.classes[a - 1].name}"

    def entry(self, code: int) -> LandCoverClass:
        """The legend entry of a code: a change in its new class's colour; a stable class
        in its colour faded towards white, so that change stands out; uncertain in grey."""
        if code == self.uncertain:
            return LandCoverClass(code, UNCERTAIN_NAME, UNCERTAIN_COLOUR)
        b, a = self.decode(code)
        colour = self.classes[a - 1].color
        if a == b:
            colour = _mix(colour, (255, 255, 255), 0.65)
        return LandCoverClass(code, self.name(code), colour)

    def legend(self, codes: Iterable[int] | None = None) -> tuple[LandCoverClass, ...]:
        """Entries of ``codes`` (default every code), in code order; 0 is never one."""
        every = range(1, self.uncertain + 1) if codes is None else sorted({int(c) for c in codes} - {0})
        return tuple(self.entry(c) for c in every)

    def lut_positions(self) -> np.ndarray:
        """uint8 lookup from class value to 1-based legend position (0: no data / unknown)."""
        lut = np.zeros(max(256, max(c.value for c in self.classes) + 1), dtype=np.uint8)
        for k, c in enumerate(self.classes, start=1):
            lut[c.value] = k
        return lut

    def encode(self, before: np.ndarray, after: np.ndarray, uncertain: np.ndarray | None = None) -> np.ndarray:
        """Codes of two arrays of legend positions (0 = no data in either gives 0); where
        ``uncertain`` and the classes differ, the uncertain code."""
        pair = (before.astype(np.uint8, copy=False) << 4) | after.astype(np.uint8, copy=False)  # positions < 16
        b, a = np.arange(256) >> 4, np.arange(256) & 15
        out = np.where((b > 0) & (a > 0), (b - 1) * self.n + a, 0).astype(np.uint8)[pair]
        if uncertain is not None:
            out[uncertain & ((b != a) & (b > 0) & (a > 0))[pair]] = self.uncertain
        return out

    def changed(self, codes: np.ndarray) -> np.ndarray:
        """Where ``codes`` hold a transition (not stable, uncertain or no data)."""
        c = codes.astype(np.int32) - 1
        return (codes > 0) & (codes <= self.n * self.n) & (c // self.n != c % self.n)

    def before_after(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Legend positions before and after (0 where no data or uncertain)."""
        valid = (codes > 0) & (codes <= self.n * self.n)
        c = codes.astype(np.int32) - 1
        return (np.where(valid, c // self.n + 1, 0).astype(np.uint8),
                np.where(valid, c % self.n + 1, 0).astype(np.uint8))


def same_classes(a: Sequence[LandCoverClass], b: Sequence[LandCoverClass]) -> bool:
    """Whether two legends have the same classes (values and names; colours may differ)."""
    return [(c.value, c.name) for c in a] == [(c.value, c.name) for c in b]
