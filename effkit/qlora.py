"""QLoRA: LoRA adapters on a frozen base whose Linear weights are stored in 4-bit NF4.

QLoRA (Dettmers et al., 2023) keeps the pretrained weights frozen *and quantized* (NF4, block 64,
double-quantized constants) and trains LoRA adapters in full precision beside them::

    y = x · dequant(W_nf4)^T + b + (alpha / r) · x A^T B^T

Two details make it cheap:

- the base weight is dequantized on the fly in the forward pass and **again in the backward
  pass** (:class:`DequantizedMatmul`), so no full-precision copy of any weight is kept;
- the gradient only has to flow *through* the frozen base (to reach adapters in lower layers);
  the base gets no gradient and no optimizer state.

``prepare_qlora(model, targets, r, alpha)`` turns a classifier into that, in place, and returns a
:class:`effkit.quant_layers.QuantReport` of the quantized layers.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .lora import _check_hyperparameters, find_modules, set_trainable
from .quant_layers import QuantLinear, QuantReport, name_matches


class DequantizedMatmul(torch.autograd.Function):
    """``x @ W^T`` where ``W`` lives in a frozen :class:`QuantLinear`: nothing but ``x``'s shape
    and the layer are kept for backward, and ``dL/dx = dL/dy @ W`` dequantizes ``W`` again."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return x @ layer.dequantized_weight().to(x.dtype).T

    @staticmethod
    def backward(ctx, grad_out):
        w = ctx.layer.dequantized_weight().to(grad_out.dtype)
        return grad_out @ w, None              # no gradient for the layer: it is frozen


class NF4Linear(QuantLinear):
    """A frozen NF4 :class:`QuantLinear` whose backward re-dequantizes instead of saving ``W``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = DequantizedMatmul.apply(x, self)
        return y if self.bias is None else y + self.bias.to(y.dtype)


class QLoRALinear(nn.Module):
    """LoRA beside a frozen quantized layer: ``base(x) + dropout(x) A^T B^T · (alpha / r)``.

    base: an :class:`NF4Linear` (or any frozen module with ``in_features``/``out_features``).
    A ``(r, in)`` starts Kaiming-uniform and B ``(out, r)`` at zero, as in ``effkit.lora``, so
    the wrapped model starts exactly equal to the quantized base. Adapters are fp32.
    """

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        _check_hyperparameters(r, alpha, dropout, base.in_features, base.out_features)
        self.base, self.r, self.alpha, self.scaling = base, r, alpha, alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.A.T @ self.B.T) * self.scaling

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}"


def quantize_base_nf4(model: nn.Module, skip=("classifier",), blocksize: int = 64,
                      double_quant: bool = True) -> QuantReport:
    """Replace every nn.Linear except ``skip`` with a frozen :class:`NF4Linear`, in place."""
    report = QuantReport("nf4")
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        if any(name_matches(name, s) for s in skip):
            report.skipped.append(name)
            continue
        layer = NF4Linear.from_linear(module, "nf4", blocksize=blocksize, double_quant=double_quant)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
        report.replaced.append({"name": name, "shape": tuple(module.weight.shape),
                                "float_bytes": sum(p.numel() * p.element_size() for p in module.parameters()),
                                "stored_bytes": layer.stored_bytes()})
    if not report.replaced:
        raise ValueError("the model has no nn.Linear layer to quantize (outside skip)")
    return report


def prepare_qlora(model: nn.Module, targets=("query", "value"), r: int = 8, alpha: float = 16,
                  dropout: float = 0.0, blocksize: int = 64, double_quant: bool = True,
                  trainable=("classifier",)) -> QuantReport:
    """Make ``model`` a QLoRA model, in place: NF4 base (all Linear layers but ``trainable``),
    LoRA adapters on ``targets``, everything frozen except the adapters and ``trainable``.

    Returns the :class:`QuantReport` of the base (``report.ratio``: stored bytes of the quantized
    layers over their fp32 bytes, about 4.127 / 32 with double quantization at block 64).
    """
    names = find_modules(model, targets)        # check the targets before changing anything
    modules = dict(model.named_modules())
    for name in names:
        if not isinstance(modules[name], nn.Linear):
            raise TypeError(f"target {name} is a {type(modules[name]).__name__}, not an nn.Linear")
        _check_hyperparameters(r, alpha, dropout, modules[name].in_features, modules[name].out_features)
    set_trainable(model, trainable)             # freezes everything else
    report = quantize_base_nf4(model, trainable, blocksize, double_quant)
    modules = dict(model.named_modules())
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, QLoRALinear(modules[name], r, alpha, dropout))
    return report


def base_weight_bytes(model: nn.Module) -> dict:
    """``{"quantized", "float"}``: bytes of the frozen NF4 layers and of every other parameter and
    buffer (embeddings, LayerNorms, the head, the adapters), measured from the tensors."""
    quantized = sum(m.stored_bytes() for m in model.modules() if isinstance(m, QuantLinear))
    every = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {"quantized": quantized, "float": every - quantized}


def train_and_measure(base: nn.Module, loaders: dict, config, cache_key: dict | None = None,
                      label: str = "QLoRA", timing_repeats: int = 3, **options) -> dict:
    """Chapter 04's ``peft_methods.train_and_measure`` with method ``"qlora"``, plus
    ``quantized_bytes`` / ``quantized_fp32_bytes``: the stored bytes of the NF4 base layers and
    what the same layers take in fp32. ``options``: targets, r, alpha (as for LoRA)."""
    from .peft_methods import train_and_measure as train_method

    row = train_method(base, "qlora", loaders, config, label=label, cache_key=cache_key,
                       timing_repeats=timing_repeats, **options)
    layers = [m for m in row["model"].modules() if isinstance(m, QuantLinear)]
    row["quantized_bytes"] = sum(m.stored_bytes() for m in layers)
    row["quantized_fp32_bytes"] = sum(4 * (m.in_features * m.out_features + (m.bias is not None) * m.out_features)
                                      for m in layers)
    return row
