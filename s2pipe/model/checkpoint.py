"""Self-describing model checkpoints (``best.pt``, ``last.pt``): the train -> predict contract.

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` accepts:
``{"format": FORMAT, "model": state_dict, "meta": {...}, "optimizer": ..., "scheduler": ...,
"extra_state": ...}``. ``meta`` is :class:`ModelMeta` as plain data: everything prediction
needs (bands, legend, normalisation, tile size, architecture, radiometry) plus the
training options, metrics and s2pipe version. It is validated where it is loaded, so a
damaged or foreign file is a :class:`CheckpointError` naming what is wrong. Checkpoints
written by s2pipe 0.1.0 (the same dict) load unchanged.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s2pipe import __version__
from s2pipe.errors import CheckpointError, InputNotFoundError
from s2pipe.legend import LandCoverClass, legend_from_list, legend_to_list
from s2pipe.model.normalization import Normalization
from s2pipe.model.origin import WeightsOrigin
from s2pipe.model.presets import ENCODER_NAMES
from s2pipe.model.unet import Arch
from s2pipe.outputs import atomic_output
from s2pipe.provenance import Radiometry

log = logging.getLogger(__name__)

FORMAT = "s2pipe-checkpoint-1"
ENCODER_ARCH = "encoder-unet"  # s2pipe.model.encoder_unet.ARCH_NAME, without importing it


@dataclass(frozen=True)
class ModelMeta:
    """What a trained model needs to be used, and how it was made."""

    bands: tuple[str, ...]
    legend: tuple[LandCoverClass, ...]
    normalization: Normalization
    tile_size: int
    arch: Arch
    radiometry: Radiometry           # a JSON object is taken as its record
    train_options: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    s2pipe_version: str = __version__
    origin: WeightsOrigin | None = None  # pretrained encoder or --init checkpoint, if any

    def __post_init__(self) -> None:
        if not isinstance(self.radiometry, Radiometry):
            object.__setattr__(self, "radiometry", Radiometry.from_dict(self.radiometry))

    @property
    def num_classes(self) -> int:
        return self.arch.num_classes

    def with_metrics(self, metrics: dict[str, Any]) -> ModelMeta:
        return replace(self, metrics=metrics)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that ``torch.load(weights_only=True)`` reads back (for the study's
        U-Net from random weights, the same keys as in s2pipe 0.1.0)."""
        arch: dict[str, Any] = {"name": self.arch.name, "in_channels": self.arch.in_channels,
                                "num_classes": self.arch.num_classes, "filters": self.arch.filters}
        if self.arch.encoder:
            arch["encoder"] = self.arch.encoder
        d = {"bands": list(self.bands), "legend": legend_to_list(self.legend),
             "normalization": self.normalization.to_dict(), "tile_size": self.tile_size,
             "arch": arch, "radiometry": self.radiometry.to_dict(), "train_options": dict(self.train_options),
             "metrics": dict(self.metrics), "s2pipe_version": self.s2pipe_version}
        if self.origin is not None:
            d["origin"] = self.origin.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str | os.PathLike) -> ModelMeta:
        """Validate ``d``; :class:`CheckpointError` names the first field that is wrong."""
        return _parse_meta(d, str(where))


def _need(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise CheckpointError(f"{where}: its metadata has no '{key}'; retrain with 's2pipe train'")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"{where}: '{key}' is {type(value).__name__} {value!r:.60}, not "
                              f"{getattr(kind, '__name__', kind)}; the file is damaged or not "
                              "written by s2pipe")
    return value


def _parse_meta(d: Any, where: str) -> ModelMeta:
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} lacks its metadata; retrain with 's2pipe train'")
    bands = tuple(str(b) for b in _need(d, "bands", list, where))
    items = _need(d, "legend", list, where)
    try:
        legend = legend_from_list(items)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{where}: 'legend' is not a list of classes with value, name "
                              "and color") from None
    norm = _need(d, "normalization", dict, where)
    mean, std = _need(norm, "mean", list, where), _need(norm, "std", list, where)
    if len(mean) != len(bands) or len(std) != len(bands) or min(float(s) for s in std) <= 0:
        raise CheckpointError(f"{where} holds no usable normalisation for {len(bands)} bands; "
                              "retrain with 's2pipe train'")
    tile = _need(d, "tile_size", int, where)
    arch = _parse_arch(_need(d, "arch", dict, where), where)
    if tile < arch.stride or tile % arch.stride:
        raise CheckpointError(f"{where} has tile size {tile}, not a multiple of {arch.stride}")
    if arch.in_channels != len(bands) or arch.num_classes < max(c.value for c in legend):
        raise CheckpointError(f"{where}: the network ({arch.in_channels} bands, {arch.num_classes} "
                              f"classes) does not fit its bands ({len(bands)}) and legend; "
                              "the file is damaged")
    return ModelMeta(bands=bands, legend=legend,
                     normalization=Normalization(tuple(map(float, mean)), tuple(map(float, std))),
                     tile_size=tile, arch=arch, radiometry=Radiometry.from_dict(_need(d, "radiometry", dict, where)),
                     train_options=dict(d.get("train_options") or {}),
                     metrics=dict(d.get("metrics") or {}),
                     s2pipe_version=str(d.get("s2pipe_version", "")),
                     origin=_parse_origin(d.get("origin"), where))


