"""Prediction options as plain data (no torch import: the CLI builds its choices from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from s2pipe.errors import OptionError

TTA = Literal["none", "flips", "d4"]
TTA_CHOICES: tuple[str, ...] = get_args(TTA)
Precision = Literal["fp32", "int8"]
PRECISION_CHOICES: tuple[str, ...] = get_args(Precision)
DEFAULT_CALIBRATION_TILES = 32   # export --precision int8: train tiles calibrating the model
DEFAULT_MIN_AGREEMENT = 0.99     # ... and the least class agreement with fp32 on val tiles
DEFAULT_OVERLAP = 64
DEFAULT_BATCH_SIZE = 4


@dataclass(frozen=True)
class PredictOptions:
    """How windows are cut, run and written; the same for every scene of a run."""

    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    tta: TTA = "none"
    precision: Precision | None = None  # None: whatever the model file holds
    mask_clouds: bool = False
    probabilities_all: bool = False
    trust_pixels: bool = False  # follow the pixels where they contradict the stated offset
    overwrite: bool = False
    #: where the probabilities go: a GeoTIFF (one scene) or a folder (several); None: not written
    probabilities: Path | None = None

    def __post_init__(self) -> None:
        """Raise :class:`OptionError` for values no model can use, and for options that
        need another (the one place these are checked; the CLI shows them as usage errors)."""
        if self.probabilities_all and self.probabilities is None:
            raise OptionError("--probabilities-all needs --probabilities PATH")
        if self.batch_size < 1:
            raise OptionError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.tta not in TTA_CHOICES:
            raise OptionError(f"--tta {self.tta!r} is unknown; use one of {', '.join(TTA_CHOICES)}")
        if self.precision is not None and self.precision not in PRECISION_CHOICES:
            raise OptionError(f"--precision {self.precision!r} is unknown; use one of "
                              f"{', '.join(PRECISION_CHOICES)}")
        if self.overlap < 0:
            raise OptionError(f"--overlap {self.overlap}: give 0 or more pixels")

    def check(self, tile_size: int, model_path: object) -> None:
        """Raise :class:`OptionError` for values this model cannot use."""
        if not 0 <= self.overlap <= tile_size // 2:
            raise OptionError(f"--overlap {self.overlap} does not fit the model's tile size "
                              f"{tile_size} (of {model_path}); use 0 to {tile_size // 2}")
