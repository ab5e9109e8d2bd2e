"""Pretrained encoder weights from a local file, mapped onto the tiles' bands.

A file is a torch state dict of the backbone in torchvision/timm key layout (``conv1``,
``layer1`` ... for ResNets, ``conv_stem``, ``blocks`` for EfficientNets), bare or under
``state_dict``/``model``, keys optionally prefixed ``module.``/``backbone.``/``model.``; a
U-Net state dict (an s2pipe checkpoint, segmentation-models-pytorch) gives its
``encoder.*`` keys. Classifier keys (``fc``, ``classifier``, ``conv_head``) are ignored.
It is read with ``weights_only=True``: a pickle that would run code is refused. Nothing
is downloaded.

Bands: the first convolution's input channels follow the preset's (or the given) band
order; the channels of the tiles' bands are copied unchanged, those of bands the tiles
lack (B10 of L1C weights) are dropped, and tiles' bands the file lacks start with zero
weights, so the pretrained response is unchanged at the start and they are learned.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from s2pipe.errors import CheckpointError, InputNotFoundError
from s2pipe.model.encoder_unet import ENCODERS, EncoderUNet, build_encoder
from s2pipe.model.normalization import Normalization
from s2pipe.model.origin import WeightsOrigin, file_sha256
from s2pipe.model.presets import WeightsPreset

log = logging.getLogger(__name__)

HEAD_PREFIXES = ("fc.", "classifier.", "conv_head.", "bn2.", "head.")
WRAPPERS = ("state_dict", "model", "model_state_dict")
PREFIXES = ("module.", "backbone.", "model.")


@dataclass
class LoadedWeights:
    """What :func:`load_encoder_weights` put into the encoder, and how inputs are normalised."""

    origin: WeightsOrigin
    normalization: Normalization | None  # None: the training split's statistics
    ignored_keys: tuple[str, ...]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The backbone's tensors in ``path``, keys as torchvision/timm name them."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"encoder weights {path} not found; download the file first "
                                 "(s2pipe never downloads weights)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a torch weights file that loads without running "
                              f"code ({type(exc).__name__}); pass a state dict (.pt/.pth)") from exc
    for key in WRAPPERS:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not payload or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise CheckpointError(f"{path} holds no state dict of tensors; pass the backbone's "
                              "weights as saved by torchvision, timm or TorchGeo")
    sd: dict[str, torch.Tensor] = payload
    if any(k.startswith("encoder.") for k in sd):
        sd = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _layout(name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        enc = build_encoder(name, 3)
    first = f"{enc.first_conv}.weight"
    return {k: (tuple(v.shape) if k != first else (v.shape[0], -1, *v.shape[2:]))
            for k, v in enc.state_dict().items()}


def guess_encoder(keys: Sequence[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The encoder whose keys and shapes (first convolution's bands aside) these are."""
    for name in ENCODERS:
        layout = _layout(name)
        if set(layout) == set(keys) and all(
                s == shapes[k] or (-1 in s and s[0] == shapes[k][0] and s[2:] == shapes[k][2:])
                for k, s in layout.items()):
            return name
    return None


def load_encoder_weights(model: EncoderUNet, path: str | os.PathLike, *, preset: WeightsPreset,
                         bands: Sequence[str] | None, tile_bands: Sequence[str]) -> LoadedWeights:
    """Load the file's backbone into ``model.encoder``, its first convolution mapped from the
    file's bands (``bands``, else the preset's) onto ``tile_bands``.

    Raises :class:`CheckpointError` naming the first thing that does not fit: keys of
    another backbone, a tensor of another shape, a band count other than the file's.
    """
    path = Path(path)
    sd = read_state_dict(path)
    ignored = tuple(k for k in sd if k.startswith(HEAD_PREFIXES) and not k.startswith("blocks."))
    sd = {k: v for k, v in sd.items() if k not in ignored}
    enc, name = model.encoder, model.encoder_name
    want = enc.state_dict()
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        guess = guess_encoder(list(sd), {k: tuple(v.shape) for k, v in sd.items()})
        hint = f"it holds {guess} weights: pass --encoder {guess}" if guess and guess != name else \
            "pass the state dict of that backbone (torchvision/timm key layout)"
        what = f"lacks {len(missing)} of the encoder's keys (e.g. {missing[0]})" if missing else \
            f"has {len(extra)} keys the encoder has not (e.g. {extra[0]})"
        raise CheckpointError(f"{path} is not a {name} encoder: it {what}; {hint}")
    first = f"{enc.first_conv}.weight"
    for k, v in want.items():
        got = sd[k]
        if k != first and tuple(got.shape) != tuple(v.shape):
            raise CheckpointError(f"{path}: {k} is {tuple(got.shape)} in the file but "
                                  f"{tuple(v.shape)} in a {name} encoder; not {name} weights")
    bad = next((k for k in want if k.endswith("running_var") and bool((sd[k] < 0).any())), None)
    if bad is not None:
        raise CheckpointError(f"{path}: {bad} holds negative variances; not trained weights")
    file_bands = tuple(bands) if bands else preset.bands
    w = sd[first]
    if w.dim() != 4 or w.shape[0] != want[first].shape[0] or w.shape[2:] != want[first].shape[2:]:
        raise CheckpointError(f"{path}: {first} is {tuple(w.shape)}, not a {name} first convolution")
    if w.shape[1] != len(file_bands):
        raise CheckpointError(f"{path}: its first convolution ({first}) takes {w.shape[1]} bands "
                              f"but {'--encoder-bands' if bands else 'preset ' + preset.name} names "
                              f"{len(file_bands)} ({','.join(file_bands)}); give the file's band "
                              "order with --encoder-bands")
    common = [b for b in tile_bands if b in file_bands]
    if not common:
        raise CheckpointError(f"{path}: its bands ({','.join(file_bands)}) share none with the "
                              f"tiles ({','.join(tile_bands)})")
    mapped = torch.zeros(w.shape[0], len(tile_bands), *w.shape[2:], dtype=want[first].dtype)
    for i, b in enumerate(tile_bands):
        if b in file_bands:
            mapped[:, i] = w[:, file_bands.index(b)]
    sd = {**sd, first: mapped}
    enc.load_state_dict({k: v.to(want[k].dtype) for k, v in sd.items()})
    origin = WeightsOrigin(
        kind="encoder-weights", file=str(path), sha256=file_sha256(path), preset=preset.name,
        encoder=name, bands=file_bands, dropped_bands=tuple(b for b in file_bands if b not in tile_bands),
        missing_bands=tuple(b for b in tile_bands if b not in file_bands),
        normalization=preset.describe_normalization())
    norm = None if preset.scale is None else \
        Normalization((0.0,) * len(tile_bands), (float(preset.scale),) * len(tile_bands))
    return LoadedWeights(origin, norm, ignored)


def describe(loaded: LoadedWeights) -> str:
    """One line for the log: what was loaded, dropped and zero-initialised."""
    o = loaded.origin
    parts = [f"{o.encoder} weights from {o.file} (sha256 {o.sha256[:12]}, preset {o.preset})"]
    if o.dropped_bands:
        parts.append(f"bands dropped: {','.join(o.dropped_bands)}")
    if o.missing_bands:
        parts.append(f"bands not in the file, started at zero: {','.join(o.missing_bands)}")
    if loaded.ignored_keys:
        parts.append(f"{len(loaded.ignored_keys)} classifier tensors ignored")
    parts.append(f"inputs: {o.normalization}")
    return "; ".join(parts)


