"""Training options as plain data (no torch import, so the CLI can build its choices from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from s2pipe.errors import OptionError
from s2pipe.model.presets import ARCHITECTURES, PRESET_NAMES, STUDY_UNET, parse_bands

ClassWeights = Literal["none", "inverse-frequency"]
CLASS_WEIGHTS: tuple[str, ...] = get_args(ClassWeights)
#: Learning-rate schedules: ``onecycle`` warms up to ``lr`` and anneals to ~0 over the
#: ``epochs`` (one step per batch); ``plateau`` starts at ``lr`` and multiplies it by
#: ``lr_factor`` after ``lr_patience`` epochs without validation mIoU gain (the study's).
Schedule = Literal["onecycle", "plateau"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
LEGACY_SCHEDULE = "plateau"  # what checkpoints written before --schedule existed used
ENCODER_LR_FACTOR = 0.1  # default encoder learning rate of a warm start, relative to --lr


@dataclass
class TrainOptions:
    """Hyper-parameters and run settings (saved in every checkpoint)."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
    schedule: Schedule = "plateau"
    filters: int = 32
    class_weights: ClassWeights = "none"
    patience: int = 20          # early stopping, epochs without val mIoU improvement
    lr_patience: int = 5        # ReduceLROnPlateau
    lr_factor: float = 0.1
    min_lr: float = 2e-6
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    workers: int | None = None  # None: 0 on CPU, 4 on CUDA
    channels_last: bool | None = None  # None: on CUDA only
    amp: bool = True            # bf16 (fp16 + scaler where bf16 is missing) on CUDA
    max_minutes: float | None = None
    train_size: float = 0.8     # study layout only
    num_samples: int | None = None
    save_model: bool = True
    save_samples: bool = True
    sample_tiles: int = 4
    save_summary: bool = False
    # pretrained encoders and fine-tuning (docs/commands/train.md, "pretrained encoders")
    encoder: str | None = None  # None: the study's U-Net, or the --init checkpoint's network
    encoder_weights: str | None = None  # a local state dict of the backbone
    encoder_preset: str | None = None   # how to read it (presets.PRESETS)
    encoder_bands: str | None = None    # its band order, e.g. "B04,B03,B02" (overrides the preset's)
    encoder_lr: float | None = None     # None: lr / 10 when starting from weights, else lr
    freeze_encoder: int = 0             # epochs that train the decoder alone
    init: str | None = None             # an s2pipe checkpoint to start from

    @property
    def warm(self) -> bool:
        """Whether the run starts from learned weights."""
        return self.encoder_weights is not None or self.init is not None

    @property
    def encoder_learning_rate(self) -> float:
        if self.encoder_lr is not None:
            return self.encoder_lr
        return self.lr * ENCODER_LR_FACTOR if self.warm else self.lr


def check_options(o: TrainOptions) -> None:
    """Raise :class:`OptionError` for values no run can use."""
    if o.schedule not in SCHEDULES:
        raise OptionError(f"schedule {o.schedule!r} unknown; use one of {SCHEDULES}")
    if o.class_weights not in CLASS_WEIGHTS:
        raise OptionError(f"class weights {o.class_weights!r} unknown; use one of {CLASS_WEIGHTS}")
    if o.epochs < 1 or o.batch_size < 1 or o.filters < 1 or o.lr <= 0:
        raise OptionError("epochs, batch size, filters and lr must be positive")
    if not 0 < o.train_size <= 1:
        raise OptionError(f"train size {o.train_size} must be in (0, 1]")
    _check_warm_start(o)


def _check_warm_start(o: TrainOptions) -> None:
    if o.encoder is not None and o.encoder not in ARCHITECTURES:
        raise OptionError(f"encoder {o.encoder!r} unknown; use one of {', '.join(ARCHITECTURES)}")
    if o.encoder_weights is not None:
        if o.init is not None:
            raise OptionError("--encoder-weights and --init exclude each other: --init starts "
                              "from a whole s2pipe model, --encoder-weights from a backbone")
        if o.encoder in (None, STUDY_UNET):
            raise OptionError("--encoder-weights needs --encoder NAME (the backbone the file is for)")
        if o.encoder_preset is None and o.encoder_bands is None:
            raise OptionError("--encoder-weights needs --encoder-preset NAME "
                              f"({', '.join(PRESET_NAMES)}) or --encoder-bands LIST: the band "
                              "order of the file's first convolution")
    elif o.encoder_preset is not None or o.encoder_bands is not None:
        raise OptionError("--encoder-preset and --encoder-bands describe --encoder-weights FILE; "
                          "pass the file too")
    if o.encoder_preset is not None and o.encoder_preset not in PRESET_NAMES:
        raise OptionError(f"preset {o.encoder_preset!r} unknown; use one of {', '.join(PRESET_NAMES)}")
    if o.encoder_bands is not None:
        try:
            parse_bands(o.encoder_bands)
        except ValueError as exc:
            raise OptionError(f"--encoder-bands {exc}") from None
    if o.freeze_encoder < 0 or (o.encoder_lr is not None and o.encoder_lr <= 0):
        raise OptionError("--freeze-encoder must be >= 0 and --encoder-lr positive")
