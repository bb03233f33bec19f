"""Start N worker processes, each a rank of one process group, from a notebook or a script.

``launch(fn, nprocs=2, args=(...))`` runs ``fn(rank, world_size, *args)`` in ``nprocs`` fresh
Python processes (``spawn``) and returns the list of their return values, by rank. Each rank
joins a ``torch.distributed`` process group first (gloo on CPU, NCCL on CUDA GPUs, one GPU per
rank) and leaves it cleanly afterwards.

Why ``fn`` must live in an importable module (effkit, or a ``.py`` file): ``spawn`` starts a new
interpreter and sends it ``fn`` by *name* (module + qualified name, which is how pickle sends a
function). The child imports that module to find it. A function defined in a notebook lives in
the kernel's ``__main__``, which has no file: the child has nothing to import it from, so it dies
before it starts. ``fork`` would copy the kernel instead, threads and all, which is unsafe once
torch has started its thread pools; torchrun starts scripts, so there the script is the module.

What can go wrong, and what the caller sees (never a hang, never a process left behind):

- a rank raises: :class:`WorkerError` with that rank's traceback, the other ranks are stopped;
- a rank dies (killed, out of memory, a crash in native code): :class:`WorkerError` naming the
  rank and its exit code or signal;
- a rank is stuck (deadlock, a peer that never answers): collectives give up after
  ``collective_timeout`` seconds inside the ranks, and the whole launch after ``timeout``:
  :class:`LaunchTimeout` naming the ranks still running; they are killed.
"""
from __future__ import annotations

import gc
import os
import pickle
import queue as queue_module
import signal
import socket
import sys
import time
import traceback
from datetime import timedelta

BACKENDS = ("gloo", "nccl")
HOST = "127.0.0.1"


class LaunchError(RuntimeError):
    """A launch failed; the message names the rank(s) and what happened to them."""


class WorkerError(LaunchError):
    """A rank raised an exception (its traceback is in the message) or died."""


class LaunchTimeout(LaunchError):
    """Ranks were still running when the launch's timeout ran out; they were killed."""


# ---------------------------------------------------------------- checks before anything starts
def choose_backend(backend: str | None, nprocs: int) -> str:
    """``backend`` checked, or the default: NCCL when CUDA has a GPU for every rank, else gloo."""
    import torch

    if backend is None:
        cuda = torch.cuda.is_available() and torch.cuda.device_count() >= nprocs
        return "nccl" if cuda else "gloo"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None (choose for me), got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA GPUs, and torch sees none on this machine; "
                             "use backend='gloo' (CPU processes) or backend=None to choose")
        gpus = torch.cuda.device_count()
        if nprocs > gpus:  # CUDA path
            raise ValueError(f"{nprocs} processes with NCCL need {nprocs} GPUs (one per rank); this "
                             f"machine has {gpus}. Use nprocs <= {gpus}, or backend='gloo'")
    return backend


def check_nprocs(nprocs, backend: str, oversubscribe: bool = False) -> None:
    """A world size must be a positive int that the device can hold: one GPU per NCCL rank, one
    CPU core per gloo rank unless ``oversubscribe`` (fine for correctness, useless for timing)."""
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs (the world size) must be an int >= 1, got {nprocs!r}")
    cores = os.cpu_count() or 1
    if backend == "gloo" and nprocs > cores and not oversubscribe:
        raise ValueError(f"{nprocs} gloo processes on {cores} CPU cores: the ranks would share cores. "
                         f"Use nprocs <= {cores}, or pass oversubscribe=True for a correctness run "
                         "(its timings would mean nothing)")


