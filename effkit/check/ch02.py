"""Checkers for assignment 02: labels on word pieces, the learning-rate schedule, early stopping.

Each task is checked against an implementation the student did not write:

- ``check_label_pieces``: the tokenizer itself (``input_ids``), ``effkit.batching.align_labels``
  (the first-piece labels) and the rule "a continuation piece is inside its word's entity" (the
  ``"inside"`` scheme), on real WNUT-2016 tweets picked by the checker (multi-piece words inside
  entities, multi-word entities, multi-piece ``O`` words), with the file's label order and with a
  reordered ``label_names``;
- ``check_lr_schedule``: ``transformers.get_linear_schedule_with_warmup`` driving a real optimizer,
  read before each update exactly as ``effkit.train.fit`` steps it, over many (total, warmup)
  pairs including warmup 0, warmup 1, warmup = total - 1 and a single step;
- ``check_early_stopping``: ``effkit.train.fit`` itself, trained for one step per epoch on a model
  whose dev accuracy follows a scripted history, fixed tricky histories first, then random ones.

When an answer is wrong the checker recomputes the plausible mistakes and names the one that
matches; when none matches, the hint restates the rule without guessing.
"""
from __future__ import annotations

import math
import random
import warnings
from functools import lru_cache

from ._core import call_student, fail, passed

IGNORE = -100
CONTINUATIONS = ("ignore", "inside")


# ================================================================ task 1: labels on word pieces
INDEX_HINT = ("an index ran past the end of a list: `tags` has one entry per word, and there are "
              "more tokens than words. Index `tags` by the word id that "
              "`tokenizer(words, is_split_into_words=True).word_ids()` gives each token. Two "
              "common causes: indexing by token position, or word ids from tokenizing "
              "' '.join(words), which splits off punctuation and so counts more words than yours")


@lru_cache(maxsize=1)
def _tokenizer():
    from transformers import AutoTokenizer

    from ..models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)


def _inside_tag(tag: str) -> str:
    """The tag of a continuation piece under the "inside" scheme: I-<type>, or O."""
    return "O" if tag == "O" else "I-" + tag[2:]


def reference_labels(word_ids, tags, label_names, continuation: str) -> list[int]:
    """The oracle: ``effkit.batching.align_labels`` for the first pieces (and -100 elsewhere);
    under ``"inside"`` every continuation piece gets I-<type> of its word (O for an O word)."""
    from ..batching import align_labels, tag_ids

    first = align_labels(list(word_ids), tag_ids(tags, label_names))
    if continuation == "ignore":
        return first
    out, previous = [], None
    for label, word in zip(first, word_ids):
        if word is not None and word == previous:
            label = label_names.index(_inside_tag(tags[word]))
        out.append(label)
        previous = word
    return out


