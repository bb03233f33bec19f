"""Small workers for :func:`effkit.dist.launch`: a first all-reduce, and each way a rank can fail.

They live in a module (not in a notebook) so that spawned processes can import them.
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist


def hello(rank: int, world: int) -> dict:
    """Each rank all-reduces the tensor ``[rank + 1]``: every rank ends with 1 + 2 + ... + p."""
    x = torch.tensor([float(rank + 1)])
    dist.all_reduce(x)
    return {"rank": rank, "world": world, "pid": os.getpid(), "backend": dist.get_backend(),
            "threads": torch.get_num_threads(), "sum": float(x)}


def raises_on(rank: int, world: int, bad_rank: int) -> int:
    """Rank ``bad_rank`` raises a ValueError; the others wait in a barrier it never reaches."""
    if rank == bad_rank:
        raise ValueError(f"rank {rank} found a bad batch (a deliberate error)")
    dist.barrier()
    return rank


def dies_on(rank: int, world: int, bad_rank: int) -> int:
    """Rank ``bad_rank`` exits at once, without a word (like a process killed for memory)."""
    if rank == bad_rank:
        os._exit(3)
    dist.barrier()
    return rank


def stuck_on(rank: int, world: int, bad_rank: int, seconds: float = 3600) -> int:
    """Rank ``bad_rank`` sleeps instead of joining the all-reduce the others wait in."""
    if rank == bad_rank:
        time.sleep(seconds)
    x = torch.ones(4)
    dist.all_reduce(x)
    return rank
