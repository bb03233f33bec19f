"""The chapter-02 checkers pass the right answers and catch each classic mistake with its hint."""
import pytest

from effkit.batching import align_labels as reference_align
from effkit.check import ch02


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from effkit.models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)


# ---------------------------------------------------------------- align_labels
def align_every_piece(word_ids, labels):
    return [-100 if w is None else labels[w] for w in word_ids]


def align_last_piece(word_ids, labels):
    out = []
    for i, w in enumerate(word_ids):
        nxt = word_ids[i + 1] if i + 1 < len(word_ids) else None
        out.append(-100 if w is None or w == nxt else labels[w])
    return out


def align_specials_zero(word_ids, labels):
    out, prev = [], None
    for w in word_ids:
        out.append(0 if w is None else (-100 if w == prev else labels[w]))
        prev = w
    return out


def align_by_position(word_ids, labels):
    return [labels[i] if i < len(labels) else 0 for i in range(len(word_ids))]


def align_drops_specials(word_ids, labels):
    return reference_align(word_ids, labels)[1:-1]  # forgot [CLS] and [SEP]


def align_compares_labels_not_word_ids(word_ids, labels):
    # "new word when the label changes": merges neighbouring words that share a label
    out, prev = [], object()
    for w in word_ids:
        lab = None if w is None else labels[w]
        out.append(-100 if w is None or lab == prev else lab)
        prev = lab
    return out


def test_reference_align_passes(tokenizer, capsys):
    ch02.check_align_labels(reference_align, tokenizer)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (align_every_piece, "only the FIRST piece"),
    (align_last_piece, "LAST piece"),
    (align_specials_zero, "must get -100"),
    (align_by_position, "seed article's shortcut"),
    (align_drops_specials, "one label per token"),
    (align_compares_labels_not_word_ids, "expected"),
])
def test_align_mistakes_are_caught(wrong, words, tokenizer):
    with pytest.raises(AssertionError, match=words):
        ch02.check_align_labels(wrong, tokenizer)


def test_align_unfinished_stub_stops_with_not_implemented():
    def stub(word_ids, labels):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        ch02.check_align_labels(stub)


# ---------------------------------------------------------------- early stopping
def stop_right(scores, patience):
    if not scores:
        raise ValueError("empty")
    if patience < 1:
        raise ValueError("patience")
    best, best_epoch, waited = None, 0, 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or score > best:
            best, best_epoch, waited = score, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                return best_epoch, epoch
    return best_epoch, len(scores)


def stop_last_epoch(scores, patience):
    _, stop = stop_right(scores, patience)
    return stop, stop


def stop_global_best(scores, patience):
    _, stop = stop_right(scores, patience)
    return scores.index(max(scores)) + 1, stop


def stop_off_by_one_late(scores, patience):
    return stop_right(scores, patience + 1)


def stop_off_by_one_early(scores, patience):
    if not scores or patience < 1:
        raise ValueError("bad")
    best, best_epoch, waited = None, 0, 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or score > best:
            best, best_epoch, waited = score, epoch, 0
        else:
            waited += 1
            if waited >= patience - 1:
                return best_epoch, epoch
    return best_epoch, len(scores)


def stop_ties_improve(scores, patience):
    best, best_epoch, waited = None, 0, 0
    for epoch, score in enumerate(scores, start=1):
        if best is None or score >= best:
            best, best_epoch, waited = score, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                return best_epoch, epoch
    return best_epoch, len(scores)


def stop_zero_based(scores, patience):
    best, stop = stop_right(scores, patience)
    return best - 1, stop - 1


def stop_no_validation(scores, patience):
    if not scores:
        return 0, 0
    return stop_right(scores, max(patience, 1))


def stop_returns_list(scores, patience):
    return list(stop_right(scores, patience))


def test_right_early_stopping_passes(capsys):
    ch02.check_early_stopping(stop_right)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (stop_last_epoch, "not the last epoch"),
    (stop_global_best, "including epochs after training"),
    (stop_off_by_one_late, "one epoch late"),
    (stop_off_by_one_early, "one epoch early"),
    (stop_ties_improve, "tie counted as an improvement"),
    (stop_zero_based, "numbered from 1"),
    (stop_no_validation, "must raise ValueError"),
    (stop_returns_list, "return a tuple"),
])
def test_early_stopping_mistakes_are_caught(wrong, words):
    with pytest.raises(AssertionError, match=words):
        ch02.check_early_stopping(wrong)


def test_checker_cases_agree_with_fit(monkeypatch):
    """The rule the assignment checks is the rule effkit.train.fit applies."""
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

    for scores, patience, _ in ch02._STOP_CASES:
        it = iter(scores)
        monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"accuracy": next(it)})
        examples = [{"input_ids": [1, 2], "labels": 0}] * 4
        loader = batching.make_loader(batching.Encoded(examples, 0, "sequence"), 4)
        torch.manual_seed(0)
        h = train.fit(Tiny(), loader, loader, train.TrainConfig(epochs=len(scores), patience=patience),
                      progress=False, device="cpu")
        assert (h.best_step, h.steps) == stop_right(scores, patience)  # one step per epoch here
