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


# ---------------------------------------------------------------- task 2: label balance
def balance_right(labels, num_classes):
    for y in labels:
        if not 0 <= y < num_classes:
            raise ValueError(f"label {y} outside 0..{num_classes - 1}")
    return [labels.count(k) / len(labels) for k in range(num_classes)]


def balance_integer_division(labels, num_classes):
    balance_right(labels, num_classes)
    return [labels.count(k) // len(labels) for k in range(num_classes)]


def balance_seen_classes_only(labels, num_classes):
    balance_right(labels, num_classes)
    counts = Counter(labels)
    return [counts[k] / len(labels) for k in sorted(counts)]


def balance_most_common_first(labels, num_classes):
    balance_right(labels, num_classes)
    counts = Counter(labels)
    out = [c / len(labels) for _, c in counts.most_common()]
    return out + [0.0] * (num_classes - len(out))


def balance_by_num_classes(labels, num_classes):
    balance_right(labels, num_classes)
    return [labels.count(k) / num_classes for k in range(num_classes)]


def balance_by_max_count(labels, num_classes):
    balance_right(labels, num_classes)
    counts = [labels.count(k) for k in range(num_classes)]
    return [c / max(counts) for c in counts]


def balance_no_validation(labels, num_classes):
    counts = [0] * num_classes
    for y in labels:
        counts[y] += 1  # -1 silently counts as the last class; num_classes raises IndexError
    return [c / len(labels) for c in counts]


def balance_tensor(labels, num_classes):
    t = torch.tensor(labels)
    if t.min() < 0 or t.max() >= num_classes:
        raise ValueError("label out of range")
    return torch.bincount(t, minlength=num_classes) / len(labels)


def test_label_balance_right_answers_pass(capsys):
    ch00.check_label_balance(balance_right)
    ch00.check_label_balance(balance_tensor)  # a float tensor is an acceptable sequence
    assert capsys.readouterr().out.count("PASS") == 2


@pytest.mark.parametrize("wrong, hint", [
    (balance_integer_division, "integer division"),
    (balance_seen_classes_only, "no examples still gets an entry"),
    (balance_most_common_first, "wrong order"),
    (balance_by_num_classes, "not by the number of classes"),
    (balance_by_max_count, "not by the largest count"),
    (balance_no_validation, "raise ValueError"),
])
def test_label_balance_mistakes_are_caught(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch00.check_label_balance(wrong)


# ---------------------------------------------------------------- task 3: truncation
@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ek.models.default_model_path()))


def truncated_right(texts, tokenizer, max_length):
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return sum(n > max_length for n in lengths) / len(texts)


def truncated_at_equal(texts, tokenizer, max_length):
    return sum(len(tokenizer(t)["input_ids"]) >= max_length for t in texts) / len(texts)


def truncated_without_specials(texts, tokenizer, max_length):
    return sum(len(tokenizer.tokenize(t)) > max_length for t in texts) / len(texts)


def truncated_after_truncation(texts, tokenizer, max_length):
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return sum(len(i) > max_length for i in ids) / len(texts)


def truncated_by_words(texts, tokenizer, max_length):
    return sum(len(t.split()) + 2 > max_length for t in texts) / len(texts)


def truncated_hard_coded_64(texts, tokenizer, max_length):
    return truncated_right(texts, tokenizer, 64)


def truncated_count(texts, tokenizer, max_length):
    return sum(len(tokenizer(t)["input_ids"]) > max_length for t in texts)


def test_fraction_truncated_right_answer_passes(tokenizer, capsys):
    ch00.check_fraction_truncated(truncated_right, tokenizer)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("wrong, hint", [
    (truncated_at_equal, "not >="),
    (truncated_without_specials, r"\[CLS\] and \[SEP\]"),
    (truncated_after_truncation, "truncation=True"),
    (truncated_by_words, "not words"),
    (truncated_hard_coded_64, "hard-coded 64"),
    (truncated_count, "not the count"),
])
def test_fraction_truncated_mistakes_are_caught(tokenizer, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch00.check_fraction_truncated(wrong, tokenizer)


def test_an_unfinished_stub_stops_with_not_implemented(tokenizer):
    def stub(*args):
        raise NotImplementedError("Your code here")

    for check in (ch00.check_model_size_bytes, ch00.check_label_balance):
        with pytest.raises(NotImplementedError):
            check(stub)
    with pytest.raises(NotImplementedError):
        ch00.check_fraction_truncated(stub, tokenizer)
