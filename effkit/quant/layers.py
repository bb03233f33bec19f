"""Quantized layers: LLM.int8() matmul with outliers, ``QuantLinear`` and ``quantize_model``.

LLM.int8() (Dettmers et al., 2022) multiplies in int8 with one absmax scale per *row* of the
weight and one per *token* of the activations (vector-wise), so ``x @ w.T`` becomes an int32
matrix product rescaled by an outer product of scales. A few input features carry activations
far larger than the rest (magnitude >= 6); their columns would stretch every token's scale and
wipe out the small values, so they are split off and multiplied in floating point::

    y = (Xq_reg @ Wq_reg.T) * sx sw^T  +  X_out @ W_out.T

``QuantLinear`` replaces ``nn.Linear``: it holds a quantized weight (affine, NF4 or int8) as
buffers, so ``.to(device)``, ``state_dict()`` and ``ek.measure.tensor_bytes`` see the real stored
bytes. Affine and NF4 layers dequantize on the fly in ``forward``; int8 layers run the
LLM.int8() product.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from ..targets import find_modules, inside_any, replace_module
from .nf4 import NF4Tensor, quantize_nf4
from .affine import QuantizedTensor, check_float_tensor, dequantize, quantize

METHODS = ("affine", "nf4", "int8")
OUTLIER_THRESHOLD = 6.0


# ---------------------------------------------------------------- LLM.int8()
def int8_vectorwise(x: torch.Tensor) -> QuantizedTensor:
    """Absmax int8 with one scale per row: rows of a weight ``(out, in)`` or tokens ``(T, in)``."""
    return quantize(x, 8, "symmetric", "channel")


def outlier_columns(x: torch.Tensor, threshold: float | None = OUTLIER_THRESHOLD) -> torch.Tensor:
    """Boolean mask ``(in,)`` of input features where any token has ``|x| >= threshold``.

    ``>=`` as in bitsandbytes. ``threshold=None`` means no outliers (plain int8).
    """
    x2 = x.reshape(-1, x.shape[-1])
    if threshold is None:
        return torch.zeros(x2.shape[-1], dtype=torch.bool, device=x.device)
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive magnitude (LLM.int8() uses 6.0) or None, "
                         f"got {threshold}")
    return (x2.abs() >= threshold).any(dim=0)


def _int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact ``a @ b.T`` of integer codes in [-127, 127], returned as int32.

    Int8 hardware (VNNI on CPUs, tensor cores on GPUs) accumulates in int32. PyTorch's int32
    matmul is slow on CPU and missing on CUDA, so we multiply in float64, which holds every
    partial sum (at most 127 * 127 * in_features, far below 2^53) exactly: the same integers.
    """
    return (a.double() @ b.double().T).to(torch.int32)


