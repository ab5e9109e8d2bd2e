"""Where a model's starting weights came from, as recorded in its checkpoint.

``train --encoder-weights FILE`` and ``train --init CHECKPOINT`` each record one
:class:`WeightsOrigin` in :class:`s2pipe.model.checkpoint.ModelMeta` (key ``origin``): the
file, its sha256, the preset or bands it was read with, which bands were dropped or
started at zero, and whether the class head was re-initialised. A model trained from
random weights has none, and its metadata is the same plain data as in s2pipe 0.1.0.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

OriginKind = Literal["encoder-weights", "init"]


@dataclass(frozen=True)
class WeightsOrigin:
    """The weights a training run started from."""

    kind: OriginKind
    file: str
    sha256: str
    preset: str = ""                       # encoder-weights: the preset the file was read as
    encoder: str = ""                      # the backbone the weights are for
    bands: tuple[str, ...] = ()            # the file's band order (its first convolution)
    dropped_bands: tuple[str, ...] = ()    # bands of the file s2pipe's tiles do not have
    missing_bands: tuple[str, ...] = ()    # tiles' bands absent from the file: zero weights
    normalization: str = ""                # whose normalisation the model uses, in words
    head_reinitialized: bool = False       # init: the legend differed, the class head is new

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("bands", "dropped_bands", "missing_bands"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeightsOrigin:
        """Raises ``KeyError``/``TypeError``/``ValueError`` for data that is not an origin."""
        kind = d["kind"]
        if kind not in ("encoder-weights", "init"):
            raise ValueError(f"unknown origin kind {kind!r}")
        return cls(kind=kind, file=str(d["file"]), sha256=str(d["sha256"]),
                   preset=str(d.get("preset", "")), encoder=str(d.get("encoder", "")),
                   bands=tuple(map(str, d.get("bands", ()))),
                   dropped_bands=tuple(map(str, d.get("dropped_bands", ()))),
                   missing_bands=tuple(map(str, d.get("missing_bands", ()))),
                   normalization=str(d.get("normalization", "")),
                   head_reinitialized=bool(d.get("head_reinitialized", False)))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
