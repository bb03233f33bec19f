"""Sizes: parameter counts, bytes held, and bytes per parameter in each storage format."""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from ..bitpack import pack_bits


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


# ---------------------------------------------------------------- bytes per parameter by format
# Bits one parameter takes in each storage format. int8/int4 store integer codes; the per-tensor
# or per-group scales that turn codes back into weights are ignored here (chapter 06 adds them).
FORMAT_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "int4": 4}
_FLOAT_FORMATS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def stored_as(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    """The tensor that would hold ``weight`` in format ``fmt`` (a key of ``FORMAT_BITS``).

    fp32/fp16/bf16: ``weight`` cast to that dtype. int8: symmetric absmax codes as int8.
    int4: absmax codes shifted to [0, 15] and packed two per byte with ``effkit.quant.pack_bits``.
    The codes are real but crude (one scale per tensor); chapter 06 quantizes properly.
    """
    if fmt not in FORMAT_BITS:
        raise ValueError(f"fmt must be one of {list(FORMAT_BITS)}, got {fmt!r}")
    w = weight.detach()
    if fmt in _FLOAT_FORMATS:
        return w.to(_FLOAT_FORMATS[fmt])
    levels = 2 ** (FORMAT_BITS[fmt] - 1) - 1  # 127 for int8, 7 for int4
    scale = w.abs().max().clamp_min(torch.finfo(torch.float32).tiny) / levels
    codes = torch.round(w.float() / scale).clamp(-levels, levels)
    if fmt == "int8":
        return codes.to(torch.int8)
    return pack_bits((codes + 8).to(torch.int32), 4)  # shift [-7, 7] to [1, 15], two per byte


def parameter_bytes(model: nn.Module, fmt: str) -> int:
    """Bytes the model's parameters take when every one is stored in ``fmt`` (scales ignored).

    Measured, not multiplied out: each parameter is converted with ``stored_as`` and its
    ``element_size() * numel()`` summed. Shared (tied) parameters count once; buffers not at all.
    """
    if fmt not in FORMAT_BITS:
        raise ValueError(f"fmt must be one of {list(FORMAT_BITS)}, got {fmt!r}")
    seen, total = set(), 0
    for p in model.parameters():  # .parameters() already yields a tied tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        stored = stored_as(p, fmt)
        total += stored.element_size() * stored.numel()
    return total


def bytes_by_format(model: nn.Module, formats=tuple(FORMAT_BITS)) -> dict[str, int]:
    """``{fmt: parameter_bytes(model, fmt)}`` for each format, e.g. to tabulate model size."""
    return {fmt: parameter_bytes(model, fmt) for fmt in formats}
