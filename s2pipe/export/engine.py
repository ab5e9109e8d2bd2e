"""The ``export`` engine: a checkpoint to an ONNX model, fp32 or int8, with its contract.

fp32: the U-Net as ONNX (:mod:`s2pipe.model.onnx`), checked against torch on a random
batch. int8: that fp32 graph statically quantised (:mod:`s2pipe.export.quantize`) on
training tiles of a ``prepare`` output, then compared with the fp32 graph on its
validation tiles; below ``min_agreement`` nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2pipe.errors import CheckpointError, OptionError
from s2pipe.export.quantize import DEFAULT_RECIPE, Agreement, Calibration, Recipe
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.prediction.options import (
    DEFAULT_CALIBRATION_TILES,
    DEFAULT_MIN_AGREEMENT,
    PRECISION_CHOICES,
    Precision,
)

log = logging.getLogger(__name__)

CHECK_TOLERANCE = 1e-4  # largest |ONNX - torch| logit accepted without a warning


@dataclass(frozen=True)
class ExportOptions:
    """How a checkpoint is exported; the options that need one another are checked here,
    the one place (the CLI shows them as usage errors)."""

    precision: Precision = "fp32"
    tiles_dir: Path | None = None       # int8: the prepare output the model was trained on
    calibration_tiles: int = DEFAULT_CALIBRATION_TILES
    seed: int = 0
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    batch_size: int = 4
    overwrite: bool = False
    recipe: Recipe = DEFAULT_RECIPE   # int8: calibration method, layers kept fp32

    def __post_init__(self) -> None:
        if self.precision not in PRECISION_CHOICES:
            raise OptionError(f"--precision {self.precision!r} is unknown; use one of {', '.join(PRECISION_CHOICES)}")
        if self.precision == "int8" and self.tiles_dir is None:
            raise OptionError("--precision int8 needs --tiles TILES_DIR, the prepare output the model "
                              "was trained on (its train tiles calibrate, its val tiles check the model)")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise OptionError(f"--min-agreement {self.min_agreement} must be between 0 and 1")
        if self.calibration_tiles < 1:
            raise OptionError(f"--calibration-tiles {self.calibration_tiles}: give at least 1")


class Int8Refused(CheckpointError):
    """An int8 model below ``min_agreement``; nothing written. ``agreement`` says by how much."""

    def __init__(self, message: str, agreement: Agreement) -> None:
        super().__init__(message)
        self.agreement = agreement


#: What the refusal suggests, measured (bench/bench_int8_levers.py, bench/RESULTS.md,
#: 2026-12-03): more or augmented calibration tiles, percentile, entropy or MSE ranges,
#: per-layer fp32, bias correction and cross-layer equalisation each gained at most ~0.2
#: points over the default; 16-bit activations agreed >= 99% but ran slower than fp32 ONNX;
#: nearly all the pixels that differ are ones the fp32 model itself barely decides (top-2
#: probability margin < 0.1).
REFUSAL_ADVICE = ("Nearly all such pixels are ones the fp32 model barely decides; use the fp32 "
                  "model (the .pt checkpoint, or predict --precision fp32), or accept int8 with a "
                  "lower --min-agreement")


@dataclass
class ExportResult:
    """What ``export`` wrote and measured."""

    checkpoint: Path
    output: Path
    precision: str
    opset: int
    tile_size: int
    bands: list[str]
    size_mb: float
    max_abs_diff: float          # |fp32 ONNX - torch| logits on a random batch
    seconds: float
    calibration: Calibration | None = None
    agreement: Agreement | None = None

    def summary(self) -> str:
        text = (f"{self.output}: {self.precision} ONNX (opset {self.opset}), input (batch, "
                f"{len(self.bands)}, {self.tile_size}, {self.tile_size}), {self.size_mb:.1f} MB; "
                f"fp32 graph vs torch: max |diff| {self.max_abs_diff:.1e}")
        if self.calibration is not None and self.agreement is not None:
            a = self.agreement
            acc = "" if a.fp32_accuracy is None or a.int8_accuracy is None else \
                f"; accuracy on labelled pixels fp32 {a.fp32_accuracy:.4f}, int8 {a.int8_accuracy:.4f}"
            text += (f"\ncalibrated on {len(self.calibration.tiles)} of {self.calibration.available} "
                     f"train tiles (seed {self.calibration.seed}); int8 agrees with fp32 on "
                     f"{100 * a.agreement:.2f}% of {a.pixels} pixels of {a.tiles} val tiles{acc}")
            if a.speedup:
                text += f"; on that check it ran {a.speedup:.2f}x as fast as the fp32 ONNX graph"
        return text


def _max_abs_diff(model: object, onnx_path: Path, tile: int, bands: int, threads: int) -> float:
    """Largest |ONNX Runtime - torch| logit on a seeded random normal batch of 2."""
    import torch

    from s2pipe.model.onnx import open_onnx

    x = np.random.default_rng(0).normal(size=(2, bands, tile, tile)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()  # type: ignore[operator]
    m = open_onnx(onnx_path, threads=threads)
    got = m.session.run([m.output_name], {m.input_name: x})[0]
    return float(np.abs(got - want).max())


def export_model(checkpoint: str | os.PathLike, out: str | os.PathLike,
                 options: ExportOptions = ExportOptions(), *,
                 progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write ``checkpoint`` (a ``.pt`` from ``train``) as an ONNX model to ``out``.

    ``options.precision="int8"`` needs ``tiles_dir``, the ``prepare`` output the model was
    trained on: ``calibration_tiles`` of its train tiles (drawn with ``seed``) calibrate it,
    and its val tiles check it; if the int8 classes agree with fp32 on less than
    ``min_agreement`` of the pixels, :class:`CheckpointError` is raised and nothing is
    written. ``progress`` is called with the number of tiles done.
    """
    from s2pipe.export.quantize import class_agreement, describe, open_tiles, quantize_onnx
    from s2pipe.model.checkpoint import load_checkpoint
    from s2pipe.model.onnx import (
        FORMAT,
        KEY_FORMAT,
        KEY_META,
        KEY_PRECISION,
        KEY_QUANT,
        OPSET,
        open_onnx,
        set_metadata,
        write_onnx,
    )
    from s2pipe.prediction.inference import OnnxWindowModel
    from s2pipe.resources import apply_threads

    start = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out)
    o = options
    precision, tiles_dir, overwrite, min_agreement = o.precision, o.tiles_dir, o.overwrite, o.min_agreement
    check_writable(out, overwrite=overwrite)
    model, meta = load_checkpoint(checkpoint, device="cpu")
    threads = apply_threads()
    calibration = agreement = None
    with tempfile.TemporaryDirectory(prefix="s2pipe-export-") as work, \
            atomic_output(out, overwrite=overwrite) as tmp:
        fp32 = write_onnx(model, meta, Path(work) / "fp32.onnx")
        diff = _max_abs_diff(model, fp32, meta.tile_size, len(meta.bands), threads)
        if diff > CHECK_TOLERANCE:
            log.warning("the ONNX graph differs from torch by up to %.2e (> %.0e)", diff, CHECK_TOLERANCE)
        if precision == "fp32":
            shutil.copyfile(fp32, tmp)
        else:
            assert tiles_dir is not None
            tileset = open_tiles(tiles_dir, meta)
            calibration = quantize_onnx(fp32, tmp, meta=meta, tiles_dir=tiles_dir,
                                        count=o.calibration_tiles, seed=o.seed, recipe=o.recipe,
                                        progress=progress)
            ref = open_onnx(fp32, threads=threads)
            # the whole contract again: the quantiser need not keep metadata_props
            set_metadata(tmp, {KEY_FORMAT: FORMAT, KEY_META: json.dumps(meta.to_dict()),
                               KEY_PRECISION: "int8"})
            q = open_onnx(tmp, threads=threads)
            agreement = class_agreement(OnnxWindowModel(ref.session), OnnxWindowModel(q.session),
                                        meta=meta, tileset=tileset, threshold=min_agreement,
                                        batch_size=o.batch_size, progress=progress)
            if agreement.agreement < min_agreement:
                raise Int8Refused(
                    f"the int8 model agrees with fp32 on only {100 * agreement.agreement:.2f}% of "
                    f"the {agreement.pixels} pixels of {agreement.tiles} val tiles (< "
                    f"{100 * min_agreement:g}%); nothing written. {REFUSAL_ADVICE}", agreement)
            set_metadata(tmp, {KEY_QUANT: json.dumps(describe(calibration, agreement))})
        size_mb = tmp.stat().st_size / 2**20
    return ExportResult(checkpoint=checkpoint, output=out, precision=precision, opset=OPSET,
                        tile_size=meta.tile_size, bands=list(meta.bands), size_mb=size_mb,
                        max_abs_diff=diff, seconds=time.perf_counter() - start,
                        calibration=calibration, agreement=agreement)