def _piece_mistakes(word_ids, joined_word_ids, tags, label_names, continuation, n_tokens):
    """(labels, what, hint) for each plausible mistake, for one sentence and scheme."""
    ids = [label_names.index(t) for t in tags]
    o_id = label_names.index("O")
    first = reference_labels(word_ids, tags, label_names, "ignore")
    inside = reference_labels(word_ids, tags, label_names, "inside")
    right = first if continuation == "ignore" else inside
    conts = [i for i, (w, p) in enumerate(zip(word_ids, [None] + list(word_ids[:-1])))
             if w is not None and w == p]

    def with_continuations(value_of):
        out = list(first)
        for i in conts:
            out[i] = value_of(word_ids[i])
        return out

    last = []
    for i, w in enumerate(word_ids):
        nxt = word_ids[i + 1] if i + 1 < len(word_ids) else None
        last.append(IGNORE if w is None or w == nxt else ids[w])
    out = [
        ([ids[i] if i < len(ids) else o_id for i in range(n_tokens)],
         "labels are placed by token position (tag i on token i)",
         "that is the seed article's bug: [CLS] gets the first word's tag and every word cut into "
         "several pieces shifts all the tags after it; look each token's word up in word_ids()"),
        ([ids[i] if i < len(ids) else IGNORE for i in range(n_tokens)],
         "labels are placed by token position (tag i on token i)",
         "that is the seed article's bug: [CLS] gets the first word's tag and every word cut into "
         "several pieces shifts all the tags after it; look each token's word up in word_ids()"),
        ([IGNORE if w == 0 else x for w, x in zip(word_ids, right)],
         "the first word got no label: word id 0 was treated like None",
         "`if not word:` is true for word 0 as well as for None (and `if word:` false for both): "
         "test `word is None`"),
        ([o_id if w is None else x for w, x in zip(word_ids, right)],
         "[CLS], [SEP] (word id None) got the label 'O'",
         "special tokens belong to no word: give them -100 so that the loss and the metric skip them"),
    ]
    if joined_word_ids is not None:
        out.append(([IGNORE if w is None or w == p else ids[w]
                     for w, p in zip(joined_word_ids, [None] + list(joined_word_ids[:-1]))],
                    "the word ids come from tokenizing the joined sentence",
                    "tokenizing ' '.join(words) lets the tokenizer split words its own way (it "
                    "cuts off punctuation such as '#' and '@'), so its word ids do not count YOUR "
                    "words: call tokenizer(words, is_split_into_words=True)"))
    if continuation == "ignore":
        out += [
            (with_continuations(lambda w: ids[w]),
             "continuation pieces carry their word's label",
             "with continuation='ignore' only the FIRST piece of a word is labelled; the other "
             "pieces get -100"),
            (last, "the label sits on the LAST piece of each word",
             "put it on the first piece: the token whose word id differs from the previous token's"),
            (inside, "continuation pieces are labelled (the 'inside' scheme) with continuation='ignore'",
             "'ignore' gives continuation pieces -100; only 'inside' labels them"),
        ]
    else:
        copied = with_continuations(lambda w: ids[w])
        out += [
            (copied, "continuation pieces copy their word's B- tag",
             "seqeval reads every B- as the start of a new entity, so one word would count as "
             "several entities; a continuation piece is inside its word's entity: I-<type>"),
            (first, "continuation pieces got -100 with continuation='inside'",
             "'inside' labels every piece of a word: I-<type> inside an entity, O for an O word"),
            (with_continuations(lambda w: IGNORE if tags[w] == "O"
                                else label_names.index(_inside_tag(tags[w]))),
             "the continuation pieces of O words got -100",
             "under 'inside' every piece is labelled: the pieces of an O word are O too"),
            (with_continuations(lambda w: ids[w] + (tags[w].startswith("B-"))),
             "B- was turned into I- by adding 1 to the label id",
             "that works only when label_names lists I-<type> right after B-<type>; look the tag "
             "up by name: label_names.index('I-' + entity_type)"),
        ]
    return out


def _is_entity_word_split(pieces_per_word, tags):
    return any(n >= 2 and t != "O" for n, t in zip(pieces_per_word, tags))


@lru_cache(maxsize=1)
def _sentences() -> tuple:
    """Real WNUT-2016 tweets a student cannot special-case: each has a word cut into several
    pieces inside an entity, a multi-word entity (B- then I-) and an O word cut into pieces."""
    from ..data import load_ner

    tokenizer = _tokenizer()
    ner = load_ner()
    candidates = []
    for split in (ner.dev, ner.test):
        for words, tags in zip(split.tokens, split.tags):
            if not 6 <= len(words) <= 22:
                continue
            word_ids = tokenizer(words, is_split_into_words=True).word_ids()
            pieces = [word_ids.count(i) for i in range(len(words))]
            multi_word = any(a.startswith("B-") and b.startswith("I-") for a, b in zip(tags, tags[1:]))
            o_split = any(n >= 2 and t == "O" for n, t in zip(pieces, tags))
            if _is_entity_word_split(pieces, tags) and multi_word and o_split:
                candidates.append((tuple(words), tuple(tags)))
    rng = random.Random(2016)
    return tuple(rng.sample(candidates, min(9, len(candidates)))), tuple(ner.label_names)


def _label_cases():
    """(words, tags, label_names, continuation, description) in the order they are checked."""
    sentences, names = _sentences()
    names = list(names)
    reordered = sorted(names)  # 'B-company', 'B-facility', ..., 'I-tvshow', 'O'
    cases = [(w, t, names, "ignore", "label_names in the file's order") for w, t in sentences[:3]]
    cases += [(w, t, names, "inside", "label_names in the file's order") for w, t in sentences[3:6]]
    cases += [(w, t, reordered, "inside", "label_names in alphabetical order (all B- before all I-)")
              for w, t in sentences[6:]]
    return cases


