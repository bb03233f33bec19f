"""The chapter 02 checkers pass right answers and reject each plausible mistake with a hint that
names it (and no other mistake's); their oracles agree with the tokenizer, seqeval, transformers
and effkit.train.fit."""
import math
import re

import pytest

from effkit.check import ch02


# ================================================================ task 1: label_pieces
def _walk(words, tags, tokenizer, names, continuation, *, first=None, cont=None, special=-100,
          is_none=lambda w: w is None, joined=False):
    """A configurable label_pieces: the right one by default, each mutant changes one knob."""
    if continuation not in ("ignore", "inside"):
        raise ValueError(continuation)
    enc = tokenizer(" ".join(words)) if joined else tokenizer(words, is_split_into_words=True)
    labels, previous = [], None
    for word in enc.word_ids():
        if is_none(word):
            labels.append(special)
        elif word != previous:
            labels.append((first or (lambda t: names.index(t)))(tags[word]))
        elif continuation == "inside":
            tag = tags[word]
            labels.append((cont or (lambda t: names.index("O" if t == "O" else "I-" + t[2:])))(tag))
        else:
            labels.append(-100)
        previous = word
    return enc["input_ids"], labels


def lp_right(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation)


def lp_position(words, tags, tokenizer, names, continuation="ignore"):
    """The seed article: tag i on token i, the rest 'O'."""
    ids = tokenizer(words, is_split_into_words=True)["input_ids"]
    return ids, [names.index(tags[i]) if i < len(tags) else names.index("O") for i in range(len(ids))]


def lp_position_crashes(words, tags, tokenizer, names, continuation="ignore"):
    ids = tokenizer(words, is_split_into_words=True)["input_ids"]
    return ids, [names.index(tags[i]) for i in range(len(ids))]


def lp_joined(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation, joined=True)


def lp_falsy_word_zero(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation, is_none=lambda w: not w)


def lp_specials_o(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation, special=names.index("O"))


def lp_every_piece(words, tags, tokenizer, names, continuation="ignore"):
    enc = tokenizer(words, is_split_into_words=True)
    return enc["input_ids"], [-100 if w is None else names.index(tags[w]) for w in enc.word_ids()]


def lp_last_piece(words, tags, tokenizer, names, continuation="ignore"):
    enc = tokenizer(words, is_split_into_words=True)
    w = enc.word_ids()
    return enc["input_ids"], [-100 if x is None or x == (w[i + 1] if i + 1 < len(w) else None)
                              else names.index(tags[x]) for i, x in enumerate(w)]


def lp_modes_swapped(words, tags, tokenizer, names, continuation="ignore"):
    if continuation not in ("ignore", "inside"):
        raise ValueError(continuation)
    return lp_right(words, tags, tokenizer, names, "inside" if continuation == "ignore" else "ignore")


def lp_inside_copies_b(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation, cont=lambda t: names.index(t))


def lp_inside_o_ignored(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation,
                 cont=lambda t: -100 if t == "O" else names.index("I-" + t[2:]))


def lp_inside_plus_one(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, continuation,
                 cont=lambda t: names.index(t) + (t.startswith("B-")))


def lp_no_validation(words, tags, tokenizer, names, continuation="ignore"):
    return _walk(words, tags, tokenizer, names, "inside" if continuation == "inside" else "ignore")


def lp_tensors(words, tags, tokenizer, names, continuation="ignore"):
    import torch

    ids, labels = lp_right(words, tags, tokenizer, names, continuation)
    return torch.tensor(ids), torch.tensor(labels)


def lp_labels_only(words, tags, tokenizer, names, continuation="ignore"):
    return lp_right(words, tags, tokenizer, names, continuation)[1]


def lp_padded(words, tags, tokenizer, names, continuation="ignore"):
    enc = tokenizer(words, is_split_into_words=True, padding="max_length", max_length=64)
    return enc["input_ids"], ch02.reference_labels(enc.word_ids(), tags, names, continuation)


def lp_unfinished(words, tags, tokenizer, names, continuation="ignore"):
    raise NotImplementedError("Your code here")


# ================================================================ task 2: lr_at_step
def lr_right(step, total, warmup, peak):
    s = step - 1
    if s < warmup:
        return peak * s / warmup
    return peak * max(0.0, (total - s) / max(1, total - warmup))


def lr_after_update(step, total, warmup, peak):
    return lr_right(step + 1, total, warmup, peak) if step < total else 0.0


