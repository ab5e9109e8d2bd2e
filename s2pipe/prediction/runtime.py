"""The one way ``predict`` loads a model: a ``.pt`` checkpoint runs in torch, an ``.onnx``
file from ``s2pipe export`` in ONNX Runtime (CPU). Either way the caller gets a runner
(normalised float32 batch -> probabilities, with TTA) and the :class:`ModelMeta` the scene
is checked against.

``--precision`` states what the caller expects: ``fp32`` (a ``.pt`` checkpoint or an fp32
ONNX file) or ``int8`` (an int8 ONNX file). A ``.pt`` checkpoint is not quantised on the
fly: calibration needs training tiles and its quality check validation tiles, so it is
done once by ``s2pipe export --precision int8`` and its result reused by every
``predict``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2pipe.errors import OptionError
from s2pipe.model.checkpoint import ModelMeta
from s2pipe.prediction.options import Precision

log = logging.getLogger(__name__)

ONNX_SUFFIX = ".onnx"


@dataclass
class LoadedModel:
    """A model ready to predict windows, and what it was trained on."""

    runner: Callable[..., np.ndarray]  # (N, bands, t, t) normalised -> (N, classes, t, t)
    meta: ModelMeta
    device: str        # torch device, or "cpu" for ONNX Runtime
    runtime: str       # "torch" or "onnxruntime"
    precision: str     # "fp32" or "int8"


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ONNX_SUFFIX


def load_window_model(path: str | os.PathLike, *, device: str = "auto", tta: str = "none",
                      precision: Precision | None = None) -> LoadedModel:
    """The model at ``path`` (``.pt`` or ``.onnx``) as a window runner with its metadata.

    Raises :class:`OptionError` when ``precision`` or ``device`` does not fit the file, or
    ONNX Runtime is missing for an ``.onnx`` file; :class:`CheckpointError` for a file that
    is not an s2pipe model.
    """
    import torch  # noqa: F401  (loaded before its threads are sized)

    from s2pipe.resources import apply_threads

    path = Path(path)
    if is_onnx(path):
        from s2pipe.model.onnx import open_onnx
        from s2pipe.prediction.inference import OnnxWindowModel

        if (device or "auto").strip().lower() not in ("auto", "cpu"):
            raise OptionError(f"{path} is an ONNX model, run by ONNX Runtime on the CPU; use "
                              "--device cpu (or auto), or the .pt checkpoint on a GPU")
        threads = apply_threads()
        m = open_onnx(path, threads=threads)
        if precision is not None and precision != m.precision:
            raise OptionError(f"{path} is an {m.precision} model but --precision {precision} was "
                              f"asked for; pass a matching model or leave out --precision")
        log.info("%s: %s ONNX model, ONNX Runtime with %d threads", path, m.precision, threads)
        runner = OnnxWindowModel(m.session, tta, input_name=m.input_name, output_name=m.output_name)
        return LoadedModel(runner, m.meta, "cpu", "onnxruntime", m.precision)

    from s2pipe.model.checkpoint import load_checkpoint
    from s2pipe.model.device import resolve_device
    from s2pipe.prediction.inference import WindowModel

    if precision == "int8":
        raise OptionError(
            f"--precision int8 runs an int8 ONNX model, and {path} is a torch checkpoint; "
            f"write the int8 model once with 's2pipe export {path} --precision int8 --tiles "
            "TILES_DIR -o model.int8.onnx' (calibrated on training tiles, checked on "
            "validation tiles), then pass --model model.int8.onnx")
    apply_threads()
    dev = resolve_device(device)
    model, meta = load_checkpoint(path, device=dev)
    return LoadedModel(WindowModel(model, dev, tta), meta, str(dev), "torch", "fp32")
