"""The fast model beside a training run: ``MODEL_DIR/best.int8.onnx`` and its record.

At the end of ``train``, with the tiles at hand, :func:`write_int8_beside` quantises
``best.pt`` (calibrated on training tiles, checked on validation tiles, see
:mod:`s2pipe.export.quantize`), trying :data:`RECIPES` in order, fastest first, and keeps
the first that agrees with fp32 on at least ``min_agreement`` of the val pixels. Whatever
happens is recorded in ``MODEL_DIR/int8.json`` (:class:`Int8Record`); ``predict --model
MODEL_DIR`` reads it (:mod:`s2pipe.export.choice`) to run the int8 model only where it
passed. A refused model leaves no ``best.int8.onnx``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s2pipe.export.quantize import Recipe
from s2pipe.outputs import atomic_output
from s2pipe.prediction.options import DEFAULT_CALIBRATION_TILES, DEFAULT_MIN_AGREEMENT

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "best.pt"
INT8_NAME = "best.int8.onnx"
RECORD_NAME = "int8.json"
#: Tried in order until one passes, the fastest first (bench/bench_int8_levers.py,
#: bench/RESULTS.md, 2026-12-03): the ranges the mean of each calibration tile's own min and
#: max (+1.0 point over MinMax on an early 16-filter model, +0.3 on a 32-filter one, at
#: all-int8 speed), then the same with the first convolution (which reads the 12 bands) kept
#: fp32 (+0.2 more, at a speed cost). Keeping other single layers fp32 gained <= 0.2 points.
RECIPES: tuple[Recipe, ...] = (Recipe("tile-mean"), Recipe("tile-mean", fp32_first=True))
#: An int8 model is kept only if it ran more than this many times as fast as the fp32 ONNX
#: graph on the agreement check (both timed in turn on the same val tiles).
MIN_SPEEDUP = 1.0


@dataclass
class Int8Record:
    """``int8.json``: whether ``best.int8.onnx`` passed its check, and every try."""

    passed: bool
    model: str | None                 # file name in the folder, None when refused
    agreement: float | None           # of the kept model, or the best refused one
    min_agreement: float
    recipe: str | None                # Recipe.name of the kept model
    scheme: str | None
    tries: list[dict[str, Any]] = field(default_factory=list)  # recipe, agreement, speedup, seconds
    reason: str = ""
    speedup: float | None = None      # kept model: times faster than the fp32 ONNX graph on the check
    fp32_layers: list[str] = field(default_factory=list)  # kept model: the convolutions left fp32

    def summary(self) -> str:
        if self.passed:
            fast = f", {self.speedup:.1f}x as fast as fp32 ONNX" if self.speedup else ""
            return (f"int8 model {self.model}: agrees with fp32 on {100 * (self.agreement or 0):.2f}% of "
                    f"the val pixels ({self.recipe}{fast}); predict --model uses it on the CPU")
        return f"no int8 model: {self.reason}; predict --model uses best.pt (fp32)"


def read_record(model_dir: str | os.PathLike) -> Int8Record | None:
    """The folder's ``int8.json``, or None where there is none (or it cannot be read)."""
    path = Path(model_dir) / RECORD_NAME
    try:
        return Int8Record(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def record_of_model(path: str | os.PathLike) -> Int8Record | None:
    """The record an int8 model written by ``s2pipe export`` carries in its metadata (for a
    folder without ``int8.json``); None where it has none."""
    from s2pipe.model.onnx import KEY_QUANT, import_onnx

    try:
        model = import_onnx("reading an int8 model's metadata").load(str(path), load_external_data=False)
        quant = json.loads({p.key: p.value for p in model.metadata_props}[KEY_QUANT])
        agreement, threshold = float(quant["agreement"]["agreement"]), float(quant["agreement"]["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fp32_s, int8_s = quant["agreement"].get("fp32_seconds") or 0, quant["agreement"].get("int8_seconds") or 0
    speedup = fp32_s / int8_s if fp32_s and int8_s else None  # models exported before it was timed: None
    ok = agreement >= DEFAULT_MIN_AGREEMENT and (speedup is None or speedup > MIN_SPEEDUP)
    reason = "" if ok else f"its agreement {100 * agreement:.2f}% is below {100 * DEFAULT_MIN_AGREEMENT:g}%" \
        if agreement < DEFAULT_MIN_AGREEMENT else f"it ran only {speedup:.2f}x as fast as fp32 ONNX"
    return Int8Record(ok, Path(path).name, agreement, threshold, None, quant.get("calibration", {}).get("scheme"),
                      reason=reason, speedup=speedup)


def _write_record(model_dir: Path, record: Int8Record) -> None:
    with atomic_output(model_dir / RECORD_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")


def write_int8_beside(model_dir: str | os.PathLike, tiles_dir: str | os.PathLike, *,
                      min_agreement: float = DEFAULT_MIN_AGREEMENT,
                      calibration_tiles: int = DEFAULT_CALIBRATION_TILES, seed: int = 0,
                      recipes: tuple[Recipe, ...] = RECIPES, min_speedup: float = MIN_SPEEDUP,
                      progress: Callable[[int], None] | None = None) -> Int8Record:
    """Write ``best.int8.onnx`` beside ``model_dir/best.pt`` if one of ``recipes`` passes,
    and ``int8.json`` either way; the record. Raises only for a missing ``best.pt``.

    A recipe passes where its classes agree with fp32 on at least ``min_agreement`` of the
    val pixels and it ran more than ``min_speedup`` times as fast as the fp32 ONNX graph on
    that check. The recipes are ordered fastest first: one that agrees but is too slow ends
    the search (the later ones keep more layers fp32)."""
    from s2pipe.errors import S2PipeError
    from s2pipe.export.engine import ExportOptions, Int8Refused, export_model

    model_dir = Path(model_dir)
    checkpoint, out = model_dir / CHECKPOINT_NAME, model_dir / INT8_NAME
    if out.exists():
        out.unlink()  # a model of earlier weights must not outlive its check
    tries: list[dict[str, Any]] = []
    best: float | None = None
    reason = ""
    for recipe in recipes:
        options = ExportOptions(precision="int8", tiles_dir=Path(tiles_dir), calibration_tiles=calibration_tiles,
                                seed=seed, min_agreement=min_agreement, recipe=recipe, overwrite=True)
        try:
            result = export_model(checkpoint, out, options, progress=progress)
        except Int8Refused as refused:
            a = refused.agreement.agreement
            tries.append({"recipe": recipe.name, "agreement": a, "passed": False,
                          "speedup": round(refused.agreement.speedup or 0.0, 2)})
            best = a if best is None else max(best, a)
            reason = (f"int8 agrees with fp32 on at most {100 * best:.2f}% of the val pixels "
                      f"(< {100 * min_agreement:g}%)")
            log.info("int8 (%s): %.2f%% agreement, refused", recipe.name, 100 * a)
            continue
        except S2PipeError as exc:  # no val tiles, tiles that do not fit: no int8, say why
            reason = str(exc)
            tries.append({"recipe": recipe.name, "error": reason, "passed": False})
            break
        assert result.agreement is not None and result.calibration is not None
        a, speedup = result.agreement.agreement, result.agreement.speedup or 0.0
        fast = speedup > min_speedup
        tries.append({"recipe": recipe.name, "agreement": a, "passed": fast, "speedup": round(speedup, 2),
                      "seconds": round(result.seconds, 1)})
        if not fast:
            out.unlink()
            best = a if best is None else max(best, a)
            reason = (f"int8 ({recipe.name}) agrees on {100 * a:.2f}% but ran only {speedup:.2f}x as fast as "
                      f"fp32 ONNX (needs > {min_speedup:g}x)")
            log.info("int8 (%s): %s", recipe.name, reason)
            break
        record = Int8Record(True, INT8_NAME, a, min_agreement, recipe.name, result.calibration.scheme, tries,
                            speedup=round(speedup, 2), fp32_layers=result.calibration.fp32_layers)
        _write_record(model_dir, record)
        return record
    record = Int8Record(False, None, best, min_agreement, None, None, tries, reason)
    _write_record(model_dir, record)
    return record