def _show(tokens, word_ids, tags, got, want, names) -> str:
    """A few rows around the first difference: piece, word id, word tag, got, expected."""
    first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
    def name(x):
        if x == IGNORE:
            return "-100"
        return names[x] if isinstance(x, int) and 0 <= x < len(names) else repr(x)

    rows = [f"      {'piece':<16}{'word':>5}  {'word tag':<15}{'yours':<15}expected"]
    for i in range(max(0, first - 2), min(len(want), first + 4)):
        w = word_ids[i]
        rows.append(f"      {tokens[i]:<16}{'-' if w is None else w:>5}  "
                    f"{'-' if w is None else tags[w]:<15}{name(got[i]):<15}{name(want[i])}"
                    + ("   <--" if got[i] != want[i] else ""))
    return "\n".join(rows)


def _check_piece_output(out, n_tokens: int, want_ids, case: str):
    if not (isinstance(out, tuple) and len(out) == 2):
        fail(f"label_pieces returned {type(out).__name__} ({case}); return a tuple "
             f"(input_ids, labels)", "e.g. `return encoding['input_ids'], labels`")
    input_ids, labels = out
    if hasattr(input_ids, "tolist"):
        fail(f"label_pieces returned input_ids as {type(input_ids).__name__} ({case})",
             "return plain lists of ints: call the tokenizer without return_tensors")
    if list(input_ids) != list(want_ids):
        fail(f"input_ids differ from tokenizer(words, is_split_into_words=True) ({case})",
             "tokenize the list of words as it is: is_split_into_words=True, with the special "
             "tokens, no padding, no truncation")
    if not isinstance(labels, list) or not all(isinstance(x, int) for x in labels):
        fail(f"labels must be a list of ints ({case}), got {type(labels).__name__}",
             "append label ids (ints, -100 for ignored positions) to a list")
    if len(labels) != n_tokens:
        fail(f"label_pieces returned {len(labels)} labels for {n_tokens} tokens ({case})",
             "one label per token, [CLS] and [SEP] included (they get -100)")
    return labels


def check_label_pieces(label_pieces) -> None:
    """``label_pieces(words, tags, tokenizer, label_names, continuation) -> (input_ids, labels)``
    on real tweets, against the tokenizer, ``align_labels`` and the "inside" rule."""
    tokenizer = _tokenizer()
    cases = _label_cases()
    for words, tags, names, continuation, order in cases:
        words, tags = list(words), list(tags)
        case = f"continuation={continuation!r}, {order}, tweet {' '.join(words)!r}"
        enc = tokenizer(words, is_split_into_words=True)
        word_ids = enc.word_ids()
        out = call_student(f"label_pieces (continuation={continuation!r})", label_pieces,
                           list(words), list(tags), tokenizer, list(names), continuation,
                           shape_hint=INDEX_HINT, shape_errors=(IndexError,))
        labels = _check_piece_output(out, len(word_ids), enc["input_ids"], case)
        want = reference_labels(word_ids, tags, names, continuation)
        if labels == want:
            continue
        joined = tokenizer(" ".join(words))
        joined_ids = joined.word_ids() if joined["input_ids"] == enc["input_ids"] and \
            max(w for w in joined.word_ids() if w is not None) < len(words) else None
        table = _show(tokenizer.convert_ids_to_tokens(enc["input_ids"]), word_ids, tags, labels,
                      want, names)
        for value, what, hint in _piece_mistakes(word_ids, joined_ids, tags, names, continuation,
                                                 len(word_ids)):
            if labels == value:
                fail(f"{what} ({case}):\n{table}", hint)
        fail(f"the labels differ from the expected ones ({case}):\n{table}",
             "walk word_ids() keeping the previous word id: None -> -100; a new word -> its tag; "
             "the same word again -> -100 ('ignore'), or I-<type> / O ('inside')")
    for bad in ("first", "all"):
        try:
            label_pieces(["a"], ["O"], tokenizer, ["O"], bad)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 - the student may raise anything
            fail(f"label_pieces raised {type(err).__name__} for continuation={bad!r}; raise "
                 f"ValueError", "an unknown option is a ValueError that lists the allowed ones")
        fail(f"label_pieces accepted continuation={bad!r}; it must raise ValueError",
             f"allowed values: {CONTINUATIONS}")
    passed(f"label_pieces: {len(cases)} real tweets, both schemes, two label orders, "
           f"the same labels as align_labels and the 'inside' rule")


