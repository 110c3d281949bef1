"""Data-parallel training with torch.distributed: one model replica per process, all started by torchrun.

Which share of every batch a replica trains on, the collectives that keep the replicas and their epoch sums in step,
and which device each replica uses. Plug-ins that declare `data_parallel` use it when a process group is set up; a
process that trains alone never touches it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_INDEXED_CUDA = re.compile(r"cuda:\d+")


@dataclass(frozen=True)
class Replicas:
    """This process's place among the replicas: `rank` from 0 to `world_size - 1` (rank 0 writes the model)."""

    rank: int
    world_size: int

    @classmethod
    def current(cls) -> Replicas | None:
        """The process group torchrun set up for this process; None when it trains alone."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    def wrap(self, network: nn.Module, device: str) -> nn.Module:
        """`network` under DistributedDataParallel: every backward pass averages the gradients across replicas, and
        every training forward pass starts from rank 0's buffers (batch-norm statistics)."""
        target = torch.device(device)
        return DistributedDataParallel(network, device_ids=[target] if target.type == "cuda" else None)

    def seed_own_randomness(self, seed: int) -> None:
        """Give this replica its own random stream (dropout masks), derived from `seed` and the rank.

        Called after the network is built: the weights start equal in every replica (DDP copies rank 0's), but
        replicas drawing the same masks for their different images would correlate them for nothing.
        """
        state = np.random.SeedSequence([seed, self.rank]).generate_state(1, dtype=np.uint64)[0]
        torch.manual_seed(int(state))

    def share_batches(self, order: np.ndarray, batch_size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """This replica's image indices for an epoch, and per step (end of the step's share in those indices, images
        in the whole step).

        Step k trains on `order[k * batch_size:(k + 1) * batch_size]`, as one process would: this replica takes every
        `world_size`-th image of it, from position `rank`. A last batch with fewer images than replicas is topped up
        from the start of `order`, so that every replica has an image in every step (they must all step together).
        """
        shares: list[np.ndarray] = []
        steps: list[tuple[int, int]] = []
        end = 0
        for start in range(0, len(order), batch_size):
            batch = np.asarray(order[start : start + batch_size])
            if len(batch) < self.world_size:
                batch = np.concatenate([batch, np.resize(order, self.world_size - len(batch))])
            share = batch[self.rank :: self.world_size]
            shares.append(share)
            end += len(share)
            steps.append((end, len(batch)))
        return (np.concatenate(shares) if shares else np.zeros(0, dtype=np.int64)), steps

    def share(self, count: int) -> np.ndarray:
        """This replica's indices of `count` items evaluated once each (every `world_size`-th, from `rank`)."""
        return np.arange(count)[self.rank :: self.world_size]

    def sum(self, *tensors: torch.Tensor) -> None:
        """Add each tensor up across the replicas, in place: every replica ends with the same totals."""
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def broadcast_buffers(self, network: nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics, which each replica updates from its own share) into
        every replica, so all evaluate the model rank 0 saves."""
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)


def replica_device(requested: str, local_rank: int) -> str:
    """The device of the replica with `local_rank` on its machine: GPU `local_rank` when CUDA is requested or
    'auto' finds it, else the CPU (`device_problem` has already refused what cannot work)."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu"
    return f"cuda:{local_rank}"


def backend_for(device: str) -> str:
    """torch.distributed's backend for replicas on `device`: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def device_problem(requested: str, processes: int) -> str:
    """Why `processes` replicas cannot train on the `requested` device on this machine ('' when they can): each needs
    a GPU of its own when they train on CUDA."""
    if requested == "mps" or _INDEXED_CUDA.fullmatch(requested):
        return (
            f"device {requested!r} cannot be shared by {processes} processes: data-parallel training runs on CPUs "
            "(gloo) or on one CUDA GPU per process (NCCL); set device to 'auto', 'cuda' or 'cpu'"
        )
    if requested == "cuda" and not torch.cuda.is_available():
        return "device 'cuda' was requested but no CUDA GPU is visible; use 'auto' or 'cpu'"
    if requested in ("cuda", "auto") and torch.cuda.is_available() and torch.cuda.device_count() < processes:
        visible = torch.cuda.device_count()
        return (
            f"{processes} processes on device {requested!r} need {processes} GPUs (one each), but {visible} "
            f"{'is' if visible == 1 else 'are'} visible; set processes to at most {visible}, or device to 'cpu'"
        )
    return ""