def int8_matmul_with_outliers(x: torch.Tensor, w, threshold: float | None = OUTLIER_THRESHOLD,
                              bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T (+ bias)`` the LLM.int8() way.

    x: activations ``(..., in)``; w: the weight ``(out, in)`` as a float tensor, or already
    quantized by :func:`int8_vectorwise`. Feature columns flagged by :func:`outlier_columns`
    are multiplied in float32 (weight columns dequantized from int8, as bitsandbytes does); the
    rest in int8 with per-token and per-row scales. Returns ``(..., out)`` in x's dtype.
    """
    check_float_tensor(x, "x")
    wq = w if isinstance(w, QuantizedTensor) else int8_vectorwise(check_float_tensor(w, "w"))
    if wq.bits != 8 or wq.scheme != "symmetric" or wq.granularity != "channel":
        raise ValueError("int8_matmul_with_outliers needs an 8-bit symmetric per-channel weight "
                         f"(int8_vectorwise), got bits={wq.bits}, {wq.scheme}, {wq.granularity}")
    out_features, in_features = wq.shape
    if x.shape[-1] != in_features:
        raise ValueError(f"x has {x.shape[-1]} features but the weight expects {in_features}")
    x2 = x.reshape(-1, in_features).float()
    outliers = outlier_columns(x2, threshold)
    w_codes = wq.int_codes()                                   # (out, in) in [-127, 127]

    # int8 part: outlier columns set to zero (their codes become 0), so neither the weight nor
    # the token scales need slicing; one scale per token comes from the regular features only.
    xq = int8_vectorwise(x2.masked_fill(outliers, 0.0))
    y = _int_matmul(xq.int_codes(), w_codes).float() * xq.scale[:, None] * wq.scale[None, :]
    if outliers.any():
        # float part: the few outlier columns, weight columns dequantized from int8.
        w_out = w_codes[:, outliers].float() * wq.scale[:, None]
        y += x2[:, outliers] @ w_out.T
    if bias is not None:
        y += bias.float()
    return y.reshape(*x.shape[:-1], out_features).to(x.dtype)


def count_outlier_columns(model: nn.Module, tokenizer, texts: list[str],
                          threshold: float = OUTLIER_THRESHOLD, batch_size: int = 32,
                          max_length: int = 64) -> list[dict]:
    """Run ``texts`` through ``model`` and count, per ``nn.Linear``, the input feature columns
    whose activation magnitude reaches ``threshold`` on some token.

    Returns one dict per Linear in model order: ``name``, ``in_features``, ``outlier_columns``,
    ``fraction`` (of input features) and ``max_abs`` (largest input magnitude seen).
    """
    if not texts:
        raise ValueError("texts is empty: pass a batch of real sentences")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    masks = {name: torch.zeros(m.in_features, dtype=torch.bool) for name, m in linears.items()}
    peaks = dict.fromkeys(linears, 0.0)

    current = {}            # the batch being run, so hooks can drop padding tokens

    def hook(name):
        def record(module, args):
            x = args[0].detach()
            keep = current["attention_mask"].bool()
            if x.dim() == 3 and x.shape[:2] == keep.shape:
                x = x[keep]                    # padding tokens are not real activations
            masks[name] |= outlier_columns(x, threshold).cpu()
            peaks[name] = max(peaks[name], float(x.abs().max()))
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt").to(device)
                current["attention_mask"] = batch["attention_mask"]
                model(**batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [{"name": n, "in_features": linears[n].in_features,
             "outlier_columns": int(masks[n].sum()),
             "fraction": float(masks[n].float().mean()), "max_abs": peaks[n]} for n in linears]


# ---------------------------------------------------------------- the layer
class QuantLinear(nn.Module):
    """An ``nn.Linear`` whose weight is stored quantized.

    qweight: a QuantizedTensor (affine or int8) or NF4Tensor of shape ``(out, in)``.
    bias: kept in float (it is tiny). threshold: LLM.int8() outlier threshold (int8 only).
    """

    def __init__(self, qweight, bias: torch.Tensor | None, method: str,
                 threshold: float | None = OUTLIER_THRESHOLD):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.out_features, self.in_features = qweight.shape
        self.method, self.threshold = method, threshold
        self._template = qweight                 # metadata; the tensors live in buffers below
        for name, t in qweight.tensors().items():
            self.register_buffer(f"qweight_{name}", t)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Module, method: str, bits: int | None = None, *,
                    scheme: str = "symmetric", granularity: str = "channel",
                    group_size: int | None = None, blocksize: int = 64,
                    double_quant: bool = False, threshold: float | None = OUTLIER_THRESHOLD):
        """Quantize ``linear``'s weight with ``method`` (``affine``, ``nf4`` or ``int8``)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"QuantLinear replaces nn.Linear only; got {type(linear).__name__}. "
                            f"Leave it out (skip=...) or keep it in float")
        w = linear.weight.detach()
        if method == "affine":
            if bits is None:
                raise ValueError("method='affine' needs bits (an integer in [2, 8])")
            qweight = quantize(w, bits, scheme, granularity, group_size)
        elif method == "nf4":
            if bits not in (None, 4):
                raise ValueError(f"method='nf4' is 4-bit by definition, got bits={bits}")
            qweight = quantize_nf4(w, blocksize, double_quant)
        elif method == "int8":
            if bits not in (None, 8):
                raise ValueError(f"method='int8' (LLM.int8()) is 8-bit, got bits={bits}")
            qweight = int8_vectorwise(w)
        else:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        return cls(qweight, linear.bias, method, threshold)

    @property
    def qweight(self) -> QuantizedTensor | NF4Tensor:
        """The quantized weight, rebuilt from the (possibly moved) buffers."""
        tensors = {name: getattr(self, f"qweight_{name}") for name in self._template.tensors()}
        return dataclasses.replace(self._template, **tensors)

    def dequantized_weight(self) -> torch.Tensor:
        q = self.qweight
        return q.dequantize() if isinstance(q, NF4Tensor) else dequantize(q)

    def stored_bytes(self) -> int:
        """Bytes of the quantized weight plus the float bias."""
        bias = 0 if self.bias is None else self.bias.numel() * self.bias.element_size()
        return self.qweight.stored_bytes() + bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "int8":
            return int8_matmul_with_outliers(x, self.qweight, self.threshold, self.bias)
        w = self.dequantized_weight().to(x.dtype)
        return nn.functional.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        q = self.qweight
        detail = (f"bits={q.bits}, {q.scheme}, {q.granularity}" if isinstance(q, QuantizedTensor)
                  else f"nf4, blocksize={q.blocksize}, double_quant={q.double_quant}")
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"method={self.method}, {detail}")


