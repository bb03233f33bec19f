"""effkit.dist: launching ranks (errors, timeouts, teardown, no process left behind), all-reduce
by hand against dist.all_reduce, and the cost model. Data parallel training is in test_ddp.py."""
import socket
import sys
import time
import types

import psutil
import pytest
import torch

from effkit.dist import LaunchTimeout, WorkerError, allreduce, launch, launcher, workers


def children():
    """This process's descendants, except multiprocessing's resource tracker: one helper per
    interpreter, started with the first spawned process and ended with the interpreter."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if not any("resource_tracker" in part for part in p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(autouse=True)
def no_stray_processes():
    """Every test leaves exactly the child processes it found (none of its ranks survive)."""
    before = {p.pid for p in children()}
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [p for p in children() if p.pid not in before]
        alive = [p for p in extra if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not extra, f"processes left behind: {[(p.pid, p.name(), p.status()) for p in extra]}"
    assert not alive


def test_a_first_all_reduce_on_two_ranks():
    out = launch(workers.hello, 2)
    assert [r["rank"] for r in out] == [0, 1] and {r["sum"] for r in out} == {3.0}
    assert {r["backend"] for r in out} == {"gloo"} and {r["threads"] for r in out} == {1}
    assert len({r["pid"] for r in out}) == 2


def test_ten_launches_in_a_row_all_exit_cleanly():
    """No rank aborts at exit (launch checks every exit code) and nothing is left running."""
    for _ in range(10):
        assert [r["sum"] for r in launch(workers.hello, 2, timeout=60)] == [3.0, 3.0]


# ---------------------------------------------------------------- bad input, before anything starts
@pytest.mark.parametrize("nprocs", [0, -1, 1.5, "2", True])
def test_world_size_must_be_a_positive_int(nprocs):
    with pytest.raises(ValueError, match="nprocs .*must be an int >= 1"):
        launch(workers.hello, nprocs)


def test_more_gloo_ranks_than_cores_needs_oversubscribe(monkeypatch):
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: 2)
    with pytest.raises(ValueError, match="3 gloo processes on 2 CPU cores.*oversubscribe=True"):
        launch(workers.hello, 3, backend="gloo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_nccl_without_cuda_is_refused():
    with pytest.raises(ValueError, match="backend='nccl' needs CUDA GPUs.*use backend='gloo'"):
        launch(workers.hello, 2, backend="nccl")


def test_more_nccl_ranks_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="2 processes with NCCL need 2 GPUs .*this machine has 1"):
        launch(workers.hello, 2, backend="nccl")


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        launch(workers.hello, 2, backend="mpi")


def test_a_port_in_use_is_named():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} on 127.0.0.1 is already in use.*port=None"):
            launch(workers.hello, 2, port=port)
    assert launcher.free_port() > 0


def test_a_notebook_defined_worker_is_refused_with_the_reason(monkeypatch):
    notebook_main = types.ModuleType("__main__")          # a kernel's __main__ has no __file__
    monkeypatch.setitem(sys.modules, "__main__", notebook_main)

    def worker(rank, world):
        return rank
    worker.__module__, worker.__qualname__ = "__main__", "worker"
    with pytest.raises(ValueError, match="defined in this notebook.*cannot import a notebook"):
        launch(worker, 2)


def test_lambdas_and_nested_functions_are_refused():
    with pytest.raises(ValueError, match="lambda or a nested function"):
        launch(lambda rank, world: rank, 2)


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        launch(workers.hello, 2, timeout=0)


# ---------------------------------------------------------------- failures inside the ranks
def test_a_worker_that_raises_brings_its_traceback_back():
    start = time.monotonic()
    with pytest.raises(WorkerError) as info:
        launch(workers.raises_on, 2, (1,), timeout=60)
    message = str(info.value)
    assert message.startswith("rank 1 of 2 raised ValueError: rank 1 found a bad batch")
    assert "traceback of rank 1" in message and "workers.py" in message and "raises_on" in message
    assert time.monotonic() - start < 30


def test_a_rank_that_dies_is_named_with_its_exit_code():
    with pytest.raises(WorkerError, match=r"rank 1 of 2 died without reporting: exit code 3"):
        launch(workers.dies_on, 2, (1,), timeout=60)


def test_a_stuck_rank_fails_fast_and_is_named():
    """Rank 1 never joins the all-reduce: rank 0 gives up after collective_timeout, and the
    message names rank 1 as the one still running."""
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"rank 0 of 2 raised .*[Tt]imed out.*perhaps stuck: rank\(s\) \[1\]"):
        launch(workers.stuck_on, 2, (1,), timeout=60, collective_timeout=3)
    assert time.monotonic() - start < 30


def test_the_launch_timeout_kills_ranks_that_never_finish():
    start = time.monotonic()
    with pytest.raises(LaunchTimeout, match=r"timed out after 8 s: rank\(s\) \[0, 1\] of 2 were still running"):
        launch(workers.stuck_on, 2, (1,), timeout=8, collective_timeout=600)
    assert time.monotonic() - start < 20


# ---------------------------------------------------------------- all-reduce by hand
@pytest.mark.parametrize("world", [2, 3])
def test_naive_and_ring_all_reduce_equal_dist_all_reduce(world):
    sizes = [1, 2, 5, 7, 1000, 1001, 4099]                 # most not divisible by 2 or 3
    out = launch(allreduce.compare_worker, world, (sizes,), oversubscribe=True, timeout=120)
    for rank_result in out:
        for size in sizes:
            for name in ("naive", "ring"):
                assert rank_result[size][name] < 1e-5, (world, size, name, rank_result[size][name])


def test_all_reduce_needs_a_process_group_and_a_contiguous_tensor():
    with pytest.raises(RuntimeError, match="no process group"):
        allreduce.ring_all_reduce(torch.ones(3))
    with pytest.raises(ValueError, match="contiguous"):
        allreduce.naive_all_reduce(torch.ones(4, 3).t())


def test_cost_model():
    n = 1_000_000
    ring = allreduce.bytes_sent_per_rank(n, 4, "ring")
    naive = allreduce.bytes_sent_per_rank(n, 4, "naive")
    assert ring["busiest"] == pytest.approx(2 * 3 / 4 * 4 * n)
    assert naive["busiest"] == 3 * 4 * n
    assert allreduce.bytes_sent_per_rank(n, 1, "ring")["busiest"] == 0
    # with p = 2 both send N per rank, but the naive version does it one direction at a time
    assert allreduce.model_seconds(n, 2, "naive", 1e9) == pytest.approx(2 * allreduce.model_seconds(n, 2, "ring", 1e9))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        allreduce.bytes_sent_per_rank(n, 2, "tree")


# ---------------------------------------------------------------- ZeRO / FSDP memory per rank
def test_zero_stages_shard_what_they_promise():
    from effkit.dist import memory_math as mm
    n = 7_000_000_000
    ddp = mm.per_rank_bytes(n, 8, "DDP")
    assert ddp["total"] == 16 * n and mm.per_rank_bytes(n, 1, "DDP", "fp32")["total"] == 16 * n
    z1 = mm.per_rank_bytes(n, 8, "ZeRO-1")
    assert z1["optimizer_state"] == 12 * n // 8 and z1["weights"] == 2 * n and z1["gradients"] == 2 * n
    z2 = mm.per_rank_bytes(n, 8, "ZeRO-2 / FSDP SHARD_GRAD_OP")
    assert z2["gradients"] == 2 * n // 8 and z2["weights"] == 2 * n
    z3 = mm.per_rank_bytes(n, 8, "ZeRO-3 / FSDP FULL_SHARD")
    assert z3["total"] == 16 * n // 8
    assert mm.per_rank_bytes(10, 3, "ZeRO-3 / FSDP FULL_SHARD", "fp32")["weights"] == 4 * 4  # ceil(10 / 3)
    frame = mm.table({"7B": n}, worlds=(1, 8))
    assert len(frame) == 1 + 3 * 2


@pytest.mark.parametrize("kw, words", [({"stage": "ZeRO-4"}, "stage must be one of"),
                                       ({"precision": "fp8"}, "precision must be one of"),
                                       ({"world": 0}, "world must be an int >= 1")])
def test_zero_memory_rejects_bad_input(kw, words):
    from effkit.dist import memory_math as mm
    args = {"num_params": 100, "world": 2, "stage": "DDP", "precision": "mixed", **kw}
    with pytest.raises(ValueError, match=words):
        mm.per_rank_bytes(**args)
