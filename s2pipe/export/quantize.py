"""int8 models: ONNX Runtime static quantisation, calibrated on training tiles, checked on
validation tiles.

Calibration: up to ``count`` (default :data:`DEFAULT_CALIBRATION_TILES`) tiles of the
``train`` split of a ``prepare`` output, drawn without replacement with ``seed`` from
the split's tiles sorted by id, so the same folder, count and seed give the same tiles.
They are normalised exactly as in training and fed, one tile at a time, to ONNX
Runtime's MinMax calibrator; by default (:data:`DEFAULT_RECIPE`, ``tile-mean``) each
activation's range is the mean over the tiles of each tile's own min and max, which clips
the rare extremes that one tile holds (measured against MinMax, percentile, entropy and MSE
ranges in ``bench/bench_int8_levers.py``). Scheme: QDQ, weights int8 symmetric per output channel,
activations uint8 asymmetric per tensor (the fast path of x86 CPUs with VNNI); the last
1x1 convolution (the class logits) stays fp32, so ties between classes are not made by
rounding. The tile ids, seed and folder are written into the model's metadata.

Quality is checked, not assumed: :func:`class_agreement` compares the int8 model's classes
with the fp32 model's on every pixel with data of the ``val`` tiles, and times both.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from s2pipe.errors import TileError
from s2pipe.model.checkpoint import ModelMeta
from s2pipe.prediction.options import DEFAULT_CALIBRATION_TILES
from s2pipe.training.dataset import TilePair, TileSet, find_tiles, load_tiles

log = logging.getLogger(__name__)

CALIBRATION_SPLIT, CHECK_SPLIT = "train", "val"
Method = Literal["minmax", "tile-mean", "percentile", "entropy"]


@dataclass(frozen=True)
class Recipe:
    """How activations are calibrated and which convolutions stay fp32.

    Weights are always int8 symmetric per output channel, activations uint8 per tensor
    (the fast path of x86 CPUs with VNNI); the last 1x1 convolution (the class logits)
    always stays fp32, so ties between classes are not made by rounding.
    """

    method: Method = "minmax"
    percentile: float = 99.999       # method "percentile": the activation range kept
    fp32_first: bool = False         # the first convolution (reads the 12 bands) in fp32
    fp32_tail: int = 0               # this many convolutions before the class logits in fp32

    @property
    def name(self) -> str:
        m = f"percentile-{self.percentile:g}" if self.method == "percentile" else self.method
        return m + ("+fp32-first" if self.fp32_first else "") + \
            (f"+fp32-tail-{self.fp32_tail}" if self.fp32_tail else "")

    def scheme(self) -> str:
        kept = ", ".join([*(["the first conv"] if self.fp32_first else []),
                          *([f"the {self.fp32_tail} convs before the logits"] if self.fp32_tail else []),
                          "the class logits (last 1x1 conv)"])
        m = f"{self.percentile:g} percentile" if self.method == "percentile" else self.method
        m = "tile-mean (each range the mean of the calibration tiles' own min and max)" \
            if self.method == "tile-mean" else m
        return (f"ONNX Runtime static quantisation, QDQ, {m} calibration; weights int8 symmetric "
                f"per channel, activations uint8 per tensor; fp32: {kept}")


DEFAULT_RECIPE = Recipe("tile-mean")
SCHEME = DEFAULT_RECIPE.scheme()


@dataclass
class Calibration:
    """Which tiles calibrated an int8 model, and how."""

    tiles_dir: str
    split: str
    seed: int
    available: int           # tiles in the split
    tiles: list[str] = field(default_factory=list)  # ids of the tiles used
    scheme: str = SCHEME
    fp32_layers: list[str] = field(default_factory=list)  # names of the graph's nodes left fp32


@dataclass
class Agreement:
    """How often the int8 model maps the same class as the fp32 model."""

    split: str
    tiles: int
    pixels: int                 # pixels with data compared
    agreement: float            # fraction of them mapped to the same class
    labelled_pixels: int
    fp32_accuracy: float | None  # on labelled pixels, against the tiles' labels
    int8_accuracy: float | None
    threshold: float
    fp32_seconds: float = 0.0   # the fp32 graph's forward passes over the val tiles, and
    int8_seconds: float = 0.0   # the int8 model's, timed in turn batch by batch (after a warm-up)

    @property
    def speedup(self) -> float | None:
        """How many times faster the int8 model ran than the fp32 ONNX graph on the check."""
        return self.fp32_seconds / self.int8_seconds if self.int8_seconds > 0 else None


def open_tiles(tiles_dir: str | os.PathLike, meta: ModelMeta) -> TileSet:
    """The tile set of a ``prepare`` output, refused if it does not fit the model."""
    tileset = find_tiles(Path(tiles_dir))
    if list(tileset.bands) != list(meta.bands):
        raise TileError(f"{tiles_dir} holds bands {tileset.bands} but the model reads "
                        f"{list(meta.bands)}; calibrate with the tiles the model was trained on")
    if tileset.tile_size is not None and tileset.tile_size != meta.tile_size:
        raise TileError(f"{tiles_dir} holds {tileset.tile_size} px tiles but the model's tile "
                        f"size is {meta.tile_size}; calibrate with the tiles it was trained on")
    return tileset


def calibration_pairs(tileset: TileSet, count: int, seed: int) -> list[TilePair]:
    """``count`` training tiles drawn with ``seed`` (all of them if there are fewer)."""
    pool = sorted(tileset.split(CALIBRATION_SPLIT), key=lambda p: p.id)
    if len(pool) <= count:
        return pool
    keep = np.sort(np.random.default_rng(seed).choice(len(pool), count, replace=False))
    return [pool[i] for i in keep]


def _normalised(images: np.ndarray, meta: ModelMeta) -> np.ndarray:
    return meta.normalization.normalize_array(images)


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, *, meta: ModelMeta,
                  tiles_dir: str | os.PathLike, count: int = DEFAULT_CALIBRATION_TILES,
                  seed: int = 0, recipe: Recipe = DEFAULT_RECIPE,
                  progress: Callable[[int], None] | None = None) -> Calibration:
    """Write the int8 version of the fp32 ONNX model ``fp32_path`` to ``out_path``.

    Calibrated on training tiles of ``tiles_dir`` (see the module's docstring). The
    metadata of ``out_path`` is not yet set; the caller adds it.
    """
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tileset = open_tiles(tiles_dir, meta)
    pairs = calibration_pairs(tileset, count, seed)
    if not pairs:
        raise TileError(f"{tiles_dir} has no '{CALIBRATION_SPLIT}' tiles to calibrate with")
    log.info("calibrating int8 on %d of %d training tiles of %s (seed %d)", len(pairs),
             len(tileset.split(CALIBRATION_SPLIT)), tiles_dir, seed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = list(pairs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if not self.left:
                return None
            images, _ = load_tiles([self.left.pop(0)], num_bands=len(meta.bands),
                                   num_classes=meta.num_classes)
            if progress is not None:
                progress(1)
            return {"input": _normalised(images, meta)}

    method = {"minmax": CalibrationMethod.MinMax, "tile-mean": CalibrationMethod.MinMax,
              "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[recipe.method]
    extra: dict[str, Any] = {"CalibPercentile": recipe.percentile} if recipe.method == "percentile" else {}
    if recipe.method == "tile-mean":  # all tiles in one pass: ORT averages the per-tile ranges
        extra["CalibMovingAverage"] = True
    chatter = io.StringIO()  # ONNX Runtime's histogram calibrators print their progress
    with tempfile.TemporaryDirectory(prefix="s2pipe-quantize-") as work, contextlib.redirect_stdout(chatter):
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        kept = _fp32_nodes(pre, first=recipe.fp32_first, tail=recipe.fp32_tail)
        quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method,
                        nodes_to_exclude=kept,
                        extra_options=extra)
    if chatter.getvalue().strip():
        log.debug("ONNX Runtime: %s", chatter.getvalue().strip())
    return Calibration(tiles_dir=str(tiles_dir), split=CALIBRATION_SPLIT, seed=seed,
                       available=len(tileset.split(CALIBRATION_SPLIT)), tiles=[p.id for p in pairs],
                       scheme=recipe.scheme(), fp32_layers=kept)


def _fp32_nodes(path: Path, *, first: bool, tail: int = 0) -> list[str]:
    """Names of the nodes kept fp32: those that write the graph's outputs (the class-logit
    convolution), with ``first`` those that read its input (the first convolution), and the
    ``tail`` convolutions before the logits (in graph order, which is topological)."""
    import onnx

    graph = onnx.load(str(path)).graph
    outputs = {o.name for o in graph.output}
    inputs = {i.name for i in graph.input} if first else set()
    kept = [n.name for n in graph.node if outputs & set(n.output) or inputs & set(n.input)]
    convs = [n.name for n in graph.node if n.op_type in ("Conv", "ConvTranspose") and n.name not in kept]
    return kept + (convs[-tail:] if tail else [])


def class_agreement(fp32: Callable[[np.ndarray], np.ndarray], int8: Callable[[np.ndarray], np.ndarray],
                    *, meta: ModelMeta, tileset: TileSet, threshold: float, batch_size: int = 4,
                    progress: Callable[[int], None] | None = None) -> Agreement:
    """Classes of ``int8`` vs ``fp32`` (both: normalised batch -> probabilities) on every
    pixel with data of the validation tiles, plus each one's accuracy on labelled pixels and
    the seconds each took (both timed in turn on the same batches, after one untimed batch
    each, so a busy machine slows both alike)."""
    pairs: Sequence[TilePair] = sorted(tileset.split(CHECK_SPLIT), key=lambda p: p.id)
    if not pairs:
        raise TileError(f"the tile folder has no '{CHECK_SPLIT}' tiles to check the int8 model "
                        "on; use a prepare output with a validation split")
    same = pixels = labelled = right32 = right8 = 0
    seconds = [0.0, 0.0]

    def timed(k: int, model: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = model(x)
        seconds[k] += time.perf_counter() - t
        return out

    for b in range(0, len(pairs), batch_size):
        images, labels = load_tiles(pairs[b:b + batch_size], num_bands=len(meta.bands),
                                    num_classes=meta.num_classes)
        x = _normalised(images, meta)
        if b == 0:  # warm-up: first runs allocate and plan
            fp32(x), int8(x)
        c32 = timed(0, fp32, x).argmax(axis=1) + 1
        c8 = timed(1, int8, x).argmax(axis=1) + 1
        valid = images.any(axis=1)
        same += int(((c32 == c8) & valid).sum())
        pixels += int(valid.sum())
        lab = (labels > 0) & valid
        labelled += int(lab.sum())
        right32 += int(((c32 == labels) & lab).sum())
        right8 += int(((c8 == labels) & lab).sum())
        if progress is not None:
            progress(len(images))
    return Agreement(split=CHECK_SPLIT, tiles=len(pairs), pixels=pixels,
                     agreement=same / pixels if pixels else 1.0, labelled_pixels=labelled,
                     fp32_accuracy=right32 / labelled if labelled else None,
                     int8_accuracy=right8 / labelled if labelled else None, threshold=threshold,
                     fp32_seconds=round(seconds[0], 3), int8_seconds=round(seconds[1], 3))


def describe(calibration: Calibration, agreement: Agreement) -> dict[str, Any]:
    """The JSON written into an int8 model's ``s2pipe_quantization`` metadata."""
    from dataclasses import asdict

    return {"calibration": asdict(calibration), "agreement": asdict(agreement)}
