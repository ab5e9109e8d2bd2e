"""Choosing the torch device: ``auto`` prefers CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import logging

import torch

from s2pipe.errors import OptionError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for ``name`` (auto, cpu, cuda, cuda:N, mps).

    Raises :class:`OptionError` for a name torch does not know or a device this
    machine does not have.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        else:
            device = torch.device("cpu")
        log.debug("device auto -> %s", device)
        return device
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise OptionError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"device {name!r} does not exist: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
        return device
    if device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise OptionError(f"device {name!r} asked for but MPS is not available; use --device cpu")
        return device
    raise OptionError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
