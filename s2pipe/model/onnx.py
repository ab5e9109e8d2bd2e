"""ONNX models written by ``s2pipe export``: the file format, written and read here.

An s2pipe ONNX file is the U-Net as an ONNX graph (opset :data:`OPSET`): input
``input`` float32 ``(batch, bands, tile, tile)``, the bands normalised as in training
(:mod:`s2pipe.model.normalization`), dynamic batch, fixed tile size; output ``logits``
``(batch, classes, tile, tile)``, channel ``k`` = class value ``k + 1``. The checkpoint's
contract travels in the model's ``metadata_props``:

* ``s2pipe_format``: :data:`FORMAT`;
* ``s2pipe_meta``: :meth:`ModelMeta.to_dict` as JSON (bands, legend, normalisation, tile
  size, architecture, radiometry, training options, metrics, version);
* ``s2pipe_precision``: ``fp32`` or ``int8``;
* ``s2pipe_quantization`` (int8 only): JSON of how it was calibrated and checked.

So ``predict --model model.onnx`` checks a scene against the file exactly as against a
``.pt`` checkpoint. ``onnx`` and ``onnxruntime`` (the ``s2pipe[onnx]`` extra) are imported
inside the functions: s2pipe works without them until an ONNX model is asked for.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2pipe.errors import CheckpointError, InputNotFoundError, OptionError
from s2pipe.model.checkpoint import ModelMeta

log = logging.getLogger(__name__)

FORMAT = "s2pipe-onnx-1"
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "logits"
KEY_FORMAT, KEY_META, KEY_PRECISION, KEY_QUANT = (
    "s2pipe_format", "s2pipe_meta", "s2pipe_precision", "s2pipe_quantization")
INSTALL_HINT = "pip install 's2pipe[onnx]' (onnx and onnxruntime)"


def import_onnxruntime(why: str) -> Any:
    """The ``onnxruntime`` module, or :class:`OptionError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise OptionError(f"{why} needs ONNX Runtime, which is not installed; "
                          f"{INSTALL_HINT}, or use the .pt checkpoint") from None
    return onnxruntime


def import_onnx(why: str) -> Any:
    """The ``onnx`` module, or :class:`OptionError` saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise OptionError(f"{why} needs the onnx package, which is not installed; "
                          f"{INSTALL_HINT}") from None
    return onnx


def write_onnx(model: Any, meta: ModelMeta, path: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Export the torch ``model`` (eval mode, CPU) as fp32 ONNX with ``meta`` to ``path``.

    Uses torch's TorchScript-based exporter (``dynamo=False``; the default before torch
    2.9): it needs only ``onnx`` (the dynamo exporter also needs ``onnxscript``), works
    offline and gives a plain static graph for this convolutional network.
    """
    import torch

    import_onnx("exporting to ONNX")
    path = Path(path)
    t = meta.tile_size
    example = torch.zeros(1, meta.arch.in_channels, t, t)
    legacy: dict[str, Any] = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters \
        else {}
    with warnings.catch_warnings():  # the exporter's deprecation notice and trace warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(model.cpu().eval(), (example,), str(path), **legacy,
                          opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
    set_metadata(path, {KEY_FORMAT: FORMAT, KEY_META: json.dumps(meta.to_dict()),
                        KEY_PRECISION: "fp32"})
    return path


def set_metadata(path: str | os.PathLike, props: dict[str, str]) -> None:
    """Add or replace ``metadata_props`` entries of the ONNX file at ``path`` in place."""
    onnx = import_onnx("writing ONNX metadata")
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


@dataclass
class OnnxModel:
    """An opened s2pipe ONNX file: an ONNX Runtime session and its validated contract."""

    path: Path
    session: Any
    meta: ModelMeta
    precision: str
    quantization: dict[str, Any] = field(default_factory=dict)
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME


def session_options(threads: int) -> Any:
    """ONNX Runtime session options: ``threads`` intra-op threads that sleep when idle,
    sequential graph."""
    ort = import_onnxruntime("running an ONNX model")
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    # Spinning idle threads take the cores predict's reader thread needs: on 2 busy cores
    # an int8 scene ran at 7.7-9.3 windows/s spinning, 11.6-13.9 without.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT's warnings are about its own graph fusions
    return so


def open_onnx(path: str | os.PathLike, *, threads: int = 1) -> OnnxModel:
    """Open an ONNX file written by ``s2pipe export`` on the CPU with ``threads`` threads.

    Raises :class:`OptionError` if ONNX Runtime is not installed, :class:`InputNotFoundError`
    if the file is missing, and :class:`CheckpointError` if it is not a readable ONNX model,
    lacks s2pipe's metadata, or its graph's input does not fit that metadata.
    """
    path = Path(path)
    ort = import_onnxruntime(f"the ONNX model {path}")
    if not path.is_file():
        raise InputNotFoundError(f"ONNX model {path} not found; write one with "
                                 "'s2pipe export best.pt -o model.onnx'")
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind classes for unreadable graphs
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(exc).__name__}); "
                              "export it again with 's2pipe export'") from exc
    props = session.get_modelmeta().custom_metadata_map
    if props.get(KEY_FORMAT) != FORMAT or KEY_META not in props:
        raise CheckpointError(f"{path} has no s2pipe metadata (bands, legend, normalisation); "
                              "predict only runs ONNX files written by "
                              "'s2pipe export best.pt -o model.onnx'")
    try:
        raw = json.loads(props[KEY_META])
        quant = json.loads(props.get(KEY_QUANT, "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its s2pipe metadata is not valid JSON; the file is "
                              "damaged, export it again") from None
    meta = ModelMeta.from_dict(raw, path)
    precision = props.get(KEY_PRECISION, "fp32")
    _check_graph(session, meta, path)
    return OnnxModel(path=path, session=session, meta=meta, precision=precision,
                     quantization=quant if isinstance(quant, dict) else {},
                     input_name=session.get_inputs()[0].name,
                     output_name=session.get_outputs()[0].name)


def _check_graph(session: Any, meta: ModelMeta, path: Path) -> None:
    """The graph must take (batch, bands, tile, tile) and give (batch, classes, tile, tile)."""
    ins, outs = session.get_inputs(), session.get_outputs()
    t = meta.tile_size
    want_in = [len(meta.bands), t, t]
    want_out = [meta.num_classes, t, t]
    if len(ins) != 1 or len(outs) != 1 or len(ins[0].shape) != 4 or list(ins[0].shape[1:]) != want_in \
            or (len(outs[0].shape) == 4 and all(isinstance(d, int) for d in outs[0].shape[1:])
                and list(outs[0].shape[1:]) != want_out):
        shape = ins[0].shape if ins else None
        raise CheckpointError(f"{path}: the graph takes input {shape} but its metadata says "
                              f"(batch, {len(meta.bands)} bands, {t}, {t}) -> {meta.num_classes} "
                              "classes; the file was altered, export it again")
    if "float" not in ins[0].type:
        raise CheckpointError(f"{path}: the graph's input is {ins[0].type}, not float32; "
                              "export it again with 's2pipe export'")
