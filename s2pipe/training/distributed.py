"""DDP plumbing: one process per device when started by ``torchrun``.

Rank 0 alone writes outputs; metrics are summed over ranks so every rank takes the
same scheduling and early-stopping decisions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from s2pipe.model.device import resolve_device

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (env WORLD_SIZE > 1), else single process.

    Under torchrun each rank uses ``cuda:LOCAL_RANK`` with NCCL when CUDA is chosen,
    otherwise the CPU with gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistInfo(0, 1, dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), dev)
    log.info("DDP rank %d of %d on %s", info.rank, info.world_size, dev)
    return info


def all_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` in place over ranks (no-op in a single process)."""
    if info.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when started by torchrun, else itself. DDP
    synchronises the parameters that need gradients when it is built: wrap again after
    freezing or releasing some."""
    if not info.active:
        return model
    cuda = info.device.type == "cuda"
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[info.device.index] if cuda else None)
