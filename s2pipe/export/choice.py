"""Which model of a training folder ``predict --model MODEL_DIR`` runs, and why.

A folder from ``train`` holds ``best.pt`` (torch fp32) and, where it passed its check
against fp32 on the validation tiles (agreement, and faster than the fp32 ONNX graph),
``best.int8.onnx`` (:mod:`s2pipe.export.beside`).
The fastest that fits is chosen: the int8 model on the CPU, ``best.pt`` on a GPU, with
``--precision fp32`` (the exact torch path), or where no int8 model passed. A file is
taken as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from s2pipe.errors import InputNotFoundError, OptionError
from s2pipe.export.beside import CHECKPOINT_NAME, INT8_NAME, RECORD_NAME, read_record, record_of_model


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    why: str   # one line for stderr; empty when a file was given


def choose_model(model: str | os.PathLike, *, precision: str | None = None,
                 device: str = "cpu") -> ModelChoice:
    """The model file to run for ``model`` (a file, or a ``train`` folder) on ``device``
    (a resolved torch device name). Raises :class:`InputNotFoundError` for a folder without
    ``best.pt``, :class:`OptionError` for ``--precision int8`` where no int8 model passed."""
    model = Path(model)
    if not model.is_dir():
        return ModelChoice(model, "")
    checkpoint, int8 = model / CHECKPOINT_NAME, model / INT8_NAME
    if not checkpoint.is_file():
        raise InputNotFoundError(f"{model} holds no {CHECKPOINT_NAME}; give the folder 's2pipe train' "
                                 "wrote (-o), or a model file")
    record = read_record(model)
    if record is None and int8.is_file():  # written by 's2pipe export' into the folder
        record = record_of_model(int8)
    # passed (write_int8_beside, record_of_model): agreed >= the threshold and ran faster than
    # the fp32 ONNX graph on the check
    passed = record is not None and record.passed and int8.is_file()
    if precision == "fp32":
        return ModelChoice(checkpoint, "fp32 torch checkpoint (--precision fp32)")
    if not device.startswith("cpu"):
        if precision == "int8":
            raise OptionError(f"--precision int8 runs ONNX Runtime on the CPU, not on {device}; use --device cpu")
        return ModelChoice(checkpoint, f"fp32 torch checkpoint on {device}")
    if passed:
        assert record is not None
        return ModelChoice(int8, f"int8 ONNX, agrees with fp32 on {100 * (record.agreement or 0):.2f}% of the "
                                 "val pixels; --precision fp32 runs best.pt")
    why = record.reason if record is not None else f"no {RECORD_NAME} (trained before int8 models were written)"
    if precision == "int8":
        raise OptionError(f"{model} has no int8 model that passed its check ({why}); leave out --precision, "
                          f"or write one with 's2pipe export {checkpoint} --precision int8 --tiles TILES_DIR'")
    return ModelChoice(checkpoint, f"fp32 torch checkpoint ({why})")
