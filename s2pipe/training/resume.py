"""What a resumed run (``train --resume MODEL_DIR/last.pt``) must share with the run it continues."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from s2pipe.errors import CheckpointError
from s2pipe.model.checkpoint import Checkpoint
from s2pipe.training.dataset import TileSet
from s2pipe.training.options import LEGACY_SCHEDULE, TrainOptions

#: Options a resumed run must share with the run it continues (``epochs``, the time budget,
#: the patience and the device may change: that is what resuming is for; ``schedule`` is
#: checked on its own, and ``epochs`` too under the one-cycle schedule). ``world_size``,
#: the number of torchrun processes, sets the batch each step sees and how tiles are dealt.
#: The network and where its weights came from must match too (checkpoints written before
#: these options existed lack them, and are not held to them).
RESUME_MUST_MATCH = ("batch_size", "lr", "filters", "class_weights", "lr_patience", "lr_factor",
                     "min_lr", "augment", "seed", "train_size", "num_samples", "world_size",
                     "encoder", "encoder_weights", "encoder_preset", "encoder_bands", "encoder_lr",
                     "freeze_encoder", "init")


def check_resume(ckpt: Checkpoint, path: Any, o: TrainOptions, tileset: TileSet, tile_size: int,
                 counts: dict[str, int], world_size: int = 1) -> None:
    """Refuse a resume whose checkpoint was trained on other tiles or with other options."""
    if not ckpt.resumable:
        raise CheckpointError(f"{path} holds no training state; resume from MODEL_DIR/last.pt")
    meta = ckpt.meta
    mine = {**asdict(o), "world_size": world_size}
    saved = meta.train_options
    schedule = saved.get("schedule", LEGACY_SCHEDULE)
    if schedule != o.schedule:
        raise CheckpointError(f"{path} was trained with --schedule {schedule}, not {o.schedule}; "
                              "resume with the same options")
    if o.schedule == "onecycle" and saved.get("epochs", o.epochs) != o.epochs:
        raise CheckpointError(f"{path} was trained with --epochs {saved['epochs']} under --schedule "
                              "onecycle, whose learning rate follows the epochs; resume with the same "
                              "--epochs (more epochs need --schedule plateau)")
    for key in RESUME_MUST_MATCH:
        if key in saved and saved[key] != mine[key]:
            if key == "world_size":
                raise CheckpointError(f"{path} was trained by {saved[key]} torchrun process(es), not "
                                      f"{mine[key]}; resume with as many (--nnodes x --nproc-per-node)")
            flag = "--" + key.replace("_", "-")
            raise CheckpointError(f"{path} was trained with {flag} {saved[key]}, not {mine[key]}; "
                                  "resume with the same options")
    if (list(meta.bands) != list(tileset.bands) or meta.legend != tileset.legend
            or meta.tile_size != tile_size or saved.get("tiles", counts) != counts):
        raise CheckpointError(f"{path} was trained on other tiles (bands, legend, tile size or "
                              "split counts differ); resume with the same tile folder")
