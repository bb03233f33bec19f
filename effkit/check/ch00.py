"""Checkers for assignment 00 (the lab bench): model size by dtype, word pieces per word, and the
share of padding under dynamic padding.

Each checker calls the student's function first, compares it with a library or measured reference
(the real tensors cast to each dtype; the tokenizer's own ``word_ids()``; transformers'
``DataCollatorWithPadding``), and names the classic mistake when the answer has its fingerprint.
A student's crash becomes a FAIL with a hint, not a traceback.
"""
from __future__ import annotations

import math
import random

import torch
from torch import nn

from ._core import call_student, fail, passed

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
            got = call_student(f"model_size_bytes({label}, {dtype})", fn, m, dtype,
                               shape_hint="sum p.numel() over model.parameters()")
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


# ---------------------------------------------------------------- task 2: word pieces per word
def _reference_pieces(words: list[str], tokenizer) -> list[int]:
    """The tokenizer's own answer: how many input ids carry each word's index in word_ids()."""
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    counts = [0] * len(words)
    for w in word_ids:
        if w is not None:
            counts[w] += 1
    return counts


def _word_cases(seed: int = 0) -> list[list[str]]:
    """Real tweets of the WNUT-2016 train split (a seeded sample) and one made-up line with a
    one-piece word, a long rare word, a number, an emoji and punctuation."""
    from ..data import load_ner

    tweets = load_ner().train.tokens
    rng = random.Random(seed)
    sample = [list(tweets[i]) for i in rng.sample(range(len(tweets)), 6)]
    return [["the", "unwatchably", "overwrought", "melodrama", "of", "2016", "\U0001F600", "!!"]] + sample


def _as_ints(out, n: int, what: str):
    if isinstance(out, torch.Tensor):
        out = out.tolist()
    if isinstance(out, (int, float)) and not isinstance(out, bool):
        return out
    try:
        values = [int(x) for x in out]
    except (TypeError, ValueError):
        fail(f"{what} returned {type(out).__name__}; expected a list of {n} ints, one per word")
    if any(float(x) != v for x, v in zip(out, values)):
        fail(f"{what} returned {list(out)!r}; expected whole numbers of word pieces")
    return values


def _pieces_hint(words, got, want, tokenizer) -> str:
    if isinstance(got, (int, float)):
        if got in (sum(want), sum(want) + 2):
            return "that is the total for the whole tweet; return one count per word, in word order"
        return "return a list with one count per word, not a single number"
    if len(got) == len(want) + 1:
        return ("one count too many: word_ids() marks [CLS] and [SEP] with None; they belong to "
                "no word and are not counted")
    if len(got) != len(want):
        return (f"{len(got)} counts for {len(words)} words: return one count per word, in order "
                "(count pieces per word, not per distinct word)")
    if got == [w + 2 for w in want]:
        return ("every count is 2 too high: tokenizer(word)['input_ids'] adds [CLS] and [SEP] to each "
                "word; count tokenizer.tokenize(word), or use word_ids()")
    if got == [len(w) for w in words]:
        return "those are characters per word; count the tokenizer's word pieces"
    continuations = [sum(p.startswith("##") for p in tokenizer.tokenize(w)) for w in words]
    if got in (continuations, [max(w - 1, 0) for w in want]):
        return ("you counted only the '##' continuation pieces; every piece of a word counts, the "
                "first one too (and punctuation split off a word, as in '!!' -> '!', '!')")
    if got == [1] * len(words):
        return "every word got 1: a rare word is cut into several pieces ('##' continues a word)"
    if sorted(got) == sorted(want):
        return "right counts in the wrong order: entry i belongs to words[i]"
    return "count the pieces of each word: tokenizer.tokenize(word), or word_ids() of the whole tweet"


def check_pieces_per_word(fn, tokenizer) -> None:
    """``fn(words, tokenizer) -> list[int]``: how many word pieces the tokenizer makes of each word,
    special tokens excluded; checked against ``word_ids()`` on real tweets the student cannot
    special-case."""
    for words in _word_cases():
        what = f"pieces_per_word({words!r})"
        got = call_student(what, fn, list(words), tokenizer,
                           shape_hint="tokenize each word (or the whole tweet with is_split_into_words=True)")
        want = _reference_pieces(words, tokenizer)
        got = _as_ints(got, len(words), what)
        if got != want:
            pieces = [tokenizer.tokenize(w) for w in words]
            fail(f"{what} returned {got!r}, expected {want!r} (the pieces: {pieces})",
                 _pieces_hint(words, got, want, tokenizer))
    passed("pieces_per_word matches the tokenizer's word_ids() on real tweets, special tokens excluded")


