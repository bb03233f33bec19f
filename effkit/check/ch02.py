"""Checkers for assignment 02: label alignment to word pieces and the early-stopping rule.

Each checker calls the student's function on tricky inputs (words cut into many pieces, special
tokens, padding; a best epoch that is not the last, ties, patience boundaries), compares with the
reference, and when the answer is wrong tries the classic mistakes to say which one it was.
"""
from __future__ import annotations

from ._core import fail, passed

IGNORE = -100


# ---------------------------------------------------------------- task 1: align_labels
def _reference_align(word_ids, word_labels):
    out, prev = [], None
    for w in word_ids:
        out.append(IGNORE if w is None or w == prev else word_labels[w])
        prev = w
    return out


def _every_piece(word_ids, word_labels):
    return [IGNORE if w is None else word_labels[w] for w in word_ids]


def _last_piece(word_ids, word_labels):
    out = []
    for i, w in enumerate(word_ids):
        nxt = word_ids[i + 1] if i + 1 < len(word_ids) else None
        out.append(IGNORE if w is None or w == nxt else word_labels[w])
    return out


def _specials_as_zero(word_ids, word_labels):
    return [0 if x == IGNORE and w is None else x
            for x, w in zip(_reference_align(word_ids, word_labels), word_ids)]


def _by_position(word_ids, word_labels):  # the seed article's shortcut: tag i on token i
    return [word_labels[i] if i < len(word_labels) else 0 for i in range(len(word_ids))]


_ALIGN_MISTAKES = [
    (_every_piece, "continuation pieces carry the word's label: only the FIRST piece of each word "
                   "gets it, the other pieces get -100 (otherwise a long word counts several times)"),
    (_last_piece, "the label is on the LAST piece of each word: put it on the first piece (the one "
                  "where the word id changes from the previous token's)"),
    (_specials_as_zero, "special tokens / padding (word id None) got label 0 ('O'): they must get "
                        "-100 so that the loss and the metric skip them"),
    (_by_position, "labels are placed by token position (tag i on token i), ignoring word ids: "
                   "that is the seed article's shortcut; [CLS] and split words shift every tag"),
]


def _align_cases(tokenizer):
    """(description, word_ids, word_labels) cases, hand-made first, then from the real tokenizer."""
    cases = [
        ("[CLS] w0 w1 w1 w1 w2 [SEP]", [None, 0, 1, 1, 1, 2, None], [3, 1, 2]),
        ("one word in four pieces, then padding", [None, 0, 0, 0, 0, None, None, None], [5]),
        ("two different words in a row", [None, 0, 1, None], [0, 0]),
        ("a word whose continuation has the same label id as the next word",
         [None, 0, 0, 1, 1, 2, None], [1, 2, 2]),
    ]
    if tokenizer is not None:
        sentences = [(["@jmyers", "watching", "#GameOfThrones", "in", "Thessaloniki"],
                      [0, 0, 3, 0, 7]),
                     (["Ahmadinejad"], [1]),
                     (["lol", "@", "NYC", "!!!!"], [0, 0, 7, 0])]
        for words, labels in sentences:
            enc = tokenizer(words, is_split_into_words=True, padding="max_length", max_length=24)
            cases.append((f"real tokenizer, padded to 24: {words}", enc.word_ids(), labels))
    return cases


def check_align_labels(align_labels, tokenizer=None) -> None:
    """``align_labels(word_ids, word_labels) -> list[int]``: first piece gets the label, others -100."""
    for desc, word_ids, labels in _align_cases(tokenizer):
        out = align_labels(list(word_ids), list(labels))
        want = _reference_align(word_ids, labels)
        if not isinstance(out, list):
            fail(f"align_labels returned {type(out).__name__} for {desc}; return a list of ints",
                 "build a Python list with .append and return it")
        if len(out) != len(word_ids):
            fail(f"align_labels returned {len(out)} labels for {len(word_ids)} tokens ({desc})",
                 "return exactly one label per token, i.e. per entry of word_ids (specials and "
                 "padding included)")
        if out == want:
            continue
        for mistake, hint in _ALIGN_MISTAKES:
            if out == mistake(word_ids, labels):
                fail(f"align_labels is wrong for {desc}", hint)
        fail(f"align_labels is wrong for {desc}:\n      word_ids {list(word_ids)}\n      labels   "
             f"{list(labels)}\n      got      {out}\n      expected {want}",
             "walk the tokens keeping the previous word id: None -> -100, a new word id -> its "
             "label, the same word id again -> -100")
    scored = sum(x != IGNORE for x in align_labels([None, 0, 0, 1, None], [4, 6]))
    passed(f"align_labels: first piece labelled, {scored} labels for 2 words, specials and padding -100")


