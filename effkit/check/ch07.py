"""Checks for the chapter 07 assignment: ring all-reduce with send/recv, against dist.all_reduce.

The student's ``ring_all_reduce(tensor, average=False)`` runs in real ranks (2, then 3 spawned
processes, gloo). A function defined in a notebook cannot be imported by a spawned process, so
the checker sends its *source text* and each rank runs it with ``torch``, ``dist`` (point-to-point
only: ``send``, ``recv``, ``isend``, ``irecv``, ``get_rank``, ``get_world_size``) and ``math``.

Sizes come divisible by the world size first, then not (1, 7, 1001 ...), and both the sum and
the mean are asked for. When a result is wrong, the checker looks at each chunk on each rank to
name the mistake: the mean not taken, chunks sent or added in the wrong order (values from
another position land in a chunk), an all-gather that is missing or too short, elements lost
when the size does not divide, or a deadlock (a rank waits for a message that never comes; a
timeout turns it into this failure instead of a hang).
"""
from __future__ import annotations

import inspect
import itertools
import math
import textwrap
import types

import torch
import torch.distributed as dist

from ..dist.launcher import LaunchTimeout, WorkerError, launch
from ._core import fail, passed

DIVISIBLE = {2: (2, 8, 1000), 3: (3, 9, 999)}
AWKWARD = {2: (7, 1001, 1), 3: (7, 1001, 4097, 2, 1)}   # smaller than p last: all chunks tiny
WAIT = 8.0   # seconds a rank waits in one recv before the checker calls it a deadlock
ALLOWED = ("send", "recv", "isend", "irecv", "get_rank", "get_world_size", "is_initialized")


# ---------------------------------------------------------------- what runs inside each rank
def _sandboxed_dist():
    """torch.distributed with only point-to-point operations: the collectives raise."""
    box = types.SimpleNamespace(**{name: getattr(dist, name) for name in ALLOWED})

    def forbidden(name):
        def call(*args, **kwargs):
            raise RuntimeError(f"dist.{name} is a collective: write the ring with send/recv "
                               f"(isend/irecv) only")
        return call
    for name in ("all_reduce", "reduce", "broadcast", "all_gather", "reduce_scatter",
                 "all_gather_into_tensor", "reduce_scatter_tensor", "all_to_all", "barrier"):
        setattr(box, name, forbidden(name))
    box.ReduceOp = dist.ReduceOp
    return box


def student_worker(rank: int, world: int, source: str, name: str, cases: list) -> dict:
    """Run the student's function on each ``(size, average)`` case; describe every result."""
    namespace = {"torch": torch, "dist": _sandboxed_dist(), "math": math, "__name__": "student"}
    exec(compile(source, f"<your {name}>", "exec"), namespace)  # noqa: S102  (the student's own code)
    fn = namespace[name]
    out = []
    for size, average in cases:
        g = torch.Generator().manual_seed(1000 * rank + size)
        mine = torch.randn(size, generator=g)
        everyone = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(everyone, mine)                 # the checker's own view of all inputs
        x = mine.clone()
        try:
            returned = fn(x, average=average)
        except NotImplementedError as err:
            return {"not_implemented": str(err)}
        out.append(_describe(returned, x, mine, everyone, world, average))
        wrong = torch.tensor([0.0 if out[-1].get("ok") and returned is not None else 1.0])
        dist.all_reduce(wrong)                          # every rank stops at the first wrong case,
        if wrong.item():                                # so no rank waits for a peer that stopped
            break
    return {"cases": out}


