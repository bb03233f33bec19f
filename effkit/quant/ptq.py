"""Post-training quantization of a fine-tuned classifier, measured (chapter 06, section 6.5).

:class:`PTQSpec` names one way to quantize a model: effkit's round-to-nearest ``affine`` at 2-8
bits, ``nf4``, LLM.int8() ``int8`` with or without the outlier split, bitsandbytes ``bnb-int8`` /
``bnb-nf4`` loaded through ``BitsAndBytesConfig``, torchao ``torchao-int8-weight`` /
``torchao-int8-dynamic``. :func:`evaluate_ptq` quantizes a copy of the model, then measures test
accuracy, the stored bytes of the quantized Linear layers (read off the tensors), the floor
``N * b / 8 + scales`` and the CPU latency per batch; :func:`run_grid` does a list of specs and
returns a pandas DataFrame. The bits explorer (``effkit.bits_explorer``) draws on these.

Only nn.Linear layers are quantized (the task head stays in float, as in bitsandbytes and QLoRA);
the embeddings stay fp32 and are reported separately.
"""
from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn

from .affine import GRANULARITIES, check_bits
from ..targets import inside_any
from .layers import QuantLinear, quantize_model

EFFKIT_METHODS = ("fp32", "affine", "nf4", "int8", "int8-no-outliers")
LIBRARY_METHODS = ("bnb-int8", "bnb-nf4", "torchao-int8-weight", "torchao-int8-dynamic")
METHODS = EFFKIT_METHODS + LIBRARY_METHODS
SKIP = ("classifier",)           # the freshly trained task head stays in float


# ================================================================ what to quantize, and how
@dataclass(frozen=True)
class PTQSpec:
    """One post-training quantization recipe.

    method: one of ``METHODS``. bits: 2-8, used by ``affine`` only (nf4 is 4, int8 methods 8).
    granularity / group_size: for ``affine`` (``tensor``, ``channel`` or ``group``).
    blocksize / double_quant: for ``nf4``.
    """
    method: str
    bits: int | None = None
    granularity: str = "channel"
    group_size: int | None = None
    blocksize: int = 64
    double_quant: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "affine":
            check_bits(self.bits)
            if self.granularity not in GRANULARITIES:
                raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
            if (self.granularity == "group") != (self.group_size is not None):
                raise ValueError("group_size goes with granularity='group' and only with it; got "
                                 f"granularity={self.granularity!r}, group_size={self.group_size!r}")
        elif self.bits is not None and self.bits != self.nominal_bits:
            raise ValueError(f"method={self.method!r} has {self.nominal_bits} bits by definition, "
                             f"got bits={self.bits}; leave bits out")

    @property
    def nominal_bits(self) -> int:
        """Bits per weight code: 32 for fp32, 4 for NF4, 8 for the int8 methods, else ``bits``."""
        if self.method == "fp32":
            return 32
        if self.method in ("nf4", "bnb-nf4"):
            return 4
        return self.bits if self.method == "affine" else 8

    @property
    def label(self) -> str:
        if self.method == "affine":
            where = f"group {self.group_size}" if self.granularity == "group" else self.granularity
            return f"RTN int{self.bits} ({where})"
        if self.method == "nf4":
            return f"NF4 block {self.blocksize}" + (" + DQ" if self.double_quant else "")
        return {"fp32": "fp32", "int8": "LLM.int8() (outliers in fp32)",
                "int8-no-outliers": "int8 W8A8 (no outlier split)", "bnb-int8": "bitsandbytes 8-bit",
                "bnb-nf4": "bitsandbytes NF4", "torchao-int8-weight": "torchao int8 weight-only",
                "torchao-int8-dynamic": "torchao int8 dynamic act."}[self.method]


def default_grid(bits=range(2, 9)) -> list[PTQSpec]:
    """The chapter's grid: fp32; RTN affine for every ``bits`` per tensor and per channel, group 64
    at the low bits; NF4 with and without double quantization; LLM.int8() both ways; the libraries."""
    specs = [PTQSpec("fp32")]
    for b in bits:
        specs += [PTQSpec("affine", b, "tensor"), PTQSpec("affine", b, "channel")]
        if b <= 4:
            specs.append(PTQSpec("affine", b, "group", 64))
    specs += [PTQSpec("nf4"), PTQSpec("nf4", double_quant=True), PTQSpec("int8"),
              PTQSpec("int8-no-outliers")]
    specs += [PTQSpec(m) for m in LIBRARY_METHODS]
    return specs