# ================================================================ task 2: the learning rate
# (total_steps, warmup_steps, peak_lr): a single step, warmup 0 and 1, warmup = total - 1, the
# warmup that fit derives from warmup_ratio=0.1 (ceil), odd totals where a wrong rounding shows.
LR_CASES = ((10, 1, 5e-5), (10, 0, 2e-5), (1, 0, 1e-3), (2, 1, 3e-4), (7, 3, 0.1), (3, 0, 0.5),
            (25, 3, 5e-5), (16, 2, 2e-4), (37, 36, 1e-3), (5, 4, 0.01), (64, 7, 3e-5),
            (100, 10, 1e-4))

ZERO_HINT = ("warmup_steps can be 0 (warmup_ratio=0 in TrainConfig): then there is no warmup and "
             "the first update already runs at peak_lr; do not divide by warmup_steps then "
             "(transformers divides by max(1, warmup_steps))")


def oracle_lrs(total: int, warmup: int, peak: float) -> list[float]:
    """The rate each update 1..total uses: read from a real optimizer driven by
    ``transformers.get_linear_schedule_with_warmup``, stepped as ``effkit.train.fit`` steps it
    (optimizer.step(), then scheduler.step())."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=peak)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _factor(s: int, total: int, warmup: int) -> float:
    """The multiplier after s scheduler steps (0-based), for building the mistakes below."""
    if s < warmup:
        return s / max(1, warmup)
    return max(0.0, (total - s) / max(1, total - warmup))


def _lr_mistakes(total: int, warmup: int, peak: float):
    steps = range(1, total + 1)
    out = [
        ([peak * _factor(t, total, warmup) for t in steps],
         "your rates are one update ahead: they are the rates AFTER each update",
         "fit calls scheduler.step() after optimizer.step(), so update t runs at the rate set "
         "after t - 1 scheduler steps; with a warmup the first update runs at lr 0 (History."
         "learning_rate and get_last_lr() record the rate after the update)"),
        ([peak * (t / warmup if t <= warmup else _factor(t - 1, total, warmup)) for t in steps],
         "the warmup reaches the peak one update early",
         "during the warmup update t runs at peak * (t - 1) / warmup_steps: 0 for the first "
         "update, the peak only at update warmup_steps + 1"),
        ([peak * (_factor(t - 1, total, warmup) if t - 1 < warmup
                  else max(0.0, (total - (t - 1)) / total)) for t in steps],
         "the decay runs over total_steps instead of the steps after the warmup",
         "after the warmup the rate falls from the peak to 0 over total_steps - warmup_steps "
         "updates: peak * (total - s) / (total - warmup)"),
        ([peak * _factor(t - 1, total, 0) for t in steps],
         "the warmup is missing",
         "for the first warmup_steps updates the rate rises linearly from 0 towards the peak"),
        ([_factor(t - 1, total, warmup) for t in steps],
         "the rates are fractions of the peak, not learning rates",
         "multiply the schedule's factor by peak_lr"),
    ]
    if warmup == 0:
        out.append(([peak * _factor(t - 1, total, 1) for t in steps],
                    "warmup_steps=0 was treated as one step of warmup",
                    "with warmup_steps=0 there is no warmup: the first update runs at peak_lr"))
    return out


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        fail(f"{what} returned a bool; expected a number", "return the learning rate as a float")
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    fail(f"{what} returned {type(value).__name__}; expected a number",
         "return the learning rate as a float")


def _same(a, b) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-15)
                                    for x, y in zip(a, b))


def check_lr_schedule(lr_at_step) -> None:
    """``lr_at_step(step, total_steps, warmup_steps, peak_lr)``, step counted from 1: the rate
    update ``step`` runs at in ``fit``, equal to transformers' linear warmup-then-decay schedule."""
    for total, warmup, peak in LR_CASES:
        case = f"total_steps={total}, warmup_steps={warmup}, peak_lr={peak}"
        got = [_number(call_student(f"lr_at_step({t}, {total}, {warmup}, {peak})", lr_at_step,
                                    t, total, warmup, peak, shape_hint=ZERO_HINT,
                                    shape_errors=(ZeroDivisionError,)),
                       f"lr_at_step({t}, {total}, {warmup}, {peak})")
               for t in range(1, total + 1)]
        want = oracle_lrs(total, warmup, peak)
        if _same(got, want):
            continue
        bad = next(i for i, (g, w) in enumerate(zip(got, want))
                   if not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-15)) + 1
        shown = f"{case}: update {bad} runs at {want[bad - 1]:.6g}, yours {got[bad - 1]:.6g}"
        for value, what, hint in _lr_mistakes(total, warmup, peak):
            if _same(got, value):
                fail(f"{what} ({shown})", hint)
        if all(g == 0 or math.isclose(g, peak) for g in got) and any(g == 0 for g in got):
            fail(f"every rate is 0 or the peak ({shown}): integer division?",
                 "use `/`, not `//`: step / warmup_steps is a fraction")
        fail(shown, "update t runs at peak * f(t - 1): f(s) = s / warmup_steps while s < warmup_steps, "
                    "then (total_steps - s) / (total_steps - warmup_steps)")
    passed(f"lr_at_step: {len(LR_CASES)} (total, warmup) pairs, every update, the same rates as "
           f"transformers' linear schedule stepped as in fit")