def _describe(returned, x, mine, everyone, world: int, average: bool) -> dict:
    total = torch.stack(everyone).sum(0)
    target = total / world if average else total
    result = {"returned_none": returned is None, "copy": returned is not None and returned is not x}
    got = x if returned is None else returned
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        result["bad_return"] = type(got).__name__ if not isinstance(got, torch.Tensor) else str(tuple(got.shape))
        return result
    close = lambda a, b: bool(torch.allclose(a, b, rtol=1e-5, atol=1e-5))  # noqa: E731
    result["ok"] = close(got, target)
    result["sum_not_mean"] = average and close(got, total)
    result["mean_not_sum"] = not average and close(got, total / world)
    result["in_place"] = close(x, got)
    # chunk by chunk: the full sum, a partial sum that includes this rank, or values that belong
    # to no subset of inputs at this position (they came from another chunk)
    subsets = [s for k in range(1, world + 1) for s in itertools.combinations(range(world), k)]
    statuses = []
    for chunk_got, *chunk_in in zip(torch.tensor_split(got, world), *[torch.tensor_split(e, world) for e in everyone]):
        if chunk_got.numel() == 0:
            statuses.append("empty")
            continue
        scale = world if average else 1
        full = close(chunk_got, sum(chunk_in) / scale)
        partial = any(close(chunk_got, sum(chunk_in[i] for i in s) / (scale if len(s) == world else 1))
                      for s in subsets)
        statuses.append("full" if full else "partial" if partial else "mixed")
    result["chunks"] = statuses
    floor = (x.numel() // world) * world            # elements beyond it are the remainder
    wrong = ~torch.isclose(got, target, rtol=1e-5, atol=1e-5)
    result["only_remainder_wrong"] = bool(wrong.any()) and not bool(wrong[:floor].any())
    return result


# ---------------------------------------------------------------- the check
def check_ring_all_reduce(fn) -> None:
    """``fn(tensor, average=False)`` equals ``dist.all_reduce`` on 2 and 3 ranks."""
    source, name = _source(fn)
    for world in (2, 3):
        cases = [(n, avg) for n in DIVISIBLE[world] for avg in (False, True)]
        cases += [(n, avg) for n in AWKWARD[world] for avg in (False, True)]
        reports = _run(source, name, world, cases)
        for rank, report in enumerate(reports):
            for (size, average), r in zip(cases, report["cases"]):
                if not r.get("ok") or r.get("returned_none"):
                    _explain(r, rank, world, size, average)
    passed("ring_all_reduce: equals dist.all_reduce (sum and mean) on 2 and 3 ranks, sizes 1 to 4097, "
           "divisible by the world size or not")


def _source(fn):
    if not callable(fn):
        fail(f"expected your ring_all_reduce function, got {type(fn).__name__}",
             "pass the function itself: check_ring_all_reduce(ring_all_reduce)")
    try:
        return textwrap.dedent(inspect.getsource(fn)), fn.__name__
    except (OSError, TypeError):
        fail("cannot read the source of your function",
             "define it with def in a notebook cell or a .py file; the checker sends its source to "
             "the ranks")


def _run(source: str, name: str, world: int, cases) -> list:
    try:
        reports = launch(student_worker, world, (source, name, cases), backend="gloo",
                         timeout=120, collective_timeout=WAIT, oversubscribe=True)
    except LaunchTimeout:
        fail(f"deadlock on {world} ranks: the ranks were still waiting after 120 s", DEADLOCK_HINT)
    except WorkerError as err:
        text = str(err)
        if "Timed out" in text or "timed out" in text:
            fail(f"deadlock on {world} ranks: a rank waited {WAIT:g} s for a message that never came",
                 DEADLOCK_HINT)
        first = text.split("\n\n---- traceback")[0]
        if "SIGABRT" in first:
            fail(f"a rank crashed inside gloo on {world} ranks ({first.split(';')[0]})",
                 "gloo aborts when a send and its recv have different sizes: chunks sent in the wrong "
                 "order pair chunk i on one rank with chunk j on its neighbour. " + ORDER_HINT)
        where = [line.strip() for line in text.splitlines() if "<your " in line]
        fail(f"your function failed on {world} ranks: {first}" + (f" ({where[-1]})" if where else ""),
             "it runs in fresh processes where only torch, dist (send, recv, isend, irecv, get_rank, "
             "get_world_size) and math exist: keep any helper inside the function")
    if any("not_implemented" in r for r in reports):
        raise NotImplementedError(reports[0].get("not_implemented") or "ring_all_reduce is not written yet")
    return reports


ORDER_HINT = ("at step s of the reduce-scatter rank r sends chunk (r - s) % p and adds what it "
              "receives into chunk (r - s - 1) % p; in the all-gather it sends chunk (r + 1 - s) % p "
              "and overwrites chunk (r - s) % p with what it receives")
DEADLOCK_HINT = ("in a ring every rank sends to its right neighbour (rank + 1) % p and receives "
                 "from its left neighbour (rank - 1) % p. Receiving from the wrong side, or every "
                 "rank blocking in a send before anyone receives, leaves all ranks waiting; send with "
                 "dist.isend, then recv, then wait on the send")


def _explain(r: dict, rank: int, world: int, size: int, average: bool) -> None:
    case = f"{world} ranks, size {size}, average={average}, rank {rank}"
    if r.get("bad_return"):
        fail(f"the function returned {r['bad_return']} ({case})", "return the tensor you were given")
    if r["returned_none"]:
        fail(f"the function returned None ({case})", "change the tensor in place and return it")
    if r["sum_not_mean"]:
        fail(f"average=True gives the sum, not the mean ({case})",
             f"the sum was not averaged: divide by the world size ({world}) when average=True")
    if r["mean_not_sum"]:
        fail(f"average=False gives the mean ({case})", "divide only when average=True")
    if r["copy"] and not r["in_place"]:
        fail(f"the input tensor is not changed in place ({case})",
             "like dist.all_reduce, work on the tensor you were given (its chunks are views of it) "
             "and return it")
    chunks = r.get("chunks", [])
    if size % world and r.get("only_remainder_wrong"):
        fail(f"the last {size % world} element(s) are wrong when the size is not divisible by the "
             f"world size ({case})",
             "the chunks must cover every element: torch.tensor_split(flat, p) gives p chunks whose "
             "sizes differ by at most one (size // p drops the remainder)")
    if "mixed" in chunks:
        fail(f"chunks sent in the wrong order: some chunks hold values that belong to another "
             f"position ({case}; per chunk: {chunks})",
             ORDER_HINT)
    if "full" in chunks:
        fail(f"only some chunks hold the full sum ({case}; per chunk: {chunks})",
             "the all-gather is missing or too short: after the reduce-scatter each rank owns one "
             "summed chunk; p - 1 more steps pass them around, overwriting, not adding")
    fail(f"the result differs from dist.all_reduce ({case}; per chunk: {chunks})",
         "the reduce-scatter needs p - 1 steps, each adding the received chunk to the rank's own")
