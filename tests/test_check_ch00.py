"""The chapter 00 checkers pass the right answers and catch the classic mistakes."""
from collections import Counter

import pytest
import torch

import effkit as ek
from effkit.check import ch00


# ---------------------------------------------------------------- task 1: model size
def _size(dtype):
    return torch.tensor([], dtype=dtype).element_size()


def size_right(model, dtype):
    return sum(p.numel() for p in model.parameters()) * _size(dtype)


def size_ignores_dtype(model, dtype):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def size_in_bits(model, dtype):
    return sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits


def size_from_state_dict(model, dtype):
    return sum(t.numel() for t in model.state_dict().values()) * _size(dtype)


def size_with_duplicates(model, dtype):
    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)) * _size(dtype)


def size_trainable_only(model, dtype):
    return sum(p.numel() for p in model.parameters() if p.requires_grad) * _size(dtype)


def size_casts_in_place(model, dtype):
    model.to(dtype)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def size_parameter_count(model, dtype):
    return sum(p.numel() for p in model.parameters())


def test_model_size_right_answer_passes_on_the_real_model(capsys):
    model, _ = ek.models.load_encoder("sequence", 2)
    ch00.check_model_size_bytes(size_right, model)
    assert capsys.readouterr().out.startswith("PASS")
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("wrong, hint", [
    (size_ignores_dtype, "target"),
    (size_in_bits, "bits"),
    (size_from_state_dict, "tied weight"),
    (size_with_duplicates, "tied weight"),
    (size_trainable_only, "frozen"),
    (size_casts_in_place, "in place"),
    (size_parameter_count, "parameter count"),
])
def test_model_size_mistakes_are_caught(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch00.check_model_size_bytes(wrong)


# ---------------------------------------------------------------- tokenizer
@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ek.models.default_model_path()))


# ---------------------------------------------------------------- task 2: word pieces per word
def pieces_right(words, tokenizer):
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    return [sum(w == i for w in word_ids) for i in range(len(words))]


def pieces_tokenize_each(words, tokenizer):          # also right: the tokenizer splits on spaces first
    return [len(tokenizer.tokenize(w)) for w in words]


def pieces_tensor(words, tokenizer):
    return torch.tensor(pieces_right(words, tokenizer))


def pieces_with_specials(words, tokenizer):
    return [len(tokenizer(w)["input_ids"]) for w in words]


def pieces_characters(words, tokenizer):
    return [len(w) for w in words]


def pieces_continuations_only(words, tokenizer):
    return [sum(p.startswith("##") for p in tokenizer.tokenize(w)) for w in words]


def pieces_total(words, tokenizer):
    return len(tokenizer.tokenize(" ".join(words)))


def pieces_counter_with_none(words, tokenizer):
    counts = Counter(tokenizer(words, is_split_into_words=True).word_ids())
    return [counts[None]] + [counts[i] for i in range(len(words))]


def pieces_distinct_words(words, tokenizer):
    seen = dict.fromkeys(words)
    return [len(tokenizer.tokenize(w)) for w in seen]


def pieces_all_one(words, tokenizer):
    return [1] * len(words)


def pieces_sorted(words, tokenizer):
    return sorted(pieces_right(words, tokenizer))


def pieces_shape_error(words, tokenizer):
    ids = torch.tensor(tokenizer(words, is_split_into_words=True)["input_ids"])
    return ids.view(len(words), -1).shape[1]          # RuntimeError for most tweets


def test_pieces_per_word_right_answers_pass(tokenizer, capsys):
    for right in (pieces_right, pieces_tokenize_each, pieces_tensor):
        ch00.check_pieces_per_word(right, tokenizer)
    assert capsys.readouterr().out.count("PASS") == 3


@pytest.mark.parametrize("wrong, hint", [
    (pieces_with_specials, r"2 too high.*\[CLS\] and \[SEP\]"),
    (pieces_characters, "characters per word"),
    (pieces_continuations_only, "only the '##' continuation pieces"),
    (pieces_total, "total for the whole tweet"),
    (pieces_counter_with_none, "one count too many.*None"),
    (pieces_distinct_words, "not per distinct word"),
    (pieces_all_one, "every word got 1"),
    (pieces_sorted, "wrong order"),
])
def test_pieces_per_word_mistakes_are_caught(tokenizer, wrong, hint):
    with pytest.raises(AssertionError, match=hint) as info:
        ch00.check_pieces_per_word(wrong, tokenizer)
    assert "hint:" in str(info.value)


