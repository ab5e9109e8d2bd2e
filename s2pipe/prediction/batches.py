"""Reading a scene's windows once per strip, normalised, in batches, ahead of the model.

Each panel's window rows are read as reflect-padded strips (:func:`read_padded`),
normalised by the checkpoint's :class:`s2pipe.model.normalization.Normalization` (the
rule training uses, bit for bit) and cut into batches in a background thread
(:func:`prefetch`), so reading overlaps the forward passes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window

from s2pipe.model.normalization import Normalization
from s2pipe.prediction.windows import WindowGrid, read_padded
from s2pipe.sentinel2.scene import Scene


@dataclass
class Batch:
    """Windows of one window row of one panel, ready for the model."""

    panel: int               # index of the panel
    row: int                 # index of the window row
    last_in_row: bool
    cols: list[int]          # window column origins
    x: torch.Tensor          # (n, bands, t, t) float32 on the CPU, normalised
    valid: np.ndarray        # (n, t, t) bool: some band is non-zero


def batches(scene: Scene, grid: WindowGrid, norm: Normalization,
            batch_size: int) -> Iterator[Batch]:
    """Read each panel's window rows once as reflect-padded strips, normalise each strip
    once (in NumPy: no torch threads beside the model's), and cut it into batches."""

    def read(x0: int, y0: int, w: int, h: int) -> np.ndarray:
        return scene.read(Window(x0, y0, w, h))

    t = grid.tile
    for g, panel in enumerate(grid.panels):
        cols = panel.cols
        for r, y0 in enumerate(grid.rows):
            raw = read_padded(read, grid.width, grid.height, panel.x0, y0, panel.width, t)
            valid_strip: np.ndarray = np.any(raw, axis=0)
            strip = norm.normalize_array(raw)
            del raw
            for b in range(0, len(cols), batch_size):
                chunk = cols[b:b + batch_size]
                x = np.empty((len(chunk), strip.shape[0], t, t), dtype=np.float32)
                valid = np.empty((len(chunk), t, t), dtype=bool)
                for i, c in enumerate(chunk):
                    x[i] = strip[:, :, c - panel.x0:c - panel.x0 + t]
                    valid[i] = valid_strip[:, c - panel.x0:c - panel.x0 + t]
                yield Batch(g, r, b + batch_size >= len(cols), chunk, torch.from_numpy(x), valid)
            del strip, valid_strip  # before the next strip is read


def prefetch(it: Iterator[Batch], depth: int = 2) -> Iterator[Batch]:
    """Run ``it`` in a background thread, ``depth`` items ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=work, name="s2pipe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
