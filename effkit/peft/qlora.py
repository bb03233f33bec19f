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

from ..compare import register
from ..quant.layers import QuantLinear, QuantReport, quantize_model
from ..targets import find_linears, replace_module, set_trainable
from .lora import check_hyperparameters


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
        check_hyperparameters(r, alpha, dropout, base.in_features, base.out_features)
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
    report = quantize_model(model, "nf4", skip=tuple(skip), blocksize=blocksize,
                            double_quant=double_quant, layer_class=NF4Linear)
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
    names = find_linears(model, targets)        # check the targets before changing anything
    for name in names:
        layer = model.get_submodule(name)
        check_hyperparameters(r, alpha, dropout, layer.in_features, layer.out_features)
    set_trainable(model, trainable)             # freezes everything else
    report = quantize_base_nf4(model, trainable, blocksize, double_quant)
    for name in names:
        replace_module(model, name, QLoRALinear(model.get_submodule(name), r, alpha, dropout))
    return report


def base_weight_bytes(model: nn.Module) -> dict:
    """``{"quantized", "float"}``: bytes of the frozen NF4 layers and of every other parameter and
    buffer (embeddings, LayerNorms, the head, the adapters), measured from the tensors."""
    quantized = sum(m.stored_bytes() for m in model.modules() if isinstance(m, QuantLinear))
    every = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {"quantized": quantized, "float": every - quantized}


def quantized_layer_bytes(model: nn.Module) -> dict:
    """``{"quantized_bytes", "quantized_fp32_bytes"}``: the stored bytes of the NF4 base layers,
    and what the same layers take in fp32 (4 bytes per weight and bias)."""
    layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    return {"quantized_bytes": sum(m.stored_bytes() for m in layers),
            "quantized_fp32_bytes": sum(4 * (m.in_features * m.out_features
                                             + (m.bias is not None) * m.out_features) for m in layers)}


@register("qlora")
def qlora_technique(model: nn.Module, r: int = 8, alpha: float = 16, targets=("query", "value"),
                    trainable=("classifier",)) -> nn.Module:
    """:func:`prepare_qlora` for :func:`effkit.compare.train_and_measure`: chapter 04's LoRA
    recipe on an NF4 base."""
    prepare_qlora(model, targets, r=r, alpha=alpha, trainable=trainable)
    return model