# ================================================================ quantizing a copy
def quantized_copy(model: nn.Module, spec: PTQSpec) -> nn.Module:
    """A quantized copy of ``model`` (the original is untouched); every nn.Linear but the head.

    bitsandbytes methods save the model to a temporary folder and load it back with
    ``BitsAndBytesConfig(..., llm_int8_skip_modules=["classifier"])`` and ``device_map="cpu"``,
    the way a user quantizes a checkpoint. On CPU bitsandbytes 8-bit rounds activations through
    fp16 and its 4-bit kernel multiplies in bf16/fp32; on CUDA the same call uses its GPU kernels.
    """
    if not isinstance(spec, PTQSpec):
        raise TypeError(f"spec must be a PTQSpec, got {type(spec).__name__}")
    if spec.method.startswith("bnb-"):
        return _bitsandbytes_copy(model, spec)
    twin = copy.deepcopy(model).eval()
    if spec.method == "fp32":
        return twin
    if spec.method.startswith("torchao-"):
        from torchao.quantization import (Int8DynamicActivationInt8WeightConfig,
                                          Int8WeightOnlyConfig, quantize_)

        config = (Int8WeightOnlyConfig() if spec.method == "torchao-int8-weight"
                  else Int8DynamicActivationInt8WeightConfig())
        quantize_(twin, config, filter_fn=lambda m, name: isinstance(m, nn.Linear)
                  and not inside_any(name, SKIP))
        return twin
    if spec.method == "affine":
        quantize_model(twin, "affine", spec.bits, skip=SKIP, scheme="symmetric",
                       granularity=spec.granularity, group_size=spec.group_size)
    elif spec.method == "nf4":
        quantize_model(twin, "nf4", skip=SKIP, blocksize=spec.blocksize,
                       double_quant=spec.double_quant)
    else:   # int8 with the outlier split (threshold 6), or plain W8A8 int8 (threshold None)
        quantize_model(twin, "int8", skip=SKIP,
                       threshold=6.0 if spec.method == "int8" else None)
    return twin


def _bitsandbytes_copy(model: nn.Module, spec: PTQSpec) -> nn.Module:
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    from ..models import MeanPooler, quiet_transformers, use_mean_pooling

    if spec.method == "bnb-int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(SKIP))
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                    bnb_4bit_compute_dtype=torch.float32,
                                    llm_int8_skip_modules=list(SKIP))
    # CUDA path: device_map={"": 0} puts the layers on the GPU and bitsandbytes uses its CUDA
    # kernels; on CPU we ask for device_map="cpu" explicitly.
    device_map = "cpu" if not torch.cuda.is_available() else {"": 0}
    with tempfile.TemporaryDirectory() as folder, quiet_transformers():
        model.save_pretrained(folder)
        loaded = AutoModelForSequenceClassification.from_pretrained(
            folder, quantization_config=config, device_map=device_map)
    if isinstance(getattr(model.base_model, "pooler", None), MeanPooler):
        use_mean_pooling(loaded)     # a saved model forgets the pooler swap (it has no weights)
    return loaded.eval()


