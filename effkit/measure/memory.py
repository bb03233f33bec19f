"""Memory of one training step: weights, gradients, optimizer state and activations."""
from __future__ import annotations

import weakref
from collections import defaultdict

import torch
from torch import nn

from .sizes import count_parameters, tensor_bytes
from ..evaluate import PRECISIONS, autocast_context  # the one place autocast is configured
from .timing import check_count


# ---------------------------------------------------------------- memory of a training step
# Chapter 02b. Training memory has four parts: the weights, one gradient per trainable weight,
# the optimizer's state (AdamW: two moments per trainable weight) and the activations that the
# forward pass saves for the backward pass. The first three depend on the model only; the
# activations grow with batch size x sequence length.
MEMORY_PARTS = ("weights", "gradients", "optimizer_state", "weight_copies", "activations")


def storage_bytes(tensors, exclude=frozenset()) -> int:
    """Bytes of the distinct storages behind ``tensors``, each storage counted once.

    Two views of one tensor (``x`` and ``x.t()``, or the slices of a fused qkv output) share one
    block of memory, so they are counted once, and at the size of the whole block.
    exclude: storage keys (from :func:`_storage_key`) to leave out, e.g. the parameters'.
    """
    seen, total = set(exclude), 0
    for t in tensors:
        key = _storage_key(t)
        if key in seen:
            continue
        seen.add(key)
        total += _nbytes(t)
    return total


def _storage_key(t: torch.Tensor):
    try:
        storage = t.untyped_storage()
        return (storage.device.type, storage.device.index, storage.data_ptr())
    except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without a plain storage
        return ("object", id(t))


def _nbytes(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return t.numel() * t.element_size()


def _derived_from_parameter(t: torch.Tensor, param_ids: set[int], depth: int = 4) -> bool:
    """Is ``t`` a parameter run through a short chain of one-input ops (a cast, a transpose)?

    Autocast keeps a bf16/fp16 copy of each weight for the backward pass; in the graph it is
    ``ToCopyBackward0 -> AccumulateGrad(weight)``. Those copies are weight-sized, not
    batch-sized, so they are reported apart from the activations.
    """
    node = t.grad_fn
    for _ in range(depth):
        if node is None:
            return False
        variable = getattr(node, "variable", None)  # only AccumulateGrad nodes have one
        if variable is not None:
            return id(variable) in param_ids
        inputs = [fn for fn, _ in node.next_functions if fn is not None]
        if len(inputs) != 1:
            return False
        node = inputs[0]
    return False


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _check_training_batch(batch) -> None:
    from collections.abc import Mapping

    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a dict of tensors (input_ids, attention_mask, labels), "
                        f"got {type(batch).__name__}")
    if "labels" not in batch:
        raise ValueError(f"batch has no 'labels' (keys: {sorted(batch)}): measuring a training step "
                         f"needs a loss to run backward; use a batch from effkit.batching.make_loader")


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _forward_loss(model: nn.Module, batch, precision: str) -> torch.Tensor:

    dev = _model_device(model)
    batch = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.items()}
    with autocast_context(dev, precision):
        return model(**batch).loss


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch,
                  precision: str = "fp32") -> float:
    """One plain optimizer step: forward (autocast per ``precision``), backward, step, zero grads.

    This is the step that :func:`step_time` and :func:`memory_breakdown` measure; ``fit`` wraps
    the same three calls with a learning-rate schedule, clipping and hooks. There is no loss
    scaling, so use it to measure fp16, not to train with it. Returns the loss as a float.
    """
    _check_precision(precision)
    _check_training_batch(batch)
    loss = _forward_loss(model, batch, precision)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def memory_breakdown(model: nn.Module, optimizer: torch.optim.Optimizer, batch,
                     precision: str = "fp32") -> dict[str, int]:
    """Bytes held during one training step, by what holds them.

    model: any module whose ``model(**batch)`` returns an output with ``.loss``.
    optimizer: built on (some of) ``model``'s parameters, e.g. AdamW.
    batch: dict of tensors with ``labels`` (moved to the model's device here).
    precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast, as in ``fit``).

    Returns ``{"weights", "gradients", "optimizer_state", "weight_copies", "activations",
    "total"}`` in bytes:
      weights          every parameter and buffer, as stored;
      gradients        ``.grad`` of the trainable parameters after one backward;
      optimizer_state  every tensor in ``optimizer.state`` after one step (AdamW: exp_avg,
                       exp_avg_sq and a scalar ``step`` per parameter);
      weight_copies    low-precision copies of weights that autocast saves for backward
                       (0 in fp32);
      activations      every other tensor saved for backward during the forward pass, seen
                       through ``torch.autograd.graph.saved_tensors_hooks``: each storage
                       counted once, parameters left out (they are in ``weights``).
    Saved tensors are found the same way on every device, from autograd rather than from the
    allocator, so CPU and GPU numbers mean the same thing; they differ only where a device runs
    other kernels (a fused attention kernel on a GPU saves no attention map).
    ``total`` is the sum: the memory a training step needs beyond temporaries that live inside
    one operation.

    The step really runs (in train mode, so dropout masks count), then everything it changed
    is put back: trainable weights, buffers, gradients, optimizer state, train/eval mode and
    the random number generators. The caller's model and optimizer are as they were.
    """
    _check_precision(precision)
    _check_training_batch(batch)
    _check_optimizer_owns(model, optimizer)
    params = list(model.parameters())
    param_keys = {_storage_key(p) for p in params} | {_storage_key(b) for b in model.buffers()}
    param_ids = {id(p) for p in params}
    saved = _snapshot(model, optimizer)
    dev = _model_device(model)
    rng_devices = [dev] if dev.type == "cuda" else []  # CUDA path: fork the GPU generator too
    try:
        with torch.random.fork_rng(devices=rng_devices):
            model.train()
            for p in params:
                p.grad = None
            optimizer.state = defaultdict(dict)  # a fresh state, so the step allocates it anew
            kept = []  # weak references: a saved tensor counts only if the graph still holds it

            def pack(t):
                kept.append(weakref.ref(t))
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = _forward_loss(model, batch, precision)
            alive = [t for t in (r() for r in kept) if t is not None]
            copies = [t for t in alive if _derived_from_parameter(t, param_ids)]
            copy_keys = {_storage_key(t) for t in copies}
            weight_copies = storage_bytes(copies, exclude=param_keys)
            activations = storage_bytes(alive, exclude=param_keys | copy_keys)
            del alive, copies
            loss.backward()
            gradients = storage_bytes(p.grad for p in params if p.grad is not None)
            optimizer.step()
            optimizer_state = storage_bytes(v for state in optimizer.state.values()
                                            for v in state.values() if torch.is_tensor(v))
    finally:
        _restore_snapshot(model, optimizer, saved)
    parts = {"weights": tensor_bytes(model), "gradients": gradients,
             "optimizer_state": optimizer_state, "weight_copies": weight_copies,
             "activations": activations}
    parts["total"] = sum(parts.values())
    return parts