# ---------------------------------------------------------------- task 3: padding share
def _reference_padding(texts, tokenizer, batch_size: int, max_length: int) -> float:
    """transformers' DataCollatorWithPadding over consecutive batches: padding / all positions."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    features = [{"input_ids": ids} for ids in
                tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    pad = total = 0
    for i in range(0, len(features), batch_size):
        mask = collate(features[i:i + batch_size])["attention_mask"]
        pad += int((mask == 0).sum())
        total += mask.numel()
    return pad / total


def _padding_cases() -> list[tuple]:
    """Seeded made-up texts of very different lengths, in a number that batch_size does not divide,
    and in the later cases one text longer than max_length: (texts, batch_size, max_length)."""
    vocab = "a fine film dull plot cast moving waste good not bad at all the story".split()
    cases = []
    for seed, batch_size, max_length in ((1, 4, 16), (2, 3, 24), (3, 5, 12)):
        rng = random.Random(seed)
        texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, max_length - 4)))
                 for _ in range(3 * batch_size - 1)]
        if seed > 1:   # the first case has none, so padding to max_length and to the list's longest differ
            texts[rng.randrange(len(texts))] = " ".join(["film"] * (2 * max_length))
        cases.append((texts, batch_size, max_length))
    return cases


def _padding_variants(texts, tokenizer, batch_size, max_length) -> dict:
    """The fingerprints of the common mistakes, each as the number it would return."""
    def lengths(truncate=True):
        kw = {"truncation": True, "max_length": max_length} if truncate else {}
        return [len(ids) for ids in tokenizer(list(texts), **kw)["input_ids"]]

    def share(lens, batches, pad_to=None):
        pad = total = 0
        for b in batches:
            part = lens[b]
            width = pad_to or max(part)
            pad += sum(width - n for n in part)
            total += width * len(part)
        return pad / total

    n = len(texts)
    consecutive = [slice(i, i + batch_size) for i in range(0, n, batch_size)]
    lens = lengths()
    positions = sum(max(lens[b]) * len(lens[b]) for b in consecutive)
    right = share(lens, consecutive)
    per_batch = [share(lens, [b]) for b in consecutive]
    return {
        "max_length": share(lens, consecutive, pad_to=max_length),
        "one batch": share(lens, [slice(0, n)]),
        "no truncation": share(lengths(truncate=False), consecutive),
        "real share": 1 - right,
        "count": right * positions,
        "mean of batches": sum(per_batch) / len(per_batch),
        "drop last": share(lens, [b for b in consecutive if len(lens[b]) == batch_size]),
        "specials as padding": (right * positions + 2 * n) / positions,
    }


_PADDING_HINTS = {
    "max_length": ("that is padding every batch to max_length (padding='max_length'); dynamic "
                   "padding pads each batch only to its own longest text"),
    "one batch": ("that pads every text to the longest of the whole list; pad each batch of "
                  "batch_size consecutive texts to its own longest text"),
    "no truncation": ("a text longer than max_length is cut to max_length first (truncation=True, "
                      "max_length=max_length), so no batch is wider than max_length"),
    "real share": "that is the share of real tokens; the question asks for the share of padding",
    "count": "that is the number of padding positions; divide by all positions of all batches",
    "mean of batches": ("that averages the per-batch shares; the last batch is smaller, so weigh "
                        "each batch by its positions: total padding / total positions"),
    "drop last": "the last, smaller batch counts too (len(texts) need not divide by batch_size)",
    "specials as padding": ("[CLS] and [SEP] are real positions the model attends to; only the "
                            "positions with attention_mask 0 are padding"),
}


def check_padding_share(fn, tokenizer) -> None:
    """``fn(texts, tokenizer, batch_size, max_length) -> float``: the share of token positions that
    are padding when consecutive batches are each padded to their longest (truncated) text;
    checked against transformers' DataCollatorWithPadding."""
    for texts, batch_size, max_length in _padding_cases():
        what = f"padding_share({len(texts)} texts, batch_size={batch_size}, max_length={max_length})"
        got = call_student(what, fn, list(texts), tokenizer, batch_size, max_length,
                           shape_hint="check the batch slices and the padded width of each batch")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            fail(f"{what} returned {type(got).__name__}; expected a float in [0, 1]")
        want = _reference_padding(texts, tokenizer, batch_size, max_length)
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        variants = _padding_variants(texts, tokenizer, batch_size, max_length)
        named = [k for k, v in variants.items() if math.isclose(got, v, rel_tol=1e-6, abs_tol=1e-9)]
        hint = (_PADDING_HINTS[named[0]] if named else
                "tokenize with truncation, cut the list into batches of batch_size, pad each batch "
                "to its longest text, and divide all padding positions by all positions")
        fail(f"{what} returned {got!r}, expected {want:.6f} (DataCollatorWithPadding)", hint)
    passed("padding_share matches DataCollatorWithPadding: each batch padded to its own longest "
           "truncated text, padding counted over all positions")
