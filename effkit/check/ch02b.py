"""Checkers for assignment 02b: predict the model-sized parts of training memory before measuring.

The student writes ``predict_memory(model, setup)``: from a fresh, untouched model and a set-up
(train everything; freeze the embeddings and the bottom ``k`` encoder layers; or LoRA via
``effkit.peft.lora.add_lora``; each in fp32 or under bf16 autocast) it returns the bytes of
``weights``, ``gradients`` and ``optimizer_state``. Activations are left out: they depend on the
kernels autograd runs, not on a formula one can write from names and shapes.

The oracle is ``effkit.measure.memory_breakdown``: the checker builds each set-up itself on a copy
of the model, creates AdamW over the trainable parameters exactly as ``effkit.train.fit`` does,
runs one real training step on a short batch and compares byte for byte. The set-ups use the
course's MiniLM (6 layers, a mean pooler without parameters) and two small random BERTs with
other sizes and BERT's own pooler, so that numbers copied from the chapter, a hard-coded layer
count or a forgotten pooler do not pass. When a part differs, the checker recomputes the
plausible mistakes for that part and names the one that matches.
"""
from __future__ import annotations

import copy
import math
from functools import lru_cache

from ._core import call_student, fail, passed

PARTS = ("weights", "gradients", "optimizer_state")
MiB = 2**20

SHAPE_HINT = ("read sizes from the model: p.numel() for a parameter, layer.in_features and "
              "layer.out_features for an nn.Linear, b.numel() * b.element_size() for a buffer; "
              "the set-up dict holds 'train' and 'precision', plus 'frozen_layers' (train='top') "
              "or 'r' and 'targets' (train='lora')")


# ---------------------------------------------------------------- models and set-ups
@lru_cache(maxsize=1)
def _minilm():
    """The course's MiniLM with a 2-class head, and a short batch (2 snippets of 8 pieces)."""
    import torch

    from ..config import seed_everything
    from ..models import load_encoder

    seed_everything(0)
    model, tokenizer = load_encoder("sequence", 2)
    batch = dict(tokenizer(["a fine, moving film", "a dull waste of a good cast"],
                           padding="max_length", max_length=8, truncation=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0])
    return model, batch


