"""From data splits to model batches: tokenisation, label alignment, padding, DataLoaders.

A word such as ``"#gameofthrones"`` becomes several word pieces, but WNUT gives one tag per word.
``align_labels`` puts the word's label on its FIRST piece and -100 on every other position
(continuation pieces, [CLS]/[SEP], padding); PyTorch's cross-entropy skips -100, and so does
evaluation, so each word is trained and scored exactly once.

``encode_ner_seed_style`` reproduces the shortcut of the seed article (tags placed on positions
0, 1, 2 ... with no alignment, padded with 'O' to max_length) so chapter 02 can measure it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # label of continuation pieces, special tokens and padding (never scored)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Encoded(torch.utils.data.Dataset):
    """Tokenised examples ready for :func:`make_loader`.

    examples: one dict per example with python-int lists ``input_ids``, ``attention_mask``
        (``token_type_ids`` if the tokenizer makes them) and ``labels`` (an int for a sentence,
        a list as long as ``input_ids`` for tokens).
    pad_token_id: the id the collator pads ``input_ids`` with.
    """
    examples: list[dict]
    pad_token_id: int
    task: str

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


# ---------------------------------------------------------------- label alignment
def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """One label per token: the word's label on its first piece, -100 everywhere else.

    word_ids: ``encoding.word_ids(i)``: for each token the index of the word it came from, or None
        for special tokens and padding. Example: ``[None, 0, 1, 1, 1, 2, None]``.
    word_labels: one label id per word.
    Returns a list as long as ``word_ids``: ``[-100, l0, l1, -100, -100, l2, -100]``.
    """
    aligned, previous = [], None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORE_INDEX)
        elif word != previous:
            if word >= len(word_labels):
                raise ValueError(f"word_ids refers to word {word} but only {len(word_labels)} "
                                 f"word labels were given")
            aligned.append(word_labels[word])
        else:
            aligned.append(IGNORE_INDEX)
        previous = word
    return aligned


# ---------------------------------------------------------------- encoding
def _check_max_length(tokenizer, max_length: int) -> None:
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit < 1_000_000 and max_length > limit:  # huge = "no limit set"
        raise ValueError(f"max_length={max_length} exceeds the model's maximum of {limit} tokens "
                         f"(its position embeddings end there); use max_length <= {limit}")


def _warn_truncated(lengths: list[int], max_length: int, what: str) -> int:
    """Warn (once per call) how many examples were cut; returns that number."""
    cut = sum(n > max_length for n in lengths)
    if cut:
        warnings.warn(f"{cut} of {len(lengths)} {what} are longer than max_length={max_length} "
                      f"tokens (longest {max(lengths)}) and were truncated to {max_length}; "
                      f"a larger max_length keeps them whole",
                      UserWarning, stacklevel=3)
    return cut


def _model_inputs(encoding, i: int) -> dict:
    return {k: encoding[k][i] for k in MODEL_INPUTS if k in encoding}


def encode_sentiment(split, tokenizer, max_length: int = 64) -> Encoded:
    """Tokenise a :class:`~effkit.data.TextSplit` (one label per text), truncating to ``max_length``."""
    _check_max_length(tokenizer, max_length)
    full = tokenizer(split.texts, truncation=False)["input_ids"]
    _warn_truncated([len(ids) for ids in full], max_length, "texts")
    enc = tokenizer(split.texts, truncation=True, max_length=max_length)
    examples = [{**_model_inputs(enc, i), "labels": int(label)} for i, label in enumerate(split.labels)]
    return Encoded(examples, tokenizer.pad_token_id, "sequence")


def tag_ids(tags: list[str], label_names: list[str]) -> list[int]:
    """Tag names to ids; an unknown tag is an error that lists the known ones."""
    index = {name: i for i, name in enumerate(label_names)}
    try:
        return [index[t] for t in tags]
    except KeyError as err:
        raise ValueError(f"tag {err.args[0]!r} is not in label_names {label_names}") from None


def encode_ner(split, tokenizer, label_names: list[str], max_length: int = 128) -> Encoded:
    """Tokenise a :class:`~effkit.data.TaggedSplit` (words + BIO tags) with aligned labels.

    Words cut off by truncation lose their labels (they are then neither trained nor scored),
    hence the warning: pick ``max_length`` so that it does not fire.
    """
    _check_max_length(tokenizer, max_length)
    full = tokenizer(split.tokens, is_split_into_words=True, truncation=False)["input_ids"]
    _warn_truncated([len(ids) for ids in full], max_length, "sentences")
    enc = tokenizer(split.tokens, is_split_into_words=True, truncation=True, max_length=max_length)
    examples = []
    for i, tags in enumerate(split.tags):
        labels = align_labels(enc.word_ids(i), tag_ids(tags, label_names))
        examples.append({**_model_inputs(enc, i), "labels": labels})
    return Encoded(examples, tokenizer.pad_token_id, "token")


def encode_ner_seed_style(split, tokenizer, label_names: list[str], max_length: int = 128) -> Encoded:
    """The seed article's shortcut, reproduced to be measured (do not train with it).

    Every sentence is padded to ``max_length``; the word tags are written on token positions
    0, 1, 2, ... (so [CLS] gets the first word's tag and word pieces shift everything after them)
    and the rest is filled with 'O'. No position is -100, so every pad is scored.
    """
    _check_max_length(tokenizer, max_length)
    o_id = tag_ids(["O"], label_names)[0]
    enc = tokenizer([" ".join(words) for words in split.tokens], truncation=True,
                    max_length=max_length, padding="max_length")
    examples = []
    for i, tags in enumerate(split.tags):
        labels = (tag_ids(tags, label_names) + [o_id] * max_length)[:max_length]
        examples.append({**_model_inputs(enc, i), "labels": labels})
    return Encoded(examples, tokenizer.pad_token_id, "token")


# ---------------------------------------------------------------- batches
class PaddingCollator:
    """Pad a list of examples to the longest one in the batch and stack them into tensors.

    input_ids are padded with ``pad_token_id``, attention_mask and token_type_ids with 0 and
    token labels with -100 (so padding is never trained or scored).
    Padding to the batch's longest example, not to max_length, saves most of the compute on
    short texts such as tweets.
    """

    def __init__(self, pad_token_id: int = 0):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        longest = max(len(e["input_ids"]) for e in examples)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                "labels": IGNORE_INDEX}
        batch = {}
        for key in examples[0]:
            values = [e[key] for e in examples]
            if key == "labels" and not isinstance(values[0], list):
                batch[key] = torch.tensor(values, dtype=torch.long)  # one label per sentence
                continue
            if key not in pads:
                raise ValueError(f"do not know how to pad {key!r}; known keys: {sorted(pads)}")
            batch[key] = torch.tensor([v + [pads[key]] * (longest - len(v)) for v in values],
                                      dtype=torch.long)
        return batch


def make_loader(encoded: Encoded, batch_size: int, shuffle: bool = False,
                seed: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader of padded dict batches; shuffling uses its own seeded generator.

    With ``shuffle=True`` the order depends only on ``seed`` (and :func:`effkit.train.fit`
    re-seeds it with ``TrainConfig.seed``), not on whatever else used the global RNG before.
    """
    if not isinstance(encoded, Encoded):
        raise TypeError(f"make_loader needs the result of encode_sentiment/encode_ner, "
                        f"got {type(encoded).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(encoded) == 0:
        raise ValueError("cannot make a loader from an empty dataset")
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(encoded, batch_size=batch_size, shuffle=shuffle,
                                       generator=generator, collate_fn=PaddingCollator(encoded.pad_token_id))
