"""All-reduce by hand: every rank ends with the sum (or mean) of everyone's tensor.

Two algorithms, both written with point-to-point ``send``/``recv`` only, and checked against
``torch.distributed.all_reduce``:

- :func:`naive_all_reduce`: everyone sends to rank 0, rank 0 adds and sends the sum back. Rank 0
  receives and sends ``(p - 1) N`` values, so its link carries ``2 (p - 1) N`` and the time grows
  with the number of ranks.
- :func:`ring_all_reduce`: ranks sit in a ring and pass chunks of ``N / p`` values to the next
  rank. A reduce-scatter (``p - 1`` steps: each rank adds the chunk it receives to its own) leaves
  every rank with one fully summed chunk; an all-gather (``p - 1`` more steps: each rank
  overwrites with the chunk it receives) hands those around. Every rank sends
  ``2 (p - 1) / p * N`` values, almost independent of ``p``, and all links work at once.

The tensor is changed in place (and returned), as ``dist.all_reduce`` does; it must be
contiguous. ``average=True`` divides by the world size (what data parallel training wants).
"""
from __future__ import annotations

import time

import torch
import torch.distributed as dist


def _check(tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"all-reduce needs a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_contiguous():
        raise ValueError("all-reduce works in place on a contiguous tensor; call .contiguous() first")
    if not dist.is_initialized():
        raise RuntimeError("no process group: run this inside a rank started by effkit.dist.launch "
                           "(or torchrun)")


def naive_all_reduce(tensor: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Reduce to rank 0, then broadcast from rank 0, with blocking send/recv."""
    _check(tensor)
    rank, world = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        incoming = torch.empty_like(tensor)
        for source in range(1, world):      # one at a time: rank 0's link is the bottleneck
            dist.recv(incoming, src=source)
            tensor += incoming
        for target in range(1, world):
            dist.send(tensor, dst=target)
    else:
        dist.send(tensor, dst=0)
        dist.recv(tensor, src=0)            # the sum overwrites this rank's own values
    if average:
        tensor /= world
    return tensor


def ring_all_reduce(tensor: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Reduce-scatter then all-gather around the ring ``0 -> 1 -> ... -> p-1 -> 0``."""
    _check(tensor)
    rank, world = dist.get_rank(), dist.get_world_size()
    if world == 1:
        return tensor
    chunks = torch.tensor_split(tensor.view(-1), world)   # sizes differ by at most one
    right, left = (rank + 1) % world, (rank - 1) % world
    for step in range(world - 1):                         # reduce-scatter
        send_i, recv_i = (rank - step) % world, (rank - step - 1) % world
        incoming = torch.empty_like(chunks[recv_i])
        _exchange(chunks[send_i], right, incoming, left)
        chunks[recv_i].add_(incoming)
    for step in range(world - 1):                         # all-gather: rank r owns chunk r + 1
        send_i, recv_i = (rank + 1 - step) % world, (rank - step) % world
        _exchange(chunks[send_i], right, chunks[recv_i], left)
    if average:
        tensor /= world
    return tensor


def _exchange(send: torch.Tensor, to: int, recv: torch.Tensor, source: int) -> None:
    """Send to one neighbour while receiving from the other. ``isend`` does not wait, so no rank
    blocks in a send that its neighbour only answers after its own send."""
    request = dist.isend(send, dst=to)
    dist.recv(recv, src=source)
    request.wait()


ALGORITHMS = {"naive": naive_all_reduce, "ring": ring_all_reduce}


# ---------------------------------------------------------------- the cost model
def bytes_sent_per_rank(numel: int, world: int, algorithm: str, element_size: int = 4) -> dict:
    """Bytes each rank sends for one all-reduce of ``numel`` values.

    Returns ``{"busiest": bytes on the busiest rank, "per_rank_mean": the average}``. Naive: rank
    0 sends ``(p - 1) N``, every other rank ``N``. Ring: every rank ``2 (p - 1) / p * N``.
    """
    if world < 1 or numel < 0:
        raise ValueError(f"need world >= 1 and numel >= 0, got world={world}, numel={numel}")
    n = numel * element_size
    if algorithm == "ring":
        each = 2 * (world - 1) / world * n
        return {"busiest": each, "per_rank_mean": each}
    if algorithm == "naive":
        busiest = (world - 1) * n
        return {"busiest": busiest, "per_rank_mean": (busiest + (world - 1) * n) / world}
    raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")


def model_seconds(numel: int, world: int, algorithm: str, bandwidth: float,
                  element_size: int = 4) -> float:
    """Time the cost model predicts when each link carries ``bandwidth`` bytes/s in each direction
    at once. Naive: rank 0 receives ``(p - 1) N`` then sends ``(p - 1) N``, one after the other.
    Ring: ``2 (p - 1)`` steps of ``N / p``, all links busy at once."""
    n = numel * element_size
    if algorithm == "naive":
        return 2 * (world - 1) * n / bandwidth
    return bytes_sent_per_rank(numel, world, "ring", element_size)["busiest"] / bandwidth


# ---------------------------------------------------------------- workers (run by effkit.dist.launch)
def compare_worker(rank: int, world: int, sizes: list[int], seed: int = 0) -> dict:
    """For each size: every algorithm's result against ``dist.all_reduce`` on the same random
    tensor (sum and mean). Returns ``{size: {algorithm: max abs difference}}``."""
    out = {}
    for size in sizes:
        g = torch.Generator().manual_seed(seed + 1000 * rank + size)
        x = torch.randn(size, generator=g)
        reference = x.clone()
        dist.all_reduce(reference)
        out[size] = {}
        for name, fn in ALGORITHMS.items():
            total = fn(x.clone())
            mean = fn(x.clone(), average=True)
            out[size][name] = max(float((total - reference).abs().max()),
                                  float((mean - reference / world).abs().max()))
    return out


def timing_worker(rank: int, world: int, sizes: list[int], repeats: int = 5) -> dict:
    """Median seconds of one all-reduce of each size by each algorithm and by ``dist.all_reduce``
    (ranks start each timed call together, after a barrier). Returns ``{size: {name: seconds}}``."""
    algorithms = {**ALGORITHMS, "dist.all_reduce": lambda t: dist.all_reduce(t)}
    out = {}
    for size in sizes:
        x = torch.randn(size)
        out[size] = {}
        for name, fn in algorithms.items():
            fn(x.clone())                              # warm-up: connections, allocations
            times = []
            for _ in range(repeats):
                y = x.clone()
                dist.barrier()
                start = time.perf_counter()
                fn(y)
                times.append(time.perf_counter() - start)
            out[size][name] = sorted(times)[len(times) // 2]
    return out