@lru_cache(maxsize=2)
def _tiny(layers: int, hidden: int, vocab: int, labels: int):
    """A small random BERT classifier with BERT's own pooler (a trainable dense layer)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(layers * 1000 + hidden)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=4, intermediate_size=2 * hidden,
                        max_position_embeddings=48, type_vocab_size=2, num_labels=labels)
    model = BertForSequenceClassification(config)
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, vocab, (2, 8), generator=gen),
             "attention_mask": torch.ones(2, 8, dtype=torch.long),
             "token_type_ids": torch.zeros(2, 8, dtype=torch.long),
             "labels": torch.tensor([0, labels - 1])}
    return model, batch


MODELS = {
    "minilm": ("the course's MiniLM (6 layers, hidden 384)", _minilm),
    "tiny3": ("a random BERT (3 layers, hidden 32, with a pooler)", lambda: _tiny(3, 32, 500, 3)),
    "tiny4": ("a random BERT (4 layers, hidden 48, with a pooler)", lambda: _tiny(4, 48, 700, 5)),
}

FP32_CASES = (
    ("tiny3", {"train": "all", "precision": "fp32"}),
    ("tiny3", {"train": "top", "frozen_layers": 1, "precision": "fp32"}),
    ("minilm", {"train": "top", "frozen_layers": 4, "precision": "fp32"}),
    ("minilm", {"train": "lora", "r": 4, "targets": ["query", "value"], "precision": "fp32"}),
    ("tiny4", {"train": "lora", "r": 3, "targets": ["key", "attention.output.dense"],
               "precision": "fp32"}),
    ("tiny4", {"train": "top", "frozen_layers": 2, "precision": "fp32"}),
    ("minilm", {"train": "top", "frozen_layers": 6, "precision": "fp32"}),
)
BF16_CASES = (
    ("tiny3", {"train": "all", "precision": "bf16"}),
    ("minilm", {"train": "top", "frozen_layers": 5, "precision": "bf16"}),
    ("minilm", {"train": "lora", "r": 8, "targets": ["query", "key", "value", "intermediate.dense"],
                "precision": "bf16"}),
)


def frozen_by_top(name: str, k: int) -> bool:
    """``frozen_layers=k``: the embeddings and encoder layers 0 .. k-1 are frozen."""
    return name.startswith("bert.embeddings.") or any(
        name.startswith(f"bert.encoder.layer.{i}.") for i in range(k))


def apply_setup(model, setup: dict):
    """Build the set-up on ``model``, in place (the checker's side; the student only predicts)."""
    from ..peft.lora import add_lora

    if setup["train"] == "top":
        for name, p in model.named_parameters():
            p.requires_grad_(not frozen_by_top(name, setup["frozen_layers"]))
    elif setup["train"] == "lora":
        add_lora(model, setup["targets"], r=setup["r"], alpha=2 * setup["r"])
    return model


def measure(model, setup: dict, batch) -> dict:
    """``memory_breakdown`` of one step of ``model`` (already set up), AdamW as ``fit`` builds it."""
    import torch

    from ..measure import memory_breakdown
    from ..train import param_groups

    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    return memory_breakdown(model, optimizer, batch, precision=setup["precision"])


# ---------------------------------------------------------------- the plausible mistakes
def _counts(model, setup: dict) -> dict:
    """Every number the mistakes below are made of, from the set-up model."""
    from ..peft.lora import LoRALinear

    params = dict(model.named_parameters())
    lora = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    adapter = {f"{n}.{ab}" for n in lora for ab in ("A", "B")}
    trainable = [n for n, p in params.items() if p.requires_grad]
    size = lambda names: sum(params[n].numel() for n in names)  # noqa: E731
    c = {
        "all": size(params), "base": size(n for n in params if n not in adapter),
        "tensors": len(params), "T": size(trainable), "n": len(trainable),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
        "buffer_numel": sum(b.numel() for b in model.buffers()),
        "classifier": size(n for n in params if n.startswith("classifier.")),
        "pooler": size(n for n in params if n.startswith("bert.pooler.")),
        "embeddings": size(n for n in params if n.startswith("bert.embeddings.")),
        "lora_inout": sum(m.base.in_features * m.base.out_features for m in lora.values()),
        "lora": size(adapter),
    }
    if setup["train"] == "top":
        k, layers = setup["frozen_layers"], model.config.num_hidden_layers
        c["top"] = {j: size(n for n in params if not frozen_by_top(n, j))
                    for j in (k - 1, k + 1) if 0 <= j <= layers}
    return c


def _weight_mistakes(c: dict, setup: dict):
    P, buf = c["all"], c["buffer_bytes"]
    out = []
    if setup["precision"] == "bf16":
        out.append(({2 * P + buf, 2 * P, 2 * P + buf // 2},
                    "the weights are counted at 2 bytes (bf16)",
                    "autocast computes matrix products in bf16, but the weights themselves stay "
                    "fp32 (the 'master weights' that AdamW updates): 4 bytes each"))
    if setup["train"] == "lora":
        inout = P - c["lora"] + c["lora_inout"]
        out.append(({4 * inout + buf, 4 * inout},
                    "LoRA is counted as in × out numbers per adapted layer",
                    "LoRA adds A (r × in) and B (out × r): r · (in + out) numbers per layer, not "
                    "the in · out of the frozen weight it adapts"))
    out += [
        ({4 * P}, "the buffers are missing from the weights",
         "a model also stores buffers (BERT: position_ids and token_type_ids): add "
         "b.numel() * b.element_size() for every b in model.buffers()"),
        ({4 * P + 4 * c["buffer_numel"]}, "the buffers are counted at 4 bytes per element",
         "BERT's buffers are int64: use b.element_size(), 8 bytes here"),
        ({4 * c["base"] + buf, 4 * c["base"]}, "the LoRA matrices A and B are missing from the weights",
         "add_lora adds A (r × in) and B (out × r) beside each frozen weight; they are weights too"),
        ({4 * c["T"] + buf, 4 * c["T"]}, "only the trainable parameters are counted in the weights",
         "a frozen weight gets no gradient and no optimizer state, but it still sits in memory: "
         "count every parameter"),
    ]
    return out


def _gradient_mistakes(c: dict, setup: dict):
    T = c["T"]
    out = [
        ({4 * c["all"], 4 * c["base"]}, "frozen parameters are counted in the gradients",
         "only parameters with requires_grad=True get a .grad; frozen ones get none"),
        ({2 * T}, "the gradients are counted at 2 bytes (bf16)",
         "the gradients land in the .grad of the fp32 weights, so they are fp32 (4 bytes) under "
         "autocast too"),
        ({4 * (T - c["classifier"])}, "the classifier head is left out of the trainable parameters",
         "the new classification head trains in every set-up"),
    ]
    if setup["train"] == "lora":
        out += [
            ({4 * (T - c["lora"] + c["lora_inout"]), 4 * (T + c["lora_inout"])},
             "LoRA is counted as in × out numbers per adapted layer",
             "LoRA trains A (r × in) and B (out × r): r · (in + out) numbers per layer, not the "
             "in · out of the frozen weight it adapts"),
            ({4 * (T + c["pooler"])}, "the pooler is counted as trainable under LoRA",
             "add_lora freezes everything except the adapters and the classifier (the trainable "
             "argument); BERT's pooler is frozen too"),
        ]
    if setup["train"] == "top":
        out += [
            ({4 * (T + c["embeddings"])}, "the embeddings are counted as trainable",
             "frozen_layers=k freezes the embeddings as well as encoder layers 0 .. k-1"),
            ({4 * v for v in c["top"].values()}, "one encoder layer too many or too few is frozen",
             "frozen_layers=k freezes the k layers numbered 0 .. k-1 (bert.encoder.layer.0 is the "
             "lowest)"),
        ]
        if c["pooler"]:
            out.append(({4 * (T - c["pooler"])}, "the pooler is left out of the trainable parameters",
                        "everything above the frozen layers trains, BERT's pooler included (the "
                        "course's MiniLM replaces it with a mean pooler without parameters; this "
                        "model has one)"))
    return out


def _state_mistakes(c: dict, setup: dict):
    T, n = c["T"], c["n"]
    moments = ("the AdamW moments are counted at 2 bytes (bf16)",
               "AdamW keeps its moments in the dtype of the parameters, fp32 here: autocast does "
               "not touch the optimizer") if setup["precision"] == "bf16" else (
        "only one AdamW moment is counted",
        "AdamW keeps two moments per trainable number: exp_avg (m) and exp_avg_sq (v)")
    return [
        ({4 * T + 4 * n}, *moments),
        ({8 * T}, "the step counters are missing",
         f"AdamW also keeps a `step` for every trainable parameter tensor ({n} tensors here), a "
         f"0-dim fp32 tensor of 4 bytes"),
        ({12 * T, 12 * T + 4 * n}, "a step counter is counted for every trainable number",
         "the step counter is one 0-dim tensor per parameter TENSOR, not per number"),
        ({8 * T + 8 * n}, "the step counters are counted at 8 bytes",
         "AdamW's step is a 0-dim float32 tensor: 4 bytes"),
        ({8 * T + 4, 8 * T + 8}, "one step counter for the whole optimizer (or per param group)",
         f"AdamW keeps the step per parameter tensor: {n} trainable tensors, 4 bytes each"),
        ({8 * c["all"] + 4 * c["tensors"], 8 * c["base"] + 4 * c["tensors"]},
         "frozen parameters are given optimizer state",
         "the optimizer is built over the trainable parameters only (ek.train.param_groups "
         "leaves frozen ones out), so they get no moments and no step"),
    ]


MISTAKES = {"weights": _weight_mistakes, "gradients": _gradient_mistakes,
            "optimizer_state": _state_mistakes}


# ---------------------------------------------------------------- the check
def _signature(model):
    from ..peft.lora import LoRALinear

    return ([(n, tuple(p.shape), p.requires_grad) for n, p in model.named_parameters()],
            sum(isinstance(m, LoRALinear) for m in model.modules()))


def _as_bytes(prediction, what: str, measured: dict) -> dict:
    from collections.abc import Mapping

    if not isinstance(prediction, Mapping):
        fail(f"{what} returned {type(prediction).__name__}; return a dict",
             f"return {{'weights': ..., 'gradients': ..., 'optimizer_state': ...}} in bytes")
    missing = [p for p in PARTS if p not in prediction]
    if missing:
        fail(f"{what} returned no {', '.join(repr(m) for m in missing)} (keys: {sorted(prediction)})",
             f"return a dict with the keys {PARTS}, in bytes")
    out = {}
    for part in PARTS:
        value = prediction[part]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool):  # the FAIL is raised outside the except
            fail(f"the value of {part!r} is {type(value).__name__}; expected a number of bytes "
                 f"({what})",
                 "return ints: bytes, e.g. 4 * number_of_parameters")
        if not number.is_integer() and math.isclose(number * MiB, measured[part], rel_tol=1e-3):
            fail(f"the value of {part!r}, {number:.4g}, looks like MiB: memory_breakdown measured "
                 f"{measured[part]:,} bytes ({what})",
                 "return bytes, not MiB: do not divide by 2**20")
        out[part] = number
    return out


_MEASURED: dict = {}


def _measured(key: str, setup: dict):
    """(memory_breakdown's parts, the counts the mistakes are made of) for a set-up, measured
    once per session on the checker's own copy (the numbers are deterministic)."""
    cache_key = (key, repr(sorted(setup.items())))
    if cache_key not in _MEASURED:
        base, batch = MODELS[key][1]()
        model = apply_setup(copy.deepcopy(base), setup)
        _MEASURED[cache_key] = (measure(model, setup, batch), _counts(model, setup))
    return _MEASURED[cache_key]


def _check_cases(predict_memory, cases) -> int:
    for key, setup in cases:
        desc, load = MODELS[key]
        model = copy.deepcopy(load()[0])
        before = _signature(model)
        what = f"predict_memory(model, {setup}) on {desc}"
        prediction = call_student(what, predict_memory, model, dict(setup), shape_hint=SHAPE_HINT,
                                  shape_errors=(AttributeError, IndexError, KeyError, TypeError))
        if _signature(model) != before:
            fail(f"{what} changed the model it was given (requires_grad flags or LoRA layers)",
                 "predict from the names and shapes only; the checker builds the set-up itself on "
                 "its own copy and measures it")
        measured, counts = _measured(key, setup)
        got = _as_bytes(prediction, what, measured)
        for part in PARTS:
            if got[part] == measured[part]:
                continue
            head = (f"{part}: predicted {got[part]:,.0f} bytes, memory_breakdown measured "
                    f"{measured[part]:,} ({got[part] - measured[part]:+,.0f}) for {desc}, "
                    f"set-up {setup}")
            for values, mistake, hint in MISTAKES[part](counts, setup):
                if got[part] in values and got[part] != measured[part]:
                    fail(f"{mistake}. {head}", hint)
            fail(head, {"weights": "every parameter (frozen or not, adapters included) at 4 bytes, "
                                   "plus the buffers as stored",
                        "gradients": "4 bytes per trainable number (requires_grad=True after the "
                                     "set-up)",
                        "optimizer_state": "AdamW: 2 moments of 4 bytes per trainable number, "
                                           "plus a 4-byte step per trainable tensor"}[part])
    return len(cases)


def check_memory(predict_memory) -> None:
    """fp32 set-ups: full fine-tuning, frozen bottom layers (k chosen here), LoRA (r and targets
    chosen here), head only; MiniLM and two random BERTs; byte for byte against memory_breakdown."""
    n = _check_cases(predict_memory, FP32_CASES)
    passed(f"predict_memory: weights, gradients and AdamW state of {n} fp32 set-ups equal what "
           f"memory_breakdown measures, byte for byte")


def check_mixed_precision(predict_memory) -> None:
    """The same prediction under bf16 autocast: the model-sized parts do not change."""
    n = _check_cases(predict_memory, BF16_CASES)
    passed(f"predict_memory: {n} bf16-autocast set-ups, weights, gradients and AdamW state as "
           f"measured (fp32 master weights)")
