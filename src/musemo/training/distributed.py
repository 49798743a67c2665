"""Data-parallel training under ``torchrun`` (DistributedDataParallel), CPU or CUDA.

``torchrun --nproc_per_node=N -m musemo.cli train ...`` starts N processes; each
trains on its share of every epoch's batches and rank 0 alone validates and
writes files. Without torchrun this is a single process and nothing changes.
"""

from __future__ import annotations

import atexit
import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class World:
    """A process's place among those torchrun started (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True in the process that validates and writes (rank 0)."""
        return self.rank == 0


def world() -> World:
    """The calling process's place, from torchrun's environment; starts the group once."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        # a process that exits with the group alive can abort in its C++ threads
        # ("terminate called without an active exception"): close it at exit
        atexit.register(_close_process_group)
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(w: World) -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if w.size > 1:
        import torch.distributed as dist

        dist.barrier()


def sum_over_processes(w: World, values: list[float], device) -> list[float]:
    """Element-wise sum of ``values`` over all processes."""
    if w.size == 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def max_difference_over_processes(w: World, values) -> float:
    """The largest absolute difference between this tensor in any process and in rank 0
    (0.0 in a single process): DDP keeps the replicas equal, and this checks it."""
    if w.size == 1:
        return 0.0
    import torch.distributed as dist

    gathered = [values.new_empty(values.shape) for _ in range(w.size)]
    dist.all_gather(gathered, values.contiguous())
    return max(float((g - gathered[0]).abs().max()) for g in gathered)