# ---------------------------------------------------------------- task 2: early stopping
def _reference_stop(scores, patience, ties_improve=False):
    best, best_epoch, waited = None, 0, 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or score > best or (ties_improve and score == best):
            best, best_epoch, waited = score, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                return best_epoch, epoch
    return best_epoch, len(scores)


def _global_best(scores, patience):
    _, stop = _reference_stop(scores, patience)
    return max(range(len(scores)), key=lambda i: (scores[i], -i)) + 1, stop


def _ties_improve(scores, patience):
    return _reference_stop(scores, patience, ties_improve=True)


def _patience_plus_one(scores, patience):
    return _reference_stop(scores, patience + 1)


def _patience_minus_one(scores, patience):
    return _reference_stop(scores, patience - 1) if patience > 1 else (1, 1)


def _last_epoch(scores, patience):
    _, stop = _reference_stop(scores, patience)
    return stop, stop


def _zero_based(scores, patience):
    best, stop = _reference_stop(scores, patience)
    return best - 1, stop - 1


_STOP_MISTAKES = [
    (_zero_based, "epochs are numbered from 1 (the first dev score is epoch 1), not from 0"),
    (_last_epoch, "the best epoch is where the dev score was highest, not the last epoch trained: "
                  "early stopping restores those earlier weights"),
    (_global_best, "the best epoch is taken over ALL scores, including epochs after training "
                   "stopped: training never sees those, so the best must come from epochs <= stop"),
    (_ties_improve, "a tie counted as an improvement: only a strictly higher score resets the "
                    "patience counter and moves the best epoch"),
    (_patience_plus_one, "training stopped one epoch late: stop as soon as `patience` epochs in a "
                         "row have not improved (off-by-one)"),
    (_patience_minus_one, "training stopped one epoch early: wait for `patience` non-improving "
                          "epochs, not patience - 1 (off-by-one)"),
]

_STOP_CASES = [
    ([0.5, 0.7, 0.6, 0.65, 0.9], 2, "best in the middle, a better score after stopping"),
    ([0.60, 0.62, 0.64, 0.66], 2, "still improving at the end: no stop, best is the last"),
    ([0.7, 0.7, 0.7, 0.7], 2, "ties: a plateau from the first epoch"),
    ([0.5, 0.8, 0.8, 0.79, 0.81, 0.7], 3, "a tie then a new best just inside patience"),
    ([0.9, 0.1, 0.2, 0.3], 1, "patience 1: stop at the first non-improvement"),
    ([0.4, 0.5, 0.45, 0.44, 0.43, 0.6], 3, "stops exactly when patience runs out"),
    ([0.3], 2, "a single epoch"),
    ([0.5, 0.4, 0.3], 5, "patience longer than training"),
]


def check_early_stopping(best_epoch_and_stop) -> None:
    """``best_epoch_and_stop(dev_scores, patience) -> (best_epoch, stop_epoch)``, 1-based."""
    for scores, patience, desc in _STOP_CASES:
        out = best_epoch_and_stop(list(scores), patience)
        want = _reference_stop(scores, patience)
        if not (isinstance(out, tuple) and len(out) == 2):
            fail(f"best_epoch_and_stop returned {out!r} for {desc}; return a tuple "
                 f"(best_epoch, stop_epoch)", "e.g. `return best_epoch, stop_epoch`")
        if tuple(out) == want:
            continue
        for mistake, hint in _STOP_MISTAKES:
            if tuple(out) == mistake(scores, patience) != want:
                fail(f"best_epoch_and_stop{(scores, patience)} returned {out}, expected {want} "
                     f"({desc})", hint)
        fail(f"best_epoch_and_stop{(scores, patience)} returned {out}, expected {want} ({desc})",
             "walk the epochs keeping the best score, its epoch and how many epochs in a row did "
             "not beat it; stop when that count reaches patience")
    for bad, why in (([], "no dev scores"), ([0.5], "patience 0")):
        try:
            best_epoch_and_stop(bad, 0 if why == "patience 0" else 2)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - the student may raise anything
            fail(f"best_epoch_and_stop raised {type(err).__name__} for {why}; raise ValueError",
                 "bad arguments are a ValueError that says what is wrong and what is allowed")
        fail(f"best_epoch_and_stop accepted {why}; it must raise ValueError",
             "check `if not dev_scores` and `if patience < 1` first")
    passed(f"best_epoch_and_stop: {len(_STOP_CASES)} score histories, ties, patience boundaries, "
           f"bad input rejected")