# ================================================================ task 3: early stopping
DEV_SIZE = 100  # dev examples of the scripted model: its accuracy is a multiple of 1/100

# (correct dev answers per epoch, patience, what the case tests)
STOP_CASES = (
    ((50, 70, 60, 65, 90), 2, "best in the middle, a better score after stopping"),
    ((60, 62, 64, 66), 2, "still improving at the end: no stop, the best is the last"),
    ((70, 70, 70, 70), 2, "ties: a plateau from the first epoch"),
    ((0, 0, 0, 12, 30), 2, "an F1 of 0.0 in the first epochs (common for NER)"),
    ((0, 25, 0, 40), 1, "0.0, then a real score, patience 1"),
    ((50, 80, 80, 79, 81, 70), 3, "a tie, then a new best just inside patience"),
    ((40, 50, 45, 55, 50, 60, 58, 57), 2, "new bests between short dips: the count restarts"),
    ((90, 10, 20, 30), 1, "patience 1: stop at the first non-improvement"),
    ((40, 50, 45, 44, 43, 60), 3, "stops exactly when patience runs out"),
    ((30,), 2, "a single epoch"),
    ((50, 40, 30), 5, "patience longer than training"),
)


def _random_stop_cases(n: int = 10, seed: int = 7):
    rng = random.Random(seed)
    values = (0, 0, 30, 45, 45, 50, 62, 62, 70, 71)
    cases = []
    for i in range(n):
        length = rng.randint(3, 9)
        counts = [rng.choice(values) for _ in range(length)]
        if i % 3 == 0:
            counts[:2] = [0, 0]
        cases.append((tuple(counts), rng.randint(1, 4), f"random history {i + 1}"))
    return cases


