"""Checkers for assignment 00 (the lab bench): model size by dtype, label balance, truncation.

Each checker calls the student's function first, compares it with a measured reference, and
names the classic mistake when the answer has its fingerprint.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._core import fail, passed

DTYPE_FORMATS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


# ---------------------------------------------------------------- task 1: model size
class TiedToy(nn.Module):
    """A tiny model with the traps a real one has: a tied (shared) weight, a frozen parameter
    and a buffer that is not a parameter. 58 parameters, stored once each."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 10)
        self.head.weight = self.embed.weight  # tied, as in language models' input/output embeddings
        self.norm.weight.requires_grad_(False)  # frozen parameters still take memory
        self.register_buffer("position_ids", torch.arange(16))  # in state_dict, not a parameter


def _reference_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    from ..measure import parameter_bytes

    return parameter_bytes(model, DTYPE_FORMATS[dtype])


def _state_dict_bytes(model: nn.Module, dtype: torch.dtype) -> set[int]:
    """What summing over state_dict() gives (tied weights twice, buffers included), two ways."""
    sd = model.state_dict()
    size = torch.tensor([], dtype=dtype).element_size()
    return {sum(t.numel() for t in sd.values()) * size,
            sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in sd.values())}


def _size_hint(model: nn.Module, dtype: torch.dtype, got, want: int) -> str:
    size = torch.tensor([], dtype=dtype).element_size()
    n_all = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if got == 8 * want:
        return "that is 8x too large: you counted bits, the question asks for bytes"
    if got == n_all:
        return "that is the parameter count; multiply by the bytes per element of the dtype"
    if dtype != torch.float32 and got == 4 * n_all:
        return ("that is the fp32 size: use the element size of the *target* dtype (e.g. "
                "torch.tensor([], dtype=dtype).element_size()), not of the stored tensors")
    n_repeated = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    if got in _state_dict_bytes(model, dtype) or got == n_repeated * size:
        return ("state_dict() lists a tied weight under each name and includes buffers; count "
                "each Parameter once (model.parameters() already skips repeats)")
    if got == n_trainable * size:
        return "frozen parameters (requires_grad=False) take memory too; count them"
    return "sum numel() over model.parameters() (each once) times the element size of dtype"


def check_model_size_bytes(fn, model: nn.Module | None = None) -> None:
    """``fn(model, dtype) -> int``: bytes of the parameters if stored in ``dtype``.

    Checked against the real tensors cast to fp32/fp16/bf16, on a tiny tied-weight model and,
    if given, on ``model`` (the chapter's MiniLM). ``fn`` must not change the model it measures.
    """
    models = [("tiny model with a tied weight", TiedToy())]
    if model is not None:
        models.append(("the MiniLM", model))
    for label, m in models:
        before = [(p.dtype, p.data_ptr()) for p in m.parameters()]
        for dtype in DTYPE_FORMATS:
            got = fn(m, dtype)
            if [(p.dtype, p.data_ptr()) for p in m.parameters()] != before:
                fail(f"model_size_bytes changed the model it measured ({label}, {dtype})",
                     "model.to(dtype) / model.half() convert in place; measure without casting "
                     "the model, or cast one tensor copy at a time")
            want = _reference_bytes(m, dtype)
            if isinstance(got, torch.Tensor):
                got = got.item()
            if not isinstance(got, (int, float)) or isinstance(got, bool) or got != want:
                fail(f"model_size_bytes({label}, {dtype}) returned {got!r}, expected {want:,} "
                     f"(measured by casting the real tensors)", _size_hint(m, dtype, got, want))
    passed("model_size_bytes matches the real tensors cast to fp32, fp16 and bf16, "
           "counts a tied weight once and leaves the model untouched")


# ---------------------------------------------------------------- task 2: label balance
def _close(a: float, b: float) -> bool:
    # float32 tensors are welcome, so compare to float32 precision
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def _balance(labels, num_classes):
    counts = [0] * num_classes
    for y in labels:
        counts[y] += 1
    return [c / len(labels) for c in counts]


