"""Assignment 02, task 3: early stopping, checked against ``effkit.train.fit`` itself on a model
whose dev accuracy follows a scripted history."""
from __future__ import annotations

import random
import warnings
from functools import lru_cache

from .._core import call_student, fail, passed


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

    from ...batching import Encoded, make_loader
    from ...train import TrainConfig, fit

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