def _check_optimizer_owns(model: nn.Module, optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    owned = {id(p) for p in model.parameters()}
    stray = sum(id(p) not in owned for g in optimizer.param_groups for p in g["params"])
    if stray:
        raise ValueError(f"the optimizer holds {stray} parameter(s) that are not in the model; "
                         f"build it from this model's parameters")


def _snapshot(model: nn.Module, optimizer) -> dict:
    # Only what a step can change: the optimizer's parameters, buffers, grads, state and mode.
    stepped = [p for g in optimizer.param_groups for p in g["params"]]
    return {"training": model.training,
            "values": [(p, p.detach().clone()) for p in stepped],
            "buffers": [(b, b.detach().clone()) for b in model.buffers()],
            "grads": [(p, p.grad) for p in model.parameters()],
            "state": optimizer.state}


def _restore_snapshot(model: nn.Module, optimizer, saved: dict) -> None:
    with torch.no_grad():
        for t, value in saved["values"] + saved["buffers"]:
            t.copy_(value)
    for p, grad in saved["grads"]:
        p.grad = grad
    optimizer.state = saved["state"]
    model.train(saved["training"])


def analytic_memory(model: nn.Module, state_per_param: int = 2, dtype_bytes: int = 4) -> dict[str, int]:
    """What :func:`memory_breakdown` should find for the model-sized parts, multiplied out.

    weights = dtype_bytes x all parameters, plus the buffers as stored (BERT keeps its position
    ids as int64), gradients = dtype_bytes x trainable, optimizer_state = state_per_param x
    dtype_bytes x trainable (AdamW: 2 moments) plus one 4-byte ``step`` tensor per trainable
    parameter tensor. Activations have no formula that fits every model, so they are measured.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    n_trainable = sum(p.numel() for p in trainable)
    return {"weights": dtype_bytes * count_parameters(model) + buffers,
            "gradients": dtype_bytes * n_trainable,
            "optimizer_state": state_per_param * dtype_bytes * n_trainable + 4 * len(trainable)}


# ---------------------------------------------------------------- a batch of a fixed shape
def fixed_length_batch(split, tokenizer, length: int, batch_size: int, seed: int = 0) -> dict:
    """``batch_size`` real examples of a sentence split, padded (or cut) to exactly ``length`` tokens.

    split: a :class:`~effkit.data.TextSplit` (``.texts``, ``.labels``, ``.take``).
    Returns ``{"input_ids", "attention_mask", "token_type_ids", "labels"}`` with the first three
    of shape ``(batch_size, length)`` and ``labels`` of shape ``(batch_size,)``. Memory and time
    depend on the padded shape, not on how many tokens are real, so measurements at a given
    length use a batch of exactly that shape.
    """
    check_count("length", length, 2)
    check_count("batch_size", batch_size, 1)
    if len(split) < batch_size:
        raise ValueError(f"the split has {len(split)} examples, fewer than batch_size={batch_size}")
    rows = split.take(batch_size, seed=seed)
    enc = tokenizer(rows.texts, padding="max_length", truncation=True, max_length=length,
                    return_tensors="pt")
    return {**enc, "labels": torch.tensor(rows.labels, dtype=torch.long)}