def check_importable(fn) -> None:
    """``fn`` must be found by spawned processes under its module and name (see module docstring)."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", repr(fn))
    main = sys.modules.get("__main__")
    if module == "__main__" and not getattr(main, "__file__", None):
        raise ValueError(
            f"the worker {name!r} is defined in this notebook (module __main__, which has no file). "
            "spawn starts fresh Python processes that import the worker by module and name, and "
            "they cannot import a notebook. Put the worker in a .py module (as effkit.dist's "
            "workers are) and import it from there")
    if "<locals>" in name or "<lambda>" in name:
        raise ValueError(f"the worker {name!r} is a lambda or a nested function; spawned processes "
                         "can only import module-level functions")
    try:
        pickle.dumps(fn)
    except Exception as err:  # noqa: BLE001  (pickle raises several types)
        raise ValueError(f"the worker {name!r} cannot be sent to a spawned process: {err}") from None


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port: int, host: str = HOST) -> int:
    """``port`` if it can be bound on ``host``; a ValueError saying it is taken otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int in [1, 65535] or None (pick a free one), got {port!r}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise ValueError(f"port {port} on {host} is already in use (another process group, or "
                             "another program, listens there); pass port=None to pick a free one") from None
    return port


# ---------------------------------------------------------------- inside each rank
def _entry(fn, rank: int, world_size: int, args, backend: str, port: int, threads: int,
           collective_timeout: float, rendezvous_timeout: float, results) -> None:
    """What every spawned process runs: join the group, run ``fn``, report, leave cleanly."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR=HOST, MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    if backend == "gloo":
        os.environ["EFFKIT_DEVICE"] = "cpu"   # gloo moves CPU tensors; keep ek.device() on the CPU
    torch.set_num_threads(threads)            # ranks must not fight over the same cores
    try:
        if backend == "nccl":                 # CUDA path: one GPU per rank; "cuda" now means it
            torch.cuda.set_device(rank)
        # The rendezvous may wait as long as the launch (ranks start at different speeds on a
        # busy machine); once joined, a collective or send/recv waits collective_timeout.
        store = dist.TCPStore(HOST, port, world_size, is_master=rank == 0,
                              timeout=timedelta(seconds=rendezvous_timeout))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=collective_timeout))
        value = fn(rank, world_size, *args)
        results.put(("ok", rank, _portable(value)))
    except BaseException as err:  # noqa: BLE001  (report everything, then exit non-zero)
        results.put(("error", rank, f"{type(err).__name__}: {err}", traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        teardown()


def teardown() -> None:
    """Leave the process group cleanly. Whatever still holds tensors that the group knows about
    (a DDP model, an optimizer) must be gone first: collect garbage, then destroy the group.
    Destroying it while DDP's reducer is alive can abort the process at exit."""
    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _portable(value):
    """Tensors to numpy, recursively: results travel by pickle, and a pickled torch tensor would
    travel through shared memory that dies with the rank that made it."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(v) for v in value)
    return value


# ---------------------------------------------------------------- the launcher
def launch(fn, nprocs: int = 2, args: tuple = (), *, backend: str | None = None,
           port: int | None = None, timeout: float = 120.0, collective_timeout: float | None = None,
           threads: int | None = None, oversubscribe: bool = False) -> list:
    """Run ``fn(rank, nprocs, *args)`` in ``nprocs`` spawned processes; return their results by rank.

    fn: a module-level function (see the module docstring for why). Its return value must pickle;
        tensors in it come back as numpy arrays.
    backend: ``"gloo"`` (CPU), ``"nccl"`` (CUDA, one GPU per rank) or None (NCCL if there is a
        GPU for every rank, else gloo).
    port: the rendezvous port on 127.0.0.1; None picks a free one.
    timeout: seconds for the whole launch; ranks still running then are killed.
    collective_timeout: seconds a rank waits in one collective or send/recv before it raises
        (default: ``timeout``).
    threads: torch threads per rank (default: the CPU cores divided among the ranks).
    oversubscribe: allow more gloo ranks than CPU cores (correctness runs only).
    Raises ValueError before starting anything on bad arguments, :class:`WorkerError` when a rank
    raises or dies, :class:`LaunchTimeout` when ranks are stuck. No child outlives the call.
    """
    import multiprocessing

    backend = choose_backend(backend, nprocs if isinstance(nprocs, int) else 1)
    check_nprocs(nprocs, backend, oversubscribe)
    check_importable(fn)
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    port = free_port() if port is None else check_port(port)
    threads = threads or max(1, (os.cpu_count() or 1) // nprocs)
    collective_timeout = collective_timeout or timeout
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_entry, daemon=True, name=f"effkit-rank{rank}",
                         args=(fn, rank, nprocs, tuple(args), backend, port, threads,
                               collective_timeout, timeout, results))
             for rank in range(nprocs)]
    try:
        for p in procs:
            p.start()
        values = _collect(procs, results, timeout)
        _check_clean_exit(procs)
        return values
    finally:
        _stop(procs)
        results.close()
        results.join_thread()


def _collect(procs, results, timeout: float) -> list:
    """Wait for one report per rank; raise as soon as a rank fails, dies, or time runs out."""
    deadline = time.monotonic() + timeout
    done: dict[int, object] = {}
    while len(done) < len(procs):
        try:
            _receive(results.get(timeout=0.05), procs, done)
            continue
        except queue_module.Empty:
            pass
        exited = [r for r, p in enumerate(procs) if r not in done and p.exitcode is not None]
        if exited:
            _drain(results, procs, done, wait=0.5)  # a report sent just before exiting may be in flight
            for rank in exited:
                if rank not in done:
                    raise WorkerError(f"rank {rank} of {len(procs)} died without reporting: "
                                      f"{_describe_exit(procs[rank].exitcode)}")
        if time.monotonic() > deadline:
            running = [r for r, p in enumerate(procs) if r not in done and p.is_alive()]
            raise LaunchTimeout(
                f"the launch timed out after {timeout:g} s: rank(s) {running} of {len(procs)} were "
                f"still running (ranks {sorted(done)} had finished). A deadlock, or ranks waiting "
                "for a peer that never answers. They were killed.")
    return [done[r] for r in range(len(procs))]


def _drain(results, procs, done: dict, wait: float) -> None:
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            _receive(results.get(timeout=0.05), procs, done)
        except queue_module.Empty:
            pass


def _receive(report, procs, done: dict) -> None:
    """Store a rank's result, or raise the error it reported."""
    if report[0] == "ok":
        done[report[1]] = report[2]
        return
    _, rank, message, trace = report
    others = [r for r, p in enumerate(procs) if r != rank and r not in done and p.is_alive()]
    stopped = f" (still running, perhaps stuck: rank(s) {others}; they were stopped)" if others else ""
    died = [r for r, p in enumerate(procs) if r != rank and r not in done and p.exitcode]
    first = "".join(f"rank {r} of {len(procs)} died without reporting: "
                    f"{_describe_exit(procs[r].exitcode)}; then " for r in died)
    raise WorkerError(f"{first}rank {rank} of {len(procs)} raised {message}{stopped}"
                      f"\n\n---- traceback of rank {rank} ----\n{trace}")


def _check_clean_exit(procs, wait: float = 30.0) -> None:
    """Every rank reported; each must also leave cleanly. A rank that aborts while tearing down
    (SIGABRT from a process group destroyed under a live DDP reducer) is an error too."""
    end = time.monotonic() + wait
    for p in procs:
        p.join(timeout=max(0.1, end - time.monotonic()))
    bad = [(r, p.exitcode) for r, p in enumerate(procs) if p.exitcode not in (0,)]
    if bad:
        raise WorkerError("; ".join(f"rank {r} reported its result but then "
                                    + ("did not exit" if code is None else f"exited badly: {_describe_exit(code)}")
                                    for r, code in bad) + " (during teardown)")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (out of memory, a crash in native code, or killed from outside)"
    return f"exit code {code} (a crash in native code, or os._exit)"


def _stop(procs) -> None:
    """Terminate, then kill, then reap every child: none is left running or as a zombie."""
    started = [p for p in procs if p.pid is not None]
    for p in started:
        if p.is_alive():
            p.terminate()
    for p in started:
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=3)