# ---------------------------------------------------------------- the whole model
@dataclass
class QuantReport:
    """What :func:`quantize_model` did: one row per replaced Linear, and what it skipped."""
    method: str
    replaced: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def float_bytes(self) -> int:
        return sum(r["float_bytes"] for r in self.replaced)

    @property
    def stored_bytes(self) -> int:
        return sum(r["stored_bytes"] for r in self.replaced)

    @property
    def ratio(self) -> float:
        """Stored bytes of the replaced layers over their float bytes before."""
        return self.stored_bytes / self.float_bytes if self.float_bytes else float("nan")

    def summary(self) -> str:
        return (f"{self.method}: {len(self.replaced)} Linear layers quantized, "
                f"{self.float_bytes / 2**20:.2f} MiB -> {self.stored_bytes / 2**20:.2f} MiB "
                f"({self.ratio:.3f} of before); kept in float: {self.skipped or 'none'}")


def quantize_model(model: nn.Module, method: str, bits: int | None = None, *,
                   targets: tuple[str, ...] | None = None, skip: tuple[str, ...] = ("classifier",),
                   layer_class: type[QuantLinear] = QuantLinear, **options) -> QuantReport:
    """Replace Linear layers of ``model`` in place with :class:`QuantLinear`; returns a report.

    method: ``affine`` (needs ``bits``; options scheme, granularity, group_size), ``nf4``
    (blocksize, double_quant) or ``int8`` (threshold). targets: module names in peft's rule
    (``effkit.targets``; a name of a container covers the Linear layers inside it), default
    every nn.Linear. A target naming a leaf module that is not an nn.Linear is a TypeError.
    skip: names kept in float (the task head by default). layer_class: a QuantLinear subclass
    (QLoRA's NF4Linear).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(skip, str) or (targets is not None and isinstance(targets, str)):
        raise TypeError("skip and targets are tuples of names, e.g. skip=('classifier',)")
    if targets is not None:
        for name in find_modules(model, targets):      # ValueError if a target matches nothing
            module = model.get_submodule(name)
            if not isinstance(module, nn.Linear) and not any(True for _ in module.children()):
                raise TypeError(f"{name} is of type {type(module).__name__}; quantize_model(method="
                                f"{method!r}) supports nn.Linear only. Remove it from targets")
    report = QuantReport(method)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or (targets is not None and not inside_any(name, targets)):
            continue
        if skip and inside_any(name, skip):
            report.skipped.append(name)
            continue
        layer = layer_class.from_linear(module, method, bits, **options)
        replace_module(model, name, layer)
        float_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
        report.replaced.append({"name": name, "shape": tuple(module.weight.shape),
                                "float_bytes": float_bytes, "stored_bytes": layer.stored_bytes()})
    return report
