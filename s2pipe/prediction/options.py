"""Prediction options as plain data (no torch import: the CLI builds its choices from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from s2pipe.errors import OptionError

TTA = Literal["none", "flips", "d4"]
TTA_CHOICES: tuple[str, ...] = get_args(TTA)
DEFAULT_OVERLAP = 64
DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class PredictOptions:
    """How windows are cut, run and written; the same for every scene of a run."""

    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    tta: TTA = "none"
    mask_clouds: bool = False
    probabilities_all: bool = False
    trust_pixels: bool = False  # follow the pixels where they contradict the stated offset
    overwrite: bool = False

    def check(self, tile_size: int, model_path: object) -> None:
        """Raise :class:`OptionError` for values this model cannot use."""
        if not 0 <= self.overlap <= tile_size // 2:
            raise OptionError(f"--overlap {self.overlap} does not fit the model's tile size "
                              f"{tile_size} (of {model_path}); use 0 to {tile_size // 2}")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.tta not in TTA_CHOICES:
            raise OptionError(f"--tta {self.tta!r} is unknown; use one of {', '.join(TTA_CHOICES)}")
