"""The process layout of a run: one process, or one per device under ``torchrun`` (DDP).

:func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), binds the
process to its GPU (``torch.cuda.set_device(LOCAL_RANK)``) before any CUDA work and joins the
process group (nccl on GPU, gloo on CPU, plus a gloo group for the per-step stop flag so it never
synchronises the GPU). :class:`Dist` carries the layout and the few collectives the trainer and the
evaluator need; each is a no-op in a single process, so a one-process run executes exactly the
code it always did.

Random draws per rank follow the authors (timm ``random_seed(seed, rank)``, DeiT and MixPro
``seed + rank``): rank r draws from ``seed + r`` (:func:`rank_seed`), so rank 0 and a
single-process run draw the same; samplers keep the rank-free seed, so all ranks agree on one
permutation and each takes its shard.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own draws (mixing, dropout, drop-path): ``seed + rank``."""
    return int(seed) + int(rank)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    flag_group: Any = None  # gloo group for CPU-side flags

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather_rows(self, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` (CPU, first dim = samples) concatenated and put in the order of
        ``index`` (their sample positions), on every rank; unchanged in a single process."""
        if self.world == 1:
            return rows
        parts = [None] * self.world
        torch.distributed.all_gather_object(parts, (rows.cpu(), index.cpu()))
        all_rows = torch.cat([r for r, _ in parts])
        return all_rows[torch.argsort(torch.cat([i for _, i in parts]))]

    def gather_objects(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if self.world == 1:
            return [obj]
        parts = [None] * self.world
        torch.distributed.all_gather_object(parts, obj)
        return parts

    def sum_ints(self, values: list[int]) -> list[int]:
        """Element-wise sums over ranks (exact: int64)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.int64)
        torch.distributed.all_reduce(t, group=self.flag_group)
        return [int(v) for v in t]

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (a gloo all-reduce on CPU)."""
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.flag_group)
        return bool(t.item())

    def broadcast_buffers(self, module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics): under DDP each rank updates its
        own from its own shard, so the ranks evaluate one and the same model."""
        if self.world > 1:
            for b in module.buffers():
                torch.distributed.broadcast(b, 0)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def setup() -> Dist:
    """The layout torchrun started this process in (one process without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)  # before any CUDA work: otherwise every rank opens a context on GPU 0
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world == 1:
        return Dist(0, 1, device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    flags = torch.distributed.new_group(backend="gloo") if device.type == "cuda" else None
    return Dist(rank, world, device, flags)