def test_pieces_per_word_crash_is_a_readable_fail(tokenizer):
    with pytest.raises(AssertionError, match=r"(?s)raised RuntimeError.*hint: tokenize each word") as info:
        ch00.check_pieces_per_word(pieces_shape_error, tokenizer)
    assert info.value.__context__ is None and info.value.__cause__ is None


# ---------------------------------------------------------------- task 3: padding share
def _lengths(texts, tokenizer, max_length, truncate=True):
    kw = {"truncation": True, "max_length": max_length} if truncate else {}
    return [len(ids) for ids in tokenizer(texts, **kw)["input_ids"]]


def _share(lengths, batch_size, pad_to=None, drop_last=False, mean_of_batches=False, specials_pad=False):
    pads, totals = [], []
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start:start + batch_size]
        if drop_last and len(batch) < batch_size:
            continue
        width = pad_to or max(batch)
        pads.append(sum(width - n for n in batch) + (2 * len(batch) if specials_pad else 0))
        totals.append(width * len(batch))
    if mean_of_batches:
        return sum(p / t for p, t in zip(pads, totals)) / len(pads)
    return sum(pads) / sum(totals)


def padding_right(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), batch_size)


def padding_with_the_tokenizer(texts, tokenizer, batch_size, max_length):   # also right
    pad = total = 0
    for start in range(0, len(texts), batch_size):
        mask = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                         max_length=max_length, return_tensors="pt")["attention_mask"]
        pad += int((mask == 0).sum())
        total += mask.numel()
    return torch.tensor(pad / total)


def padding_to_max_length(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), batch_size, pad_to=max_length)


def padding_one_batch(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), len(texts))


def padding_no_truncation(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length, truncate=False), batch_size)


def padding_real_share(texts, tokenizer, batch_size, max_length):
    return 1 - padding_right(texts, tokenizer, batch_size, max_length)


def padding_count(texts, tokenizer, batch_size, max_length):
    lengths = _lengths(texts, tokenizer, max_length)
    return sum(max(lengths[i:i + batch_size]) - n for i in range(0, len(lengths), batch_size)
               for n in lengths[i:i + batch_size])


def padding_mean_of_batches(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), batch_size, mean_of_batches=True)


def padding_drop_last(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), batch_size, drop_last=True)


def padding_specials_as_padding(texts, tokenizer, batch_size, max_length):
    return _share(_lengths(texts, tokenizer, max_length), batch_size, specials_pad=True)


def padding_returns_list(texts, tokenizer, batch_size, max_length):
    return [padding_right(texts, tokenizer, batch_size, max_length)]


def padding_crashes(texts, tokenizer, batch_size, max_length):
    lengths = _lengths(texts, tokenizer, max_length)
    return torch.tensor(lengths).view(-1, batch_size)     # RuntimeError: len(texts) % batch_size != 0


def test_padding_share_right_answers_pass(tokenizer, capsys):
    ch00.check_padding_share(padding_right, tokenizer)
    ch00.check_padding_share(padding_with_the_tokenizer, tokenizer)
    assert capsys.readouterr().out.count("PASS") == 2


@pytest.mark.parametrize("wrong, hint", [
    (padding_to_max_length, "padding='max_length'"),
    (padding_one_batch, "longest of the whole list"),
    (padding_no_truncation, "cut to max_length first"),
    (padding_real_share, "share of real tokens"),
    (padding_count, "number of padding positions"),
    (padding_mean_of_batches, "averages the per-batch shares"),
    (padding_drop_last, "last, smaller batch counts too"),
    (padding_specials_as_padding, r"\[CLS\] and \[SEP\] are real positions"),
    (padding_returns_list, "returned list; expected a float"),
])
def test_padding_share_mistakes_are_caught(tokenizer, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch00.check_padding_share(wrong, tokenizer)


def test_padding_share_crash_is_a_readable_fail(tokenizer):
    with pytest.raises(AssertionError, match=r"(?s)raised RuntimeError.*hint: check the batch slices") as info:
        ch00.check_padding_share(padding_crashes, tokenizer)
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_model_size_crash_is_a_readable_fail():
    def crashes(model, dtype):
        return torch.zeros(2, 3) @ torch.zeros(2, 3)

    with pytest.raises(AssertionError, match="(?s)raised RuntimeError.*hint:") as info:
        ch00.check_model_size_bytes(crashes)
    assert info.value.__context__ is None


def test_an_unfinished_stub_stops_with_not_implemented(tokenizer):
    def stub(*args):
        raise NotImplementedError("Your code here")

    with pytest.raises(NotImplementedError):
        ch00.check_model_size_bytes(stub)
    for check in (ch00.check_pieces_per_word, ch00.check_padding_share):
        with pytest.raises(NotImplementedError):
            check(stub, tokenizer)