# ================================================================ measuring bytes
def _tensor_nbytes(t: torch.Tensor) -> int:
    """Bytes of a tensor; a tensor subclass (torchao) is the sum of the tensors inside it."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(_tensor_nbytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def _bnb_state_bytes(weight) -> int:
    """Per-row scales (8-bit) or block constants (4-bit) that bitsandbytes keeps beside a weight."""
    extra = 0
    scb = getattr(weight, "SCB", None)
    if isinstance(scb, torch.Tensor):
        extra += _tensor_nbytes(scb)
    state = getattr(weight, "quant_state", None)
    while state is not None:          # nested (double-quantized) states hold their own absmax
        for name in ("absmax", "offset"):
            t = getattr(state, name, None)
            if isinstance(t, torch.Tensor):
                extra += _tensor_nbytes(t)
        state = getattr(state, "state2", None)
    return extra


def linear_bytes(model: nn.Module, skip=SKIP) -> dict:
    """Stored bytes of every (possibly quantized) Linear layer except ``skip``, from the tensors.

    Returns ``{"bytes", "bias_bytes", "numel", "n_layers"}``: ``bytes`` is codes +
    scales/constants + bias as they sit in memory, whatever library made them (effkit
    QuantLinear, bitsandbytes, torchao, plain fp32); ``bias_bytes`` is the fp32 biases' share.
    """
    total = biases = numel = layers = 0
    for name, m in model.named_modules():
        if inside_any(name, skip):
            continue
        if isinstance(m, QuantLinear):
            total += m.stored_bytes()
        elif isinstance(m, nn.Linear):            # bnb Linear8bitLt/Linear4bit are nn.Linear too
            total += _tensor_nbytes(m.weight) + _bnb_state_bytes(m.weight)
            total += 0 if m.bias is None else _tensor_nbytes(m.bias)
        else:
            continue
        biases += 0 if m.bias is None else _tensor_nbytes(m.bias)
        numel += m.in_features * m.out_features
        layers += 1
    return {"bytes": total, "bias_bytes": biases, "numel": numel, "n_layers": layers}


def floor_bytes(model: nn.Module, spec: PTQSpec, skip=SKIP) -> float:
    """What the spec must store at least: ``numel * bits / 8`` for the codes, 4 bytes per scale
    (one per tensor, row, group or block; 1 byte per block with double quantization), and the
    fp32 biases. Compare with :func:`linear_bytes` of the quantized copy."""
    total = 0.0
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or inside_any(name, skip):
            continue
        n, out = m.weight.numel(), m.out_features
        if spec.method == "fp32":
            scales, per = 0, 0
        elif spec.method in ("nf4", "bnb-nf4"):
            scales, per = n // spec.blocksize, (1 if spec.double_quant else 4)
        elif spec.method == "affine" and spec.granularity == "tensor":
            scales, per = 1, 4
        elif spec.method == "affine" and spec.granularity == "group":
            scales, per = n // spec.group_size, 4
        else:
            scales, per = out, 4                  # one scale per output row
        total += n * spec.nominal_bits / 8 + scales * per
        total += 0 if m.bias is None else 4 * m.bias.numel()
    return total


# ================================================================ evaluating
@torch.no_grad()
def accuracy_and_latency(model: nn.Module, loader) -> dict:
    """Accuracy on ``loader`` and the mean wall time of one forward pass per batch (CPU or GPU)."""
    from ..evaluate import sequence_metrics

    model.eval()
    dev = next(model.parameters()).device
    preds, golds, seconds = [], [], []
    for batch in loader:
        batch = {k: v.to(dev) for k, v in batch.items()}
        start = time.perf_counter()
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        if dev.type == "cuda":                        # CUDA path: wait for the kernels
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        preds += logits.argmax(-1).cpu().tolist()
        golds += batch["labels"].cpu().tolist()
    return {**sequence_metrics(preds, golds), "ms_per_batch": 1000 * sum(seconds) / len(seconds)}


def evaluate_ptq(model: nn.Module, loader, spec: PTQSpec) -> dict:
    """Quantize a copy of ``model`` with ``spec`` and measure it on ``loader``.

    Returns one row: ``label``, ``method``, ``bits``, ``granularity``, ``accuracy``, ``macro_f1``,
    ``stored_bytes`` (quantized Linear layers, measured), ``floor_bytes``, ``fp32_bytes`` (the
    same layers in fp32), ``bytes_ratio``, ``bits_per_weight`` and ``ms_per_batch``.
    ``bits_per_weight`` is 8 x (codes + scales) / weights, biases left out: the same definition as
    ``StoredTensors.bits_per_parameter`` (the biases are in ``stored_bytes``).
    """
    fp32_bytes = linear_bytes(model)
    start = time.perf_counter()
    twin = quantized_copy(model, spec)
    quantize_seconds = time.perf_counter() - start
    stored = linear_bytes(twin)
    if stored["numel"] != fp32_bytes["numel"]:
        raise RuntimeError(f"{spec.label}: the quantized copy has {stored['numel']} Linear weights, "
                           f"the model {fp32_bytes['numel']}; a layer was lost or added")
    metrics = accuracy_and_latency(twin, loader)
    del twin
    granularity = spec.granularity if spec.method == "affine" else None
    return {"label": spec.label, "method": spec.method, "bits": spec.nominal_bits,
            "granularity": granularity, "group_size": spec.group_size,
            "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "stored_bytes": stored["bytes"], "floor_bytes": floor_bytes(model, spec),
            "fp32_bytes": fp32_bytes["bytes"], "bytes_ratio": stored["bytes"] / fp32_bytes["bytes"],
            "bits_per_weight": 8 * (stored["bytes"] - stored["bias_bytes"]) / stored["numel"],
            "ms_per_batch": metrics["ms_per_batch"], "quantize_seconds": quantize_seconds}


def run_grid(model: nn.Module, loader, specs, progress: bool = True):
    """:func:`evaluate_ptq` for every spec; a pandas DataFrame with one row per spec."""
    import pandas as pd
    from ..ui import progress_bar

    specs = list(specs)
    if not specs:
        raise ValueError("specs is empty: pass PTQSpec objects, e.g. default_grid()")
    rows = [evaluate_ptq(model, loader, s)
            for s in progress_bar(specs, disable=not progress, desc="PTQ grid")]
    return pd.DataFrame(rows)