def _parse_arch(a: dict[str, Any], where: str) -> Arch:
    arch = Arch(str(_need(a, "name", str, where)), _need(a, "in_channels", int, where),
                _need(a, "num_classes", int, where), _need(a, "filters", int, where),
                str(a.get("encoder") or ""))
    if (arch.name, bool(arch.encoder)) not in (("unet", False), (ENCODER_ARCH, True)) \
            or (arch.encoder and arch.encoder not in ENCODER_NAMES):
        raise CheckpointError(f"{where} holds an unknown architecture {arch.name!r}"
                              + (f" (encoder {arch.encoder!r})" if arch.encoder else "")
                              + "; it needs a newer s2pipe, or retrain")
    return arch


def _parse_origin(o: Any, where: str) -> WeightsOrigin | None:
    if o is None:
        return None
    try:
        return WeightsOrigin.from_dict(o)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{where}: 'origin' (where its weights came from) is not readable; "
                              "the file is damaged") from None


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata, weights and (``last.pt``) the training state."""

    meta: ModelMeta
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    extra_state: dict[str, Any] | None = None

    @property
    def resumable(self) -> bool:
        return None not in (self.optimizer, self.scheduler, self.extra_state)


def _bare(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, meta: ModelMeta,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None,
                    extra_state: dict[str, Any] | None = None) -> Path:
    """Write the model weights and ``meta`` (plus optional training state) atomically.

    An existing file at ``path`` is replaced (checkpoints are rewritten every epoch; the
    caller decides whether the run folder may be overwritten).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in _bare(model).state_dict().items()}
    payload: dict[str, Any] = {"format": FORMAT, "model": state, "meta": meta.to_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if extra_state is not None:
        payload["extra_state"] = extra_state
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as f:
        # a file object, not the path: torch names the zip's root folder after a path, and
        # the temporary name (pid, random) would make two identical runs differ byte for byte
        torch.save(payload, f)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, *,
                    device: str | torch.device = "cpu") -> Checkpoint:
    """The checkpoint at ``path``, its metadata validated.

    Raises :class:`InputNotFoundError` if missing, :class:`CheckpointError` if the file is
    corrupt, not a torch file, not written by s2pipe, or its metadata is incomplete.
    Files are read with ``weights_only=True``: a crafted pickle is refused, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint {path} not found; pass a best.pt or last.pt "
                                 "written by 's2pipe train'")
    try:
        with warnings.catch_warnings():  # a plain pickle of protocol > 2 (never s2pipe's): refused or
            # read anyway, torch's two-line warning about its protocol would only precede the Error line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable s2pipe checkpoint "
                              f"({type(exc).__name__}); retrain or pass another file") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by 's2pipe train' (no {FORMAT} marker); "
                              "pass a best.pt or last.pt from s2pipe")
    if not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{path} holds no weights; the file is damaged")
    return Checkpoint(meta=ModelMeta.from_dict(payload.get("meta"), path), weights=payload["model"],
                      optimizer=payload.get("optimizer"), scheduler=payload.get("scheduler"),
                      extra_state=payload.get("extra_state"))


def load_checkpoint(path: str | os.PathLike, *,
                    device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """The model (in eval mode, on ``device``) and its metadata."""
    ckpt = read_checkpoint(path, device=device)
    model = ckpt.meta.arch.build()
    try:
        model.load_state_dict(ckpt.weights)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the architecture {ckpt.meta.arch} "
                              f"({type(exc).__name__}); the file is damaged") from exc
    model.to(device).eval()
    return model, ckpt.meta