def lr_peak_early(step, total, warmup, peak):
    return peak * step / warmup if step <= warmup else lr_right(step, total, warmup, peak)


def lr_decay_over_total(step, total, warmup, peak):
    s = step - 1
    return peak * s / warmup if s < warmup else peak * (total - s) / total


def lr_no_warmup(step, total, warmup, peak):
    return peak * (total - (step - 1)) / total


def lr_fraction(step, total, warmup, peak):
    return lr_right(step, total, warmup, peak) / peak


def lr_divides_by_warmup(step, total, warmup, peak):
    s = step - 1
    return peak * min(s / warmup, (total - s) / (total - warmup))


def lr_warmup_zero_as_one(step, total, warmup, peak):
    return lr_right(step, total, max(1, warmup), peak)


def lr_integer_division(step, total, warmup, peak):
    s = step - 1
    return peak * (s // warmup) if s < warmup else peak * ((total - s) // max(1, total - warmup))


def lr_returns_none(step, total, warmup, peak):
    lr_right(step, total, warmup, peak)


def lr_unfinished(step, total, warmup, peak):
    raise NotImplementedError("Your code here")


# ================================================================ task 3: early stopping
def _stop(scores, patience, *, strict=True, reset=True, best0=None, first_epoch=0, late=0,
          validate=True):
    if validate and not scores:
        raise ValueError("empty")
    if validate and patience < 1:
        raise ValueError("patience")
    best, best_epoch, waited = best0, first_epoch, 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or (score > best if strict else score >= best):
            best, best_epoch = score, epoch
            waited = 0 if reset else waited
        else:
            waited += 1
            if waited >= patience + late:
                return best_epoch, epoch
    return best_epoch, len(scores)


def stop_right(scores, patience):
    return _stop(scores, patience)


def stop_last_epoch(scores, patience):
    _, stop = stop_right(scores, patience)
    return stop, stop


def stop_global_best(scores, patience):
    _, stop = stop_right(scores, patience)
    return scores.index(max(scores)) + 1, stop


def stop_late(scores, patience):
    return _stop(scores, patience, late=1)


def stop_early(scores, patience):
    return _stop(scores, patience, late=-1)


def stop_ties_improve(scores, patience):
    return _stop(scores, patience, strict=False)


def stop_no_reset(scores, patience):
    return _stop(scores, patience, reset=False)


def stop_best_zero(scores, patience):
    return _stop(scores, patience, best0=0.0)


def stop_best_zero_none(scores, patience):
    return _stop(scores, patience, best0=0.0, first_epoch=None)


def stop_zero_based(scores, patience):
    best, stop = stop_right(scores, patience)
    return best - 1, stop - 1


def stop_no_validation(scores, patience):
    if not scores:
        return 0, 0
    return _stop(scores, max(patience, 1), validate=False)


def stop_returns_list(scores, patience):
    return list(stop_right(scores, patience))


def stop_crashes(scores, patience):
    return stop_right(scores, patience)[0], scores[len(scores)]  # IndexError


def stop_unfinished(scores, patience):
    raise NotImplementedError("Your code here")


# ================================================================ the tables
NAMED = [
    # task 1
    (ch02.check_label_pieces, lp_position, "placed by token position"),
    (ch02.check_label_pieces, lp_falsy_word_zero, "word id 0 was treated like None"),
    (ch02.check_label_pieces, lp_specials_o, "\\[SEP\\] \\(word id None\\) got the label 'O'"),
    (ch02.check_label_pieces, lp_every_piece, "carry their word's label"),
    (ch02.check_label_pieces, lp_last_piece, "sits on the LAST piece"),
    (ch02.check_label_pieces, lp_modes_swapped, "scheme\\) with continuation='ignore'"),
    (ch02.check_label_pieces, lp_inside_copies_b, "copy their word's B- tag"),
    (ch02.check_label_pieces, lp_inside_o_ignored, "continuation pieces of O words got -100"),
    (ch02.check_label_pieces, lp_inside_plus_one, "adding 1 to the label id"),
    (ch02.check_label_pieces, lp_padded, "input_ids differ"),
    (ch02.check_label_pieces, lp_no_validation, "accepted continuation='first'"),
    # task 2
    (ch02.check_lr_schedule, lr_after_update, "one update ahead"),
    (ch02.check_lr_schedule, lr_peak_early, "reaches the peak one update early"),
    (ch02.check_lr_schedule, lr_decay_over_total, "decay runs over total_steps"),
    (ch02.check_lr_schedule, lr_no_warmup, "the warmup is missing"),
    (ch02.check_lr_schedule, lr_fraction, "fractions of the peak"),
    (ch02.check_lr_schedule, lr_warmup_zero_as_one, "treated as one step of warmup"),
    (ch02.check_lr_schedule, lr_integer_division, "integer division"),
    # task 3
    (ch02.check_early_stopping, stop_last_epoch, "best epoch is the last epoch trained"),
    (ch02.check_early_stopping, stop_global_best, "including epochs after training stopped"),
    (ch02.check_early_stopping, stop_late, "stopped one epoch late"),
    (ch02.check_early_stopping, stop_early, "stopped one epoch early"),
    (ch02.check_early_stopping, stop_ties_improve, "tie counted as an improvement"),
    (ch02.check_early_stopping, stop_no_reset, "counter was not reset on a new best"),
    (ch02.check_early_stopping, stop_best_zero, "best score started at 0"),
    (ch02.check_early_stopping, stop_best_zero_none, "best score started at 0"),
    (ch02.check_early_stopping, stop_zero_based, "numbered from 0"),
    (ch02.check_early_stopping, stop_no_validation, "must raise ValueError"),
]


@pytest.mark.parametrize("checker, wrong, words", NAMED,
                         ids=[w.__name__ for _, w, _ in NAMED])
def test_checkers_name_the_mistake(checker, wrong, words):
    with pytest.raises(AssertionError) as info:
        checker(wrong)
    message = str(info.value)
    assert re.search(words, message), message
    # the FAIL names this mistake and no other one (a wrong hint is worse than a neutral one)
    others = {w for c, _, w in NAMED if c is checker and w != words}
    assert not [w for w in others if re.search(w, message)], message


@pytest.mark.parametrize("checker, right", [
    (ch02.check_label_pieces, lp_right),
    (ch02.check_lr_schedule, lr_right),
    (ch02.check_early_stopping, stop_right),
])
def test_right_answers_pass(checker, right, capsys):
    checker(right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("checker, wrong, words", [
    (ch02.check_label_pieces, lp_position_crashes, "(?s)raised IndexError.*is_split_into_words=True"),
    (ch02.check_label_pieces, lp_joined, "(?s)raised IndexError.*is_split_into_words=True"),
    (ch02.check_label_pieces, lp_tensors, "input_ids as Tensor"),
    (ch02.check_label_pieces, lp_labels_only, "return a tuple"),
    (ch02.check_lr_schedule, lr_divides_by_warmup, "(?s)raised ZeroDivisionError.*warmup_steps can be 0"),
    (ch02.check_lr_schedule, lr_returns_none, "returned NoneType; expected a number"),
    (ch02.check_early_stopping, stop_returns_list, "return a tuple"),
    (ch02.check_early_stopping, stop_crashes, "raised IndexError"),
], ids=["lp_position_crashes", "lp_joined", "lp_tensors", "lp_labels_only", "lr_divides_by_warmup",
        "lr_returns_none", "stop_returns_list", "stop_crashes"])
def test_student_errors_become_readable_fails(checker, wrong, words):
    """Wrong shapes and crashes give a FAIL with a hint, never the student's traceback."""
    with pytest.raises(AssertionError, match=words) as info:
        checker(wrong)
    assert "hint:" in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


@pytest.mark.parametrize("checker, stub", [
    (ch02.check_label_pieces, lp_unfinished),
    (ch02.check_lr_schedule, lr_unfinished),
    (ch02.check_early_stopping, stop_unfinished),
])
def test_unfinished_stub_raises_not_implemented(checker, stub):
    with pytest.raises(NotImplementedError):
        checker(stub)


# ================================================================ the oracles
def test_label_cases_are_hard():
    """Every tweet has a split word inside an entity, a multi-word entity and a split O word; both
    schemes and both label orders are used."""
    tokenizer = ch02.labels._tokenizer()
    cases = ch02.labels._label_cases()
    assert len(cases) >= 9
    assert {case[3] for case in cases} == {"ignore", "inside"}
    orders = [list(n) for _, _, n, _, _ in cases]
    assert any(n != sorted(n) for n in orders) and any(n == sorted(n) for n in orders)
    for words, tags, _, _, _ in cases:
        ids = tokenizer(list(words), is_split_into_words=True).word_ids()
        pieces = [ids.count(i) for i in range(len(words))]
        assert any(p >= 2 and t != "O" for p, t in zip(pieces, tags))
        assert any(p >= 2 and t == "O" for p, t in zip(pieces, tags))
        assert any(a.startswith("B-") and b.startswith("I-") for a, b in zip(tags, tags[1:]))


def test_inside_labels_keep_the_entities_seqeval_sees():
    """Independent check of the "inside" oracle: read as a tag sequence over the pieces, it holds
    exactly the word-level entities (seqeval), each spanning all the pieces of its words; the
    first-piece labels are align_labels'."""
    from seqeval.metrics.sequence_labeling import get_entities

    from effkit.batching import align_labels, tag_ids

    tokenizer = ch02.labels._tokenizer()
    for words, tags, names, _, _ in ch02.labels._label_cases():
        word_ids = tokenizer(list(words), is_split_into_words=True).word_ids()
        inside = ch02.reference_labels(word_ids, list(tags), list(names), "inside")
        first = align_labels(word_ids, tag_ids(list(tags), list(names)))
        assert [a for a, b in zip(inside, first) if b != -100] == [b for b in first if b != -100]
        kept = [(w, names[x]) for w, x in zip(word_ids, inside) if w is not None]
        piece_entities = get_entities([t for _, t in kept])
        word_of = [w for w, _ in kept]
        as_words = [(typ, word_of[a], word_of[b]) for typ, a, b in piece_entities]
        assert as_words == get_entities(list(tags))
        for _, a, b in piece_entities:  # an entity ends on its last word's last piece
            assert b + 1 == len(kept) or word_of[b + 1] != word_of[b]


def test_lr_oracle_is_what_fit_applies():
    """The rate each update of effkit.train.fit runs at (read in a hook just before the optimizer
    step) is oracle_lrs with warmup = ceil(warmup_ratio * total)."""
    from types import SimpleNamespace

    import torch

    from effkit import batching, train

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(num_labels=2)
            self.head = torch.nn.Linear(2, 2)

        def forward(self, input_ids, attention_mask=None, labels=None):
            logits = self.head(input_ids.float())
            return SimpleNamespace(loss=torch.nn.functional.cross_entropy(logits, labels), logits=logits)

    class Record(train.Hook):
        def on_train_start(self, model, optimizer):
            self.optimizer, self.rates = optimizer, []

        def after_backward(self, model):
            self.rates.append(self.optimizer.param_groups[0]["lr"])

    loader = batching.make_loader(batching.Encoded([{"input_ids": [1, 2], "labels": 0}] * 10, 0,
                                                   "sequence"), 1)
    for epochs, ratio, lr in ((1, 0.1, 1e-3), (2, 0.0, 5e-5), (3, 0.25, 2e-4), (1, 0.15, 1e-2)):
        hook = Record()
        train.fit(Tiny(), loader, None, train.TrainConfig(lr=lr, epochs=epochs, warmup_ratio=ratio),
                  hooks=[hook], progress=False, device="cpu")
        total = 10 * epochs
        want = ch02.oracle_lrs(total, math.ceil(ratio * total), lr)
        assert hook.rates == pytest.approx(want, rel=1e-12, abs=0)
        assert [lr_right(t, total, math.ceil(ratio * total), lr) for t in range(1, total + 1)] == \
            pytest.approx(want, rel=1e-12, abs=1e-18)


def test_lr_cases_cover_the_edges():
    pairs = {(t, w) for t, w, _ in ch02.LR_CASES}
    assert any(w == 0 for _, w in pairs) and any(w == 1 for _, w in pairs)
    assert any(w == t - 1 for t, w in pairs) and (1, 0) in pairs
    assert any(w == math.ceil(0.1 * t) and 0.1 * t != int(0.1 * t) for t, w in pairs)


def test_scripted_fit_follows_the_rule():
    """The oracle really runs fit: its evaluations are the scripted scores, cut where it stopped,
    and the cases include 0.0 starts, ties and histories that stop early."""
    cases = list(ch02.STOP_CASES) + ch02.stopping._random_stop_cases()
    stopped_early = 0
    for counts, patience, _ in cases:
        best, stop, seen = ch02.stopping._scripted_fit(counts, patience)
        scores = [c / ch02.DEV_SIZE for c in counts]
        assert seen == scores[:stop]
        assert (best, stop) == stop_right(scores, patience)
        stopped_early += stop < len(scores)
    assert stopped_early >= 5
    assert sum(c[0] == 0 and c[1] == 0 for c, _, _ in cases) >= 3
