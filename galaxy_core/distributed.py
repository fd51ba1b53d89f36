"""Multi-process runs under ``torchrun``: PyTorch's own engine (DDP), NCCL on CUDA, Gloo on CPU.

A ``DistContext`` says which rank this process is. Plain ``python -m train.train`` gets the
single-process context and none of this code talks to a process group. Under ``torchrun``
(``WORLD_SIZE`` > 1), ``distributed_session`` joins the group with a timeout, so a rank that
dies stops the others with an error instead of leaving them waiting forever.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .device import select_device

log = logging.getLogger(__name__)

TIMEOUT = dt.timedelta(minutes=int(os.environ.get("GALAXY_DIST_TIMEOUT_MIN", "10")))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def requested() -> bool:
    """True when launched by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def distributed_session(device_name: str = "auto"):
    """Join the process group torchrun set up (or do nothing); yield (context, device)."""
    if not requested():
        yield SINGLE, select_device(device_name)
        return
    ctx = DistContext(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    device = select_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    log.info("rank %d/%d joined (%s on %s)", ctx.rank, ctx.world_size, backend, device)
    try:
        yield ctx, device
    finally:
        dist.destroy_process_group()


def shard_order(order: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's share of ``order``, padded by wrapping so every rank gets as many items
    (as DistributedSampler does), so all ranks take the same number of steps."""
    if not ctx.distributed:
        return order
    per_rank = -(-len(order) // ctx.world_size)
    padded = torch.cat([order, order[: per_rank * ctx.world_size - len(order)]])
    return padded[ctx.rank::ctx.world_size]


def split_evenly(count: int, ctx: DistContext) -> list[int]:
    """Indices ``rank, rank + world, ...`` of ``range(count)``: no padding, uneven is fine."""
    return list(range(ctx.rank, count, ctx.world_size))


def gather(obj, ctx: DistContext) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def mean_across(value: float, ctx: DistContext, device) -> float:
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def any_rank(flag: bool, ctx: DistContext, device) -> bool:
    """True on every rank when ``flag`` is true on at least one (for a shared stop)."""
    if not ctx.distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def sync_buffers(net: torch.nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's BatchNorm statistics (each rank updated its own copy during
    its last steps), so validation everywhere uses exactly the weights rank 0 saves."""
    if ctx.distributed:
        for buffer in net.buffers():
            dist.broadcast(buffer, src=0)
