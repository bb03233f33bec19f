"""Measuring models: parameter counts, bytes, (later) memory breakdown and step time."""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def parameters_by_module_type(model: nn.Module) -> dict[str, int]:
    """Parameters owned directly by each module type (``Linear``, ``Embedding``, ``LayerNorm`` ...)."""
    counts: Counter = Counter()
    seen = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                counts[type(module).__name__] += p.numel()
    return dict(counts.most_common())


def trainable_summary(model: nn.Module) -> str:
    """The line PEFT readers look for: ``trainable params: … || all params: … || trainable%: …``."""
    trainable, total = count_parameters(model, True), count_parameters(model)
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}"


def tensor_bytes(model: nn.Module) -> int:
    """Bytes actually held by the model's parameters and buffers, as stored."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total
