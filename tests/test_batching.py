"""effkit.batching: label alignment on the real tokenizer, encoding, padding, seeded loaders."""
import pytest
import torch

from effkit import batching, data
from effkit.batching import IGNORE_INDEX, align_labels


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from effkit.models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)


LABELS = ["O", "B-person", "I-person", "B-geo-loc", "I-geo-loc"]


def test_align_labels_first_piece_only_by_hand():
    # [CLS] w0 w1 w1 w1 w2 [SEP] pad
    word_ids = [None, 0, 1, 1, 1, 2, None, None]
    assert align_labels(word_ids, [3, 1, 2]) == [-100, 3, 1, -100, -100, 2, -100, -100]


def test_align_labels_on_a_word_split_into_many_pieces(tokenizer):
    words = ["Ahmadinejad", "visited", "#Thessalonikiiii"]
    enc = tokenizer(words, is_split_into_words=True)
    word_ids = enc.word_ids()
    assert word_ids.count(0) > 2 and word_ids.count(2) > 2, "the test needs words cut into many pieces"
    aligned = align_labels(word_ids, [1, 0, 3])
    assert [x for x in aligned if x != IGNORE_INDEX] == [1, 0, 3]  # each word scored once
    assert aligned[0] == IGNORE_INDEX and aligned[-1] == IGNORE_INDEX  # [CLS], [SEP]
    assert aligned[word_ids.index(0)] == 1 and aligned[word_ids.index(2)] == 3


def test_align_labels_rejects_too_few_labels():
    with pytest.raises(ValueError, match="word 2 but only 2 word labels"):
        align_labels([None, 0, 1, 2, None], [0, 1])


def test_encode_ner_labels_every_word_once_on_real_data(tokenizer):
    split = data.load_ner().train.take(40, seed=1)
    enc = batching.encode_ner(split, tokenizer, data.load_ner().label_names, max_length=128)
    assert len(enc) == 40 and enc.task == "token"
    for example, words, tags in zip(enc.examples, split.tokens, split.tags):
        assert len(example["labels"]) == len(example["input_ids"])
        scored = [x for x in example["labels"] if x != IGNORE_INDEX]
        assert len(scored) == len(words)
        assert scored == batching.tag_ids(tags, data.load_ner().label_names)


def test_encode_ner_unknown_tag_is_an_error(tokenizer):
    split = data.TaggedSplit([["Paris"]], [["B-city"]])
    with pytest.raises(ValueError, match="'B-city' is not in label_names"):
        batching.encode_ner(split, tokenizer, LABELS)


def test_truncation_warns_with_count_and_length(tokenizer):
    split = data.TextSplit(["short", "a much longer sentence that will not fit in eight tokens"], [0, 1])
    with pytest.warns(UserWarning, match=r"1 of 2 texts .* truncated to 8") as record:
        enc = batching.encode_sentiment(split, tokenizer, max_length=8)
    assert len(enc.examples[1]["input_ids"]) == 8
    # a plain UserWarning that says what to do, reported at the line that called effkit
    [warning] = [w for w in record if "truncated" in str(w.message)]
    assert warning.category is UserWarning and warning.filename == __file__
    assert "a larger max_length keeps them whole" in str(warning.message)


def test_max_length_beyond_the_model_is_an_error(tokenizer):
    split = data.TextSplit(["x"], [0])
    with pytest.raises(ValueError, match="exceeds the model's maximum of 512"):
        batching.encode_sentiment(split, tokenizer, max_length=1024)
    with pytest.raises(ValueError, match="max_length must be an int >= 2"):
        batching.encode_sentiment(split, tokenizer, max_length=1)


def test_collator_pads_inputs_and_token_labels():
    collate = batching.PaddingCollator(pad_token_id=7)
    batch = collate([{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [-100, 4, -100]},
                     {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [-100, 2]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [1, 2, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 4, -100], [-100, 2, -100]]
    seq = collate([{"input_ids": [1], "labels": 1}, {"input_ids": [1, 2], "labels": 0}])
    assert seq["labels"].tolist() == [1, 0] and seq["labels"].dtype == torch.long
    with pytest.raises(ValueError, match="do not know how to pad 'weird'"):
        collate([{"input_ids": [1], "weird": [1]}])


def _order(loader):
    return [b["labels"].tolist() for b in loader]


def test_make_loader_shuffles_by_seed_only():
    enc = batching.Encoded([{"input_ids": [1, 2], "labels": i} for i in range(20)], 0, "sequence")
    a, b = batching.make_loader(enc, 4, True, seed=3), batching.make_loader(enc, 4, True, seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    assert _order(a) == _order(b)
    assert _order(batching.make_loader(enc, 4, True, seed=4)) != _order(a)
    assert _order(batching.make_loader(enc, 4, False)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11],
                                                           [12, 13, 14, 15], [16, 17, 18, 19]]


def test_make_loader_bad_input():
    enc = batching.Encoded([{"input_ids": [1], "labels": 0}], 0, "sequence")
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        batching.make_loader(enc, 0)
    with pytest.raises(TypeError, match="encode_sentiment/encode_ner"):
        batching.make_loader([{"input_ids": [1]}], 2)
    with pytest.raises(ValueError, match="empty dataset"):
        batching.make_loader(batching.Encoded([], 0, "sequence"), 2)


def test_seed_style_encoding_pads_with_o_and_scores_everything(tokenizer):
    split = data.TaggedSplit([["Obama", "in", "Thessaloniki"]], [["B-person", "O", "B-geo-loc"]])
    enc = batching.encode_ner_seed_style(split, tokenizer, LABELS, max_length=16)
    labels = enc.examples[0]["labels"]
    assert len(labels) == len(enc.examples[0]["input_ids"]) == 16
    assert IGNORE_INDEX not in labels
    assert labels[:3] == [1, 0, 3] and labels[3:] == [0] * 13  # position 0 is [CLS]: misaligned