@lru_cache(maxsize=256)
def _scripted_fit(counts: tuple, patience: int):
    """Run ``effkit.train.fit`` for len(counts) epochs of one step each, on a model whose dev
    accuracy after epoch e is counts[e - 1] / DEV_SIZE. Returns (best_epoch, stop_epoch, scores)."""
    from types import SimpleNamespace

    import torch
    from torch import nn

    from ..batching import Encoded, make_loader
    from ..train import TrainConfig, fit

    class Scripted(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(num_labels=2)
            self.bias = nn.Parameter(torch.zeros(2))
            self.evaluations = 0

        def forward(self, input_ids, attention_mask=None, labels=None):
            rows = input_ids.shape[0]
            if self.training:
                logits = self.bias.expand(rows, 2)
                return SimpleNamespace(loss=nn.functional.cross_entropy(logits, labels), logits=logits)
            right = torch.arange(rows) < counts[self.evaluations]
            self.evaluations += 1
            predicted = torch.where(right, labels, 1 - labels)
            return SimpleNamespace(loss=torch.zeros(()),
                                   logits=nn.functional.one_hot(predicted, 2).float())

    def loader(rows):
        return make_loader(Encoded([{"input_ids": [1, 2], "labels": 0}] * rows, 0, "sequence"), rows)

    config = TrainConfig(epochs=len(counts), batch_size=2, patience=patience, warmup_ratio=0.0)
    with warnings.catch_warnings():  # sklearn's macro-F1 warns about a class never predicted
        warnings.simplefilter("ignore")
        history = fit(Scripted(), loader(2), loader(DEV_SIZE), config, progress=False, device="cpu")
    return history.best_step, history.steps, [e["accuracy"] for e in history.evals]


def _stop(scores, patience, *, ties_improve=False, reset=True, start=None, late=0):
    """The early-stopping rule with one knob per plausible mistake (the defaults are fit's)."""
    best, best_epoch, waited = start, (None if start is not None else 0), 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or score > best or (ties_improve and score == best):
            best, best_epoch = score, epoch
            if reset:
                waited = 0
        else:
            waited += 1
            if waited >= patience + late:
                return best_epoch, epoch
    return best_epoch, len(scores)


def _stop_mistakes(scores, patience):
    _, stop = _stop(scores, patience)
    from_zero_best, from_zero_stop = _stop(scores, patience, start=0.0)
    zero_hint = ("start from no best at all (None, or -inf): the first evaluation is always the "
                 "best so far, even when it scores 0.0, as NER's entity F1 often does in the "
                 "first epochs")
    zero_what = "the best score started at 0, so a first score of 0.0 was not an improvement"
    out = []
    # a best that started at 0 may never be set: the student's initial epoch is 0 or None then.
    # First in the list: with a 0.0 start it can coincide with counting epochs from 0.
    for best in ([from_zero_best] if from_zero_best is not None else [0, None]):
        out.append(((best, from_zero_stop), zero_what, zero_hint))
    out += [
        (tuple(e - 1 for e in _stop(scores, patience)),
         "epochs are numbered from 0", "the first dev score is epoch 1, not epoch 0"),
        ((stop, stop), "the best epoch is the last epoch trained",
         "early stopping restores the weights of the best evaluation, which may be earlier"),
        ((max(range(1, len(scores) + 1), key=lambda e: (scores[e - 1], -e)), stop),
         "the best epoch is taken over ALL the scores, including epochs after training stopped",
         "training never sees those scores: the best must come from epochs <= stop"),
        (_stop(scores, patience, ties_improve=True),
         "a tie counted as an improvement (`>=` instead of `>`)",
         "only a strictly higher score resets the patience counter and moves the best epoch"),
        (_stop(scores, patience, reset=False),
         "the patience counter was not reset on a new best",
         "`patience` counts evaluations IN A ROW without improvement: set it back to 0 whenever a "
         "new best arrives"),
    ]
    out += [
        (_stop(scores, patience, late=1), "training stopped one epoch late",
         "stop as soon as `patience` evaluations in a row have not improved"),
        (_stop(scores, patience, late=-1),
         "training stopped one epoch early", "wait for `patience` evaluations without improvement, "
         "not patience - 1"),
    ]
    return out


def check_early_stopping(best_epoch_and_stop) -> None:
    """``best_epoch_and_stop(dev_scores, patience) -> (best_epoch, stop_epoch)``, 1-based, equal
    to what ``effkit.train.fit`` keeps and where it stops, on fixed and random histories."""
    cases = list(STOP_CASES) + _random_stop_cases()
    for counts, patience, desc in cases:
        scores = [c / DEV_SIZE for c in counts]
        out = call_student(f"best_epoch_and_stop({scores}, {patience})", best_epoch_and_stop,
                           list(scores), patience,
                           shape_hint="the epochs are 1..len(dev_scores); dev_scores[epoch - 1] "
                                      "is the score of that epoch")
        if not (isinstance(out, tuple) and len(out) == 2):
            fail(f"best_epoch_and_stop returned {out!r} ({desc}); return a tuple "
                 f"(best_epoch, stop_epoch)", "e.g. `return best_epoch, stop_epoch`")
        best, stop, seen = _scripted_fit(counts, patience)
        want = (best, stop)
        if tuple(out) == want:
            continue
        what = (f"best_epoch_and_stop({scores}, patience={patience}) returned {tuple(out)}; fit kept "
                f"epoch {best} and stopped after epoch {stop} ({desc}; fit saw {seen})")
        for value, mistake, hint in _stop_mistakes(scores, patience):
            if tuple(out) == tuple(value) != want:
                fail(f"{mistake}: {what}", hint)
        fail(what, "walk the epochs keeping the best score, its epoch and how many evaluations in "
                   "a row did not beat it; stop when that count reaches patience")
    for bad, patience, why in (([], 2, "no dev scores"), ([0.5], 0, "patience 0")):
        try:
            best_epoch_and_stop(bad, patience)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 - the student may raise anything
            fail(f"best_epoch_and_stop raised {type(err).__name__} for {why}; raise ValueError",
                 "bad arguments are a ValueError that says what is wrong and what is allowed")
        fail(f"best_epoch_and_stop accepted {why}; it must raise ValueError",
             "check `if not dev_scores` and `if patience < 1` first")
    passed(f"best_epoch_and_stop: {len(cases)} dev histories (ties, 0.0 starts, random ones), the "
           f"same best and stop epochs as effkit.train.fit; bad input rejected")
