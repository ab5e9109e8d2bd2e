"""How a change map is made, as plain data: the CLI builds it, the engine takes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s2pipe.errors import OptionError

#: With probabilities of both dates, a pixel whose classes differ counts as changed only
#: where both dates' winning class has at least this probability (else: uncertain).
#: Change patches smaller than DEFAULT_MMU_HA (hectares, 4-connected; 1 ha is 100 pixels
#: at 10 m) keep the earlier date's class. Both chosen by ``bench/bench_change.py``: the
#: highest changed-vs-unchanged F1 (0.694, naive 0.561) of the rules that at least halve
#: naive comparison's false change (to 0.20 of it); figures in bench/RESULTS.md.
DEFAULT_MIN_CONFIDENCE = 0.6
DEFAULT_MMU_HA = 1.0


@dataclass(frozen=True)
class ChangeOptions:
    """The output grid (default BEFORE's; else ``crs``, ``resolution``, ``bounds`` W S E N
    or ``clip`` as in ``mosaic``), the confidence rule (``min_confidence``: None = the
    default with probabilities of both dates, and naive comparison of classes otherwise;
    0 = naive), the minimum mapping unit of change, the report folder (default
    ``<map>_report`` beside the map) and whether outputs may be replaced."""

    crs: str | None = None
    resolution: float | None = None
    bounds: tuple[float, float, float, float] | None = None
    clip: Path | None = None
    min_confidence: float | None = None
    mmu_ha: float = DEFAULT_MMU_HA
    report: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.bounds is not None and self.clip is not None:
            raise OptionError("give --bounds or --clip, not both")
        if self.resolution is not None and self.resolution <= 0:
            raise OptionError(f"--resolution {self.resolution}: give a positive size in the CRS's units")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise OptionError(f"--min-confidence {self.min_confidence}: give a probability 0..1")
        if self.mmu_ha < 0:
            raise OptionError(f"--mmu {self.mmu_ha}: give 0 (none) or more hectares")

    @property
    def regrid(self) -> bool:
        """Whether the output grid differs from BEFORE's."""
        return any(v is not None for v in (self.crs, self.resolution, self.bounds, self.clip))