def check_label_balance(fn) -> None:
    """``fn(labels, num_classes) -> list[float]``: the fraction of ``labels`` in each class 0..k-1."""
    cases = [([0, 1, 1, 1], 2), ([1, 1, 0], 2), ([2, 2, 0], 4), ([3] * 5 + [0] * 3 + [1] * 2, 5)]
    for labels, k in cases:
        got = fn(list(labels), k)
        want = _balance(labels, k)
        try:
            got_list = [float(x) for x in got]
        except (TypeError, ValueError):
            fail(f"label_balance({labels}, {k}) returned {got!r}, expected a list of {k} floats")
        if len(got_list) != k:
            fail(f"label_balance({labels}, num_classes={k}) returned {len(got_list)} fractions, "
                 f"expected {k}: {want}",
                 "a class with no examples still gets an entry (0.0); loop over range(num_classes), "
                 "not over the classes you happened to see")
        if all(_close(a, b) for a, b in zip(got_list, want)):
            continue
        fail(f"label_balance({labels}, {k}) returned {got_list}, expected {want}",
             _balance_hint(labels, k, got_list, want))
    for labels, k, bad in [([0, 2], 2, 2), ([0, -1], 2, -1)]:
        hint = (f"label {bad} is outside 0..{k - 1}: check every label and raise ValueError "
                f"saying which label and what is allowed (with list indexing a -1 silently "
                f"counts as the last class)")
        try:
            got = fn(list(labels), k)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - any other error is the wrong kind of error
            fail(f"label_balance({labels}, num_classes={k}) raised {type(err).__name__}, "
                 f"not ValueError", hint)
        fail(f"label_balance({labels}, num_classes={k}) returned {got!r}", hint)
    passed("label_balance gives the fraction of every class, in class order, summing to 1, "
           "and rejects labels outside 0..num_classes-1")


def _balance_hint(labels, k, got, want) -> str:
    counts = [round(w * len(labels)) for w in want]
    if all(g == 0 for g in got):
        return "every fraction is 0: integer division (//) rounds them down; divide with /"
    if all(_close(a, b) for a, b in zip(sorted(got), sorted(want))):
        return "right fractions in the wrong order: entry i must be class i (not most common first)"
    if all(_close(g, c / k) for g, c in zip(got, counts)):
        return "divide the counts by the number of labels, not by the number of classes"
    if all(_close(g, c / max(counts)) for g, c in zip(got, counts)):
        return "divide the counts by the number of labels, not by the largest count"
    if not _close(sum(got), 1.0):
        return f"the fractions sum to {sum(got):.3f}, not 1: check what you divide by"
    return "count each class 0..num_classes-1 and divide by len(labels)"


# ---------------------------------------------------------------- task 3: truncation
_SPECIALS_HINT = ("the model also sees [CLS] and [SEP]: count tokenizer(text)['input_ids'], which "
                  "includes them (tokenizer.tokenize(text) does not), and do not pass "
                  "truncation=True, which cuts every text to max_length so none looks too long")
# (what the text is, the text, the hint when a function gets this one text wrong)
_TRUNCATION_CASES = [
    ("62 one-piece words (64 with [CLS] and [SEP])", "a " * 62,
     "a text of exactly max_length pieces fits: 'truncated' means length > max_length, not >="),
    ("63 one-piece words (65 with [CLS] and [SEP])", "a " * 63,
     _SPECIALS_HINT + "; also count word pieces, not words"),
    ("40 words of two word pieces each", " ".join(["tokenization"] * 40),
     "count word pieces (tokenizer(text)['input_ids']), not words (text.split())"),
    ("a three-word snippet", "a fine film", "a three-word snippet fits in any max_length >= 5"),
]


def check_fraction_truncated(fn, tokenizer) -> None:
    """``fn(texts, tokenizer, max_length) -> float``: the fraction of texts whose word pieces,
    special tokens included, do not fit in ``max_length``."""
    def n_pieces(text):
        return len(tokenizer(text)["input_ids"])

    def as_number(x):
        return x.item() if isinstance(x, torch.Tensor) else x

    for max_length in (64, 16):
        texts = [text for _, text, _ in _TRUNCATION_CASES]
        got = as_number(fn(texts, tokenizer, max_length))
        want = sum(n_pieces(t) > max_length for t in texts) / len(texts)
        if isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, want):
            continue
        for what, text, hint in _TRUNCATION_CASES:  # find the one text it gets wrong
            alone = as_number(fn([text], tokenizer, max_length))
            truth = float(n_pieces(text) > max_length)
            if alone != truth:
                fail(f"fraction_truncated([text], tokenizer, max_length={max_length}) for a text "
                     f"of {what} ({n_pieces(text)} pieces) returned {alone}, expected {truth}",
                     hint if max_length == 64 else
                     "use the max_length argument, not a hard-coded 64")
        fail(f"fraction_truncated({len(texts)} texts, max_length={max_length}) returned {got!r}, "
             f"expected {want}", "return the fraction (a float in [0, 1]), not the count")
    passed("fraction_truncated counts word pieces with [CLS]/[SEP], strictly over max_length")
