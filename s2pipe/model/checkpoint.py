"""Self-describing model checkpoints (``best.pt``, ``last.pt``).

A checkpoint is a plain dict that ``torch.load(weights_only=True)`` accepts:
``{"format": FORMAT, "model": state_dict, "meta": {...}, "optimizer": ..., "scheduler": ...,
"extra_state": ...}``. ``meta`` carries everything prediction needs: ``bands``,
``legend``, ``normalization`` {"mean", "std"} of DN = 10000 * reflectance, ``tile_size``,
``arch`` {"name", "in_channels", "num_classes", "filters"}, ``radiometry``,
``train_options``, ``metrics`` and ``s2pipe_version``.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s2pipe import __version__
from s2pipe.errors import CheckpointError, InputNotFoundError
from s2pipe.model.unet import UNet
from s2pipe.outputs import atomic_output

log = logging.getLogger(__name__)

FORMAT = "s2pipe-checkpoint-1"
META_KEYS = ("bands", "legend", "normalization", "tile_size", "arch", "radiometry",
             "train_options", "metrics", "s2pipe_version")


def _bare(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, meta: dict[str, Any],
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None,
                    extra_state: dict[str, Any] | None = None) -> Path:
    """Write the model weights and ``meta`` (plus optional training state) atomically.

    An existing file at ``path`` is replaced (checkpoints are rewritten every epoch; the
    caller decides whether the run folder may be overwritten).
    """
    meta = dict(meta)
    meta.setdefault("s2pipe_version", __version__)
    missing = [k for k in ("bands", "legend", "normalization", "tile_size", "arch") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {missing}")
    state = {k: v.detach().cpu().contiguous() for k, v in _bare(model).state_dict().items()}
    payload: dict[str, Any] = {"format": FORMAT, "model": state, "meta": meta}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if extra_state is not None:
        payload["extra_state"] = extra_state
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked to be an s2pipe checkpoint.

    Raises :class:`InputNotFoundError` if missing, :class:`CheckpointError` if the file is
    corrupt, not a torch file, or not written by s2pipe.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint {path} not found; pass a best.pt or last.pt "
                                 "written by 's2pipe train'")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable s2pipe checkpoint "
                              f"({type(exc).__name__}); retrain or pass another file") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by 's2pipe train' (no {FORMAT} marker); "
                              "pass a best.pt or last.pt from s2pipe")
    meta = payload.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("arch"), dict):
        raise CheckpointError(f"{path} lacks its metadata; retrain with 's2pipe train'")
    return payload


def load_checkpoint(path: str | os.PathLike, *,
                    device: str | torch.device = "cpu") -> tuple[UNet, dict[str, Any]]:
    """The model (in eval mode, on ``device``) and its ``meta`` dict."""
    payload = read_checkpoint(path, device=device)
    meta = payload["meta"]
    arch = meta["arch"]
    if arch.get("name") != "unet":
        raise CheckpointError(f"{path} holds an unknown architecture {arch.get('name')!r}")
    try:
        model = UNet(in_channels=int(arch["in_channels"]), num_classes=int(arch["num_classes"]),
                     filters=int(arch["filters"]))
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: weights do not match the architecture {arch} "
                              f"({type(exc).__name__}); the file is damaged") from exc
    model.to(device).eval()
    return model, meta
