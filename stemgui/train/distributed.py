"""DDP plumbing for `torchrun`: process group from the environment, explicit gradient averaging, rank-0 duties.

Gradients are averaged with one flat all_reduce per model after backward instead of wrapping in
DistributedDataParallel: the discriminator is run several times per step with its parameters frozen in
some passes, which DDP's reducer handles poorly, and explicit averaging keeps both models on one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistEnv":
        """Read RANK/WORLD_SIZE/LOCAL_RANK as torchrun sets them (single process when absent)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(env: DistEnv, device: torch.device) -> None:
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)


def broadcast_module(module: nn.Module, env: DistEnv) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if env.enabled:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


def average_gradients(module: nn.Module, env: DistEnv) -> None:
    """Average the gradients of `module` over ranks (one flat all_reduce)."""
    if not env.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat.div_(env.world_size)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank if `flag` is true on any rank (stop requests, failures)."""
    if not env.enabled:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def cleanup(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
