"""Data parallel training of the sentiment classifier with chapter 02's ``fit``.

Every rank holds a full copy of the model and trains on its own share of each global batch
(``DistributedSampler``). After the backward pass the gradients are averaged over the ranks, so
every rank takes the same optimizer step and the copies stay identical. Two ways to average:

- :class:`AllReduceHook`: a ``fit`` hook written here. It broadcasts rank 0's weights once at
  the start, then after every backward flattens the gradients into buckets and all-reduces each
  bucket (``dist.all_reduce``, or this chapter's own ring);
- torch's ``DistributedDataParallel``: the same averaging, started bucket by bucket *during*
  the backward pass, so communication overlaps the computation of earlier layers' gradients.

:func:`train_worker` runs a list of :class:`RunSpec` in one rank (for :func:`effkit.dist.launch`
or torchrun); :func:`train_run` runs one in the calling process (world size 1 for the reference).
"""
from __future__ import annotations

import gc
import hashlib
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..batching import Encoded, PaddingCollator
from ..config import device, seed_everything
from ..models import load_encoder
from ..train import Hook, TrainConfig, fit
from .allreduce import ring_all_reduce

MODES = ("single", "hook", "torch")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the sentiment classifier.

    mode: ``"single"`` (no gradient averaging: one process), ``"hook"`` (:class:`AllReduceHook`)
        or ``"torch"`` (``DistributedDataParallel``).
    batch_size: examples per rank per micro-batch; the global batch is
        ``batch_size * world * grad_accum_steps``.
    bucket_mb: gradient bucket size (hook and torch); None with the hook means one all-reduce per
        parameter tensor.
    all_reduce: the hook's algorithm, ``"torch"`` (``dist.all_reduce``) or ``"ring"`` (ours).
    dropout: keep dropout on. Off, every rank computes exactly what one big batch computes (with
        it on, ranks draw different masks), which is what the equivalence checks need.
    threads: torch threads for this run (None: leave as launched).
    """
    mode: str = "hook"
    batch_size: int = 8
    steps: int = 10
    lr: float = 5e-5
    max_length: int = 64
    grad_accum_steps: int = 1
    bucket_mb: float | None = 25.0
    all_reduce: str = "torch"
    dropout: bool = False
    threads: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.all_reduce not in ("torch", "ring"):
            raise ValueError(f"all_reduce must be 'torch' or 'ring', got {self.all_reduce!r}")

    def config(self) -> TrainConfig:
        return TrainConfig(lr=self.lr, epochs=1, batch_size=self.batch_size, max_length=self.max_length,
                           max_steps=self.steps, grad_accum_steps=self.grad_accum_steps, seed=self.seed)


# ---------------------------------------------------------------- gradient averaging as a hook
class AllReduceHook(Hook):
    """Average every gradient over the ranks after backward (data parallelism in a ``fit`` hook).

    bucket_mb: gradients are flattened into buckets of about this size, one all-reduce each
        (few large messages beat many small ones); None: one all-reduce per parameter tensor.
    algorithm: ``"torch"`` (``dist.all_reduce``) or ``"ring"`` (:func:`ring_all_reduce`).
    ``seconds`` collects the time spent communicating at each step.
    """

    def __init__(self, bucket_mb: float | None = 25.0, algorithm: str = "torch"):
        self.bucket_bytes = None if bucket_mb is None else int(bucket_mb * 2**20)
        self.algorithm = algorithm
        self.seconds: list[float] = []

    def on_train_start(self, model, optimizer):
        for p in model.parameters():          # every rank starts from rank 0's weights, as DDP does
            dist.broadcast(p.data, src=0)

    def after_backward(self, model):
        start = time.perf_counter()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        for bucket in buckets(grads, self.bucket_bytes):
            flat = torch.cat([g.flatten() for g in bucket]) if len(bucket) > 1 else bucket[0]
            self._average(flat)
            if len(bucket) > 1:               # copy the averaged values back into each .grad
                for g, value in zip(bucket, flat.split([g.numel() for g in bucket])):
                    g.copy_(value.view_as(g))
        self.seconds.append(time.perf_counter() - start)

    def _average(self, flat: torch.Tensor) -> None:
        if self.algorithm == "ring":
            ring_all_reduce(flat, average=True)
        else:
            dist.all_reduce(flat)
            flat /= dist.get_world_size()


def buckets(tensors: list[torch.Tensor], bucket_bytes: int | None) -> list[list[torch.Tensor]]:
    """Consecutive tensors grouped until a group reaches ``bucket_bytes`` (None: one per tensor)."""
    if bucket_bytes is None:
        return [[t] for t in tensors]
    out, current, size = [], [], 0
    for t in tensors:
        current.append(t)
        size += t.numel() * t.element_size()
        if size >= bucket_bytes:
            out.append(current)
            current, size = [], 0
    return out + ([current] if current else [])


class StepTimer(Hook):
    """Seconds of each optimizer step, from one ``after_step`` to the next."""

    def __init__(self):
        self.seconds: list[float] = []
        self._last = None

    def on_train_start(self, model, optimizer):
        self._last = time.perf_counter()

    def after_step(self, model):
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


# ---------------------------------------------------------------- pieces of a run
def no_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability to 0 (BERT's attention dropout reads ``self.dropout.p``)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def distributed_loader(encoded: Encoded, batch_size: int, rank: int, world: int, seed: int = 0):
    """A DataLoader over this rank's share: ``DistributedSampler`` shuffles all examples with
    ``seed`` (the same permutation on every rank) and gives rank r every world-th one from
    position r. So at each step the ranks' batches together are one batch of ``world *
    batch_size`` consecutive examples of that permutation, exactly what one process with the
    larger batch sees (``world=1``)."""
    sampler = torch.utils.data.DistributedSampler(encoded, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=seed, drop_last=True)
    return torch.utils.data.DataLoader(encoded, batch_size=batch_size, sampler=sampler,
                                       collate_fn=PaddingCollator(encoded.pad_token_id))


def parameter_checksum(model: nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal only if the weights are bit-identical."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def parameter_sums(model: nn.Module) -> list[float]:
    """One float64 sum per parameter tensor: a compact fingerprint to compare runs within a
    tolerance (the checksum compares them bit for bit)."""
    return [float(p.detach().double().sum()) for p in model.parameters()]


def train_run(spec: RunSpec, encoded: Encoded, rank: int = 0, world: int = 1) -> dict:
    """Train a fresh MiniLM classifier as ``spec`` says and return what was measured.

    Returns ``{"spec", "rank", "world", "losses" (this rank's loss per step), "mean_losses" (the
    global batch's loss per step: the ranks' losses averaged), "step_seconds", "comm_seconds"
    (hook only), "checksum", "sums"}``.
    """
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if spec.mode != "single" and not dist.is_initialized():
        raise RuntimeError(f"mode {spec.mode!r} needs a process group; run it with effkit.dist.launch")
    seed_everything(spec.seed)                 # the new head starts the same on every rank
    model, _ = load_encoder("sequence", 2)
    if not spec.dropout:
        no_dropout(model)
    dev = device()
    model.to(dev)
    timer, hooks = StepTimer(), []
    if spec.mode == "hook":
        hooks.append(AllReduceHook(spec.bucket_mb, spec.all_reduce))
    trained = model
    if spec.mode == "torch":
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            bucket_cap_mb=spec.bucket_mb or 25.0)
    loader = distributed_loader(encoded, spec.batch_size, rank, world, spec.seed)
    history = fit(trained, loader, None, spec.config(), hooks=[*hooks, timer], progress=False,
                  device=dev)
    losses = torch.tensor(history.train_loss, dtype=torch.float64)
    mean = losses.clone()
    if world > 1:
        dist.all_reduce(mean)
        mean /= world
    result = {"spec": asdict(spec), "rank": rank, "world": world, "losses": losses.tolist(),
              "mean_losses": mean.tolist(), "step_seconds": timer.seconds,
              "comm_seconds": hooks[0].seconds if hooks else [],
              "checksum": parameter_checksum(model), "sums": parameter_sums(model)}
    # Free DDP's reducer, the optimizer inside fit is gone already, and the model, before the
    # process group is destroyed (effkit.dist.launcher.teardown); otherwise a rank can abort at exit.
    del trained, model, loader
    gc.collect()
    return result


def train_worker(rank: int, world: int, encoded: Encoded, specs: list[RunSpec]) -> list[dict]:
    """Run each spec in turn in this rank (a worker for :func:`effkit.dist.launch`)."""
    return [train_run(spec, encoded, rank, world) for spec in specs]


# ---------------------------------------------------------------- torchrun
def torchrun_main(encoded: Encoded, specs: list[RunSpec], out_path: str | None = None) -> list[dict] | None:
    """The body of a script started by ``torchrun``: torchrun sets RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR and MASTER_PORT in each process's environment; join the group from them, train,
    leave cleanly, and have rank 0 write the results as JSON to ``out_path``."""
    import json

    from .launcher import teardown

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":   # CUDA path: one GPU per process on this node
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    else:
        os.environ["EFFKIT_DEVICE"] = "cpu"
    dist.init_process_group(backend)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        results = train_worker(rank, world, encoded, specs)
        hosts = _gather_hosts()                # a collective: every rank takes part
        if rank == 0 and out_path:
            with open(out_path, "w", encoding="utf-8") as f:
                json.dump({"world": world, "backend": backend, "ranks": hosts, "results": results}, f)
        return results
    finally:
        teardown()


def _gather_hosts() -> list[str]:
    names = [None] * dist.get_world_size()
    dist.all_gather_object(names, f"{os.uname().nodename}:pid{os.getpid()}")
    return names
