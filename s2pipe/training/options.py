"""Training options as plain data (no torch import, so the CLI can build its choices from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from s2pipe.errors import OptionError

ClassWeights = Literal["none", "inverse-frequency"]
CLASS_WEIGHTS: tuple[str, ...] = get_args(ClassWeights)


@dataclass
class TrainOptions:
    """Hyper-parameters and run settings (saved in every checkpoint)."""

    epochs: int = 60
    batch_size: int = 32
    lr: float = 1e-3
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


def check_options(o: TrainOptions) -> None:
    """Raise :class:`OptionError` for values no run can use."""
    if o.class_weights not in CLASS_WEIGHTS:
        raise OptionError(f"class weights {o.class_weights!r} unknown; use one of {CLASS_WEIGHTS}")
    if o.epochs < 1 or o.batch_size < 1 or o.filters < 1 or o.lr <= 0:
        raise OptionError("epochs, batch size, filters and lr must be positive")
    if not 0 < o.train_size <= 1:
        raise OptionError(f"train size {o.train_size} must be in (0, 1]")
