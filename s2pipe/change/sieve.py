"""The minimum mapping unit of change, judged on strips of rows that are read once.

A mask (where the change map holds a transition) comes strip by strip, top to bottom,
each strip the whole width. Its patches (4-connected, as ``scipy.ndimage.label`` finds
them) are labelled per strip and joined across the seam between one strip and the next
(a graph of the labels that touch there), so each patch's area adds up over the strips
it spans. A strip is handed back once every patch in it is decided: closed (it does not
reach the last strip's bottom row, so its area is known) or already as large as the
unit. Patches still open and smaller than the unit span fewer rows than the unit has
pixels, so at most ``ceil(min_px / strip height) + 1`` strips wait: memory is a few
strips and the open patches, whatever the area. The result is the whole-array sieve's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np


def label_patches(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected patches of a (h, w) bool mask: int32 labels 1..n (0 outside), n."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    return labels.astype(np.int32, copy=False), int(n)


@dataclass
class _Strip:
    payload: Any
    labels: np.ndarray   # int32 (h, w) labels of this strip, 0 = outside the mask
    comp: np.ndarray     # int64 (n + 1,): label -> patch (index 0 unused)


class StripSieve:
    """Patches of fewer than ``min_px`` pixels of a mask given strip by strip (see the
    module docstring): :meth:`push` returns the strips now decided, in order, each with
    the mask of its pixels in small patches."""

    def __init__(self, min_px: int) -> None:
        self.min_px = min_px
        self._pending: deque[_Strip] = deque()
        self._sizes = np.zeros(0, np.int64)  # pixels of each open or waiting patch so far
        self._bottom: np.ndarray | None = None  # patch of each pixel of the last row, -1: none

    @property
    def waiting(self) -> int:
        """Strips pushed and not yet handed back."""
        return len(self._pending)

    def push(self, payload: Any, labels: np.ndarray, n: int, *, last: bool = False
             ) -> list[tuple[Any, np.ndarray]]:
        """Add the next strip's patches (``labels``, ``n`` of :func:`label_patches`);
        ``last`` closes every patch. Returns (payload, small) of each strip decided."""
        k0 = len(self._sizes)
        self._sizes = np.concatenate([self._sizes, np.bincount(labels.ravel(), minlength=n + 1)[1:]])
        comp = np.arange(k0 - 1, k0 + n, dtype=np.int64)
        comp[0] = 0
        if self._bottom is not None and n:
            first = labels[0]
            touch = (self._bottom >= 0) & (first > 0)
            if touch.any():
                comp = self._join(self._bottom[touch], comp[first[touch]], comp)
        self._pending.append(_Strip(payload, labels, comp))
        is_open = np.zeros(len(self._sizes), bool)
        self._bottom = None
        if not last:
            row = labels[-1]
            self._bottom = np.where(row > 0, comp[row], -1)
            is_open[self._bottom[row > 0]] = True
        decided = ~is_open | (self._sizes >= self.min_px)
        small = np.append(self._sizes < self.min_px, False)  # never empty: label 0 indexes it
        out = []
        while self._pending and decided[self._pending[0].comp[1:]].all():
            s = self._pending.popleft()
            lut = small[s.comp]
            lut[0] = False
            out.append((s.payload, lut[s.labels]))
        self._compact()
        return out

    def _join(self, u: np.ndarray, v: np.ndarray, comp: np.ndarray) -> np.ndarray:
        """Merge the patches that touch across the seam (pairs ``u``-``v``); the new
        strip's ``comp`` renumbered."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        total = len(self._sizes)
        graph = coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(total, total))
        k, merged = connected_components(graph, directed=False)
        self._renumber(merged.astype(np.int64))
        self._sizes = np.bincount(merged, weights=self._sizes, minlength=k).astype(np.int64)
        comp = merged[comp].astype(np.int64)
        comp[0] = 0
        return comp

    def _renumber(self, new: np.ndarray) -> None:
        for s in self._pending:
            s.comp = new[s.comp]
            s.comp[0] = 0
        if self._bottom is not None:
            self._bottom = np.where(self._bottom >= 0, new[np.maximum(self._bottom, 0)], -1)

    def _compact(self) -> None:
        """Forget the patches no waiting strip and no pixel of the last row holds."""
        parts = [s.comp[1:] for s in self._pending]
        if self._bottom is not None:
            parts.append(self._bottom[self._bottom >= 0])
        held = np.zeros(len(self._sizes), bool)
        for part in parts:
            held[part] = True
        used = np.flatnonzero(held)
        if len(used) == len(self._sizes):
            return
        remap = np.zeros(len(self._sizes), np.int64)
        remap[used] = np.arange(len(used))
        self._renumber(remap)
        self._sizes = self._sizes[used]
