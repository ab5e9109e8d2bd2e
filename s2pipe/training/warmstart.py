"""The network a run starts from: the study's U-Net, an encoder U-Net (pretrained or not),
or another s2pipe model (``--init``); and the fine-tuning schedule of its encoder.

``--init CHECKPOINT`` takes the checkpoint's architecture, weights and normalisation (the
weights were learned on inputs normalised that way); its bands must be the tiles' bands.
With another legend every weight but the class head is taken and the head starts anew.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from s2pipe.errors import CheckpointError, OptionError, TileError
from s2pipe.legend import LandCoverClass
from s2pipe.model.checkpoint import read_checkpoint
from s2pipe.model.encoder_unet import EncoderUNet
from s2pipe.model.normalization import Normalization
from s2pipe.model.origin import WeightsOrigin, file_sha256
from s2pipe.model.presets import PRESETS, STUDY_UNET, WeightsPreset, parse_bands
from s2pipe.model.pretrained import describe, load_encoder_weights
from s2pipe.model.unet import Arch, UNet
from s2pipe.training.options import TrainOptions

log = logging.getLogger(__name__)


@dataclass
class Start:
    """A freshly built network and what it brings with it."""

    model: nn.Module
    normalization: Normalization | None  # None: the training split's statistics
    origin: WeightsOrigin | None

    @property
    def arch(self) -> Arch:
        return self.model.arch  # type: ignore[return-value]  # UNet and EncoderUNet have .arch


def build_start(o: TrainOptions, *, bands: Sequence[str], legend: Sequence[LandCoverClass],
                num_classes: int, tile_size: int, resume_arch: Arch | None = None) -> Start:
    """The network to train. A resumed run (``resume_arch``) rebuilds its architecture only:
    its weights, normalisation and origin come from its ``last.pt``."""
    if resume_arch is not None:
        start = Start(resume_arch.build(), None, None)
    elif o.init is not None:
        start = _from_checkpoint(Path(o.init), o, bands, tuple(legend), num_classes)
    elif o.encoder in (None, STUDY_UNET):
        start = Start(UNet(len(bands), num_classes, o.filters), None, None)
    else:
        model = EncoderUNet(o.encoder, len(bands), num_classes)
        start = Start(model, None, None)
        if o.encoder_weights is not None:
            preset = PRESETS[o.encoder_preset] if o.encoder_preset else \
                WeightsPreset("bands", (), None, "the band order of --encoder-bands")
            loaded = load_encoder_weights(
                model, o.encoder_weights, preset=preset, tile_bands=tuple(bands),
                bands=parse_bands(o.encoder_bands) if o.encoder_bands else None)
            log.info("%s", describe(loaded))
            start = Start(model, loaded.normalization, loaded.origin)
    if tile_size % start.arch.stride:
        raise TileError(f"tiles of {tile_size} px; the {start.arch.encoder or 'study'} U-Net needs "
                        f"multiples of {start.arch.stride} (re-run prepare with --tile-size 256)")
    return start


def _from_checkpoint(path: Path, o: TrainOptions, bands: Sequence[str],
                     legend: tuple[LandCoverClass, ...], num_classes: int) -> Start:
    ckpt = read_checkpoint(path)
    meta = ckpt.meta
    if tuple(meta.bands) != tuple(bands):
        raise CheckpointError(f"{path} was trained on bands {','.join(meta.bands)} but the tiles "
                              f"have {','.join(bands)}; --init needs the same bands")
    mine = meta.arch.encoder or STUDY_UNET
    if o.encoder is not None and o.encoder != mine:
        raise OptionError(f"{path} is a {mine} model, not {o.encoder}; leave out --encoder "
                          "(--init takes the checkpoint's network)")
    arch = replace(meta.arch, num_classes=num_classes)
    model = arch.build()
    same = meta.legend == legend and meta.arch.num_classes == num_classes
    head = tuple(model.head_keys())  # type: ignore[operator]  # both networks define it
    weights = ckpt.weights if same else {k: v for k, v in ckpt.weights.items() if k not in head}
    try:
        result = model.load_state_dict(weights, strict=same)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: its weights do not fit its architecture {meta.arch} "
                              f"({type(exc).__name__}); the file is damaged") from exc
    if not same and (set(result.missing_keys) - set(head) or result.unexpected_keys):
        raise CheckpointError(f"{path}: its weights do not fit its architecture {meta.arch}; "
                              "the file is damaged")
    if not same:
        log.warning("%s has another legend (%s) than the tiles (%s): the class head is "
                    "re-initialised, every other weight is taken", path,
                    ",".join(c.name for c in meta.legend), ",".join(c.name for c in legend))
    log.info("starting from %s (%s, normalisation of that model)", path, mine)
    origin = WeightsOrigin(kind="init", file=str(path), sha256=file_sha256(path), encoder=mine,
                           bands=tuple(meta.bands), head_reinitialized=not same,
                           normalization=f"that of {path.name} (per-band statistics of its training tiles)"
                           if meta.origin is None else meta.origin.normalization or "that of the init model")
    return Start(model, meta.normalization, origin)


def encoder_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.encoder_modules() for p in m.parameters()]  # type: ignore[operator]


def parameter_groups(model: nn.Module, o: TrainOptions) -> list[dict[str, Any]]:
    """Adam's parameter groups: one (as before) unless the encoder learns at its own rate;
    then the decoder's group comes first, so its rate is the one reported."""
    if o.encoder_learning_rate == o.lr:
        return [{"params": list(model.parameters())}]
    enc = encoder_parameters(model)
    ids = {id(p) for p in enc}
    return [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": o.lr},
            {"params": enc, "lr": o.encoder_learning_rate}]


def set_frozen(model: nn.Module, frozen: bool) -> tuple[nn.Module, ...]:
    """Freeze (no gradient, BatchNorm statistics kept) or release the encoder; the modules
    that training must keep in eval mode."""
    for p in encoder_parameters(model):
        p.requires_grad_(not frozen)
    return tuple(model.encoder_modules()) if frozen else ()  # type: ignore[operator]


def is_frozen(o: TrainOptions, epoch: int) -> bool:
    return epoch <= o.freeze_encoder


