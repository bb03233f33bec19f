"""Distributed data parallel (chapter 07): launch ranks, all-reduce by hand, DDP, memory math.

- ``effkit.dist.launcher``: ``launch(fn, nprocs, args)`` runs importable workers in spawned
  processes (gloo on CPU, NCCL on GPUs), with timeouts and clean teardown;
- ``effkit.dist.allreduce``: naive (reduce + broadcast) and ring all-reduce with send/recv, the
  cost model and the workers that check and time them;
- ``effkit.dist.ddp``: data parallel training of the sentiment classifier with ``fit`` (own
  all-reduce hook, or torch's DistributedDataParallel) and its workers;
- ``effkit.dist.memory_math``: weights, gradients and optimizer state per rank under ZeRO 1/2/3
  and FSDP;
- ``effkit.dist.workers``: small demo workers (a first all-reduce, and ranks that fail).
"""
from .launcher import LaunchError, LaunchTimeout, WorkerError, free_port, launch  # noqa: F401
