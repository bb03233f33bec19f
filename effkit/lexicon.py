"""The lexicon-lookup NER baseline: tag what was seen in training, nothing else.

Build a dictionary of every entity string in the train split (lower-cased word tuples) with its
most frequent type. Tag a new sentence by scanning left to right and taking, at each position,
the LONGEST dictionary entry that starts there. A fine-tuned model has to beat this: it only
memorises, so it cannot find an entity it never saw, and it tags "apple" the fruit as a company.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass


def entity_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """``(start, end, type)`` of each BIO entity, ``end`` exclusive. An ``I-`` after a different
    type or after ``O`` starts a new entity (the lenient conlleval reading)."""
    spans, start, etype = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, kind = tag.partition("-")
        if start is not None and (prefix != "I" or kind != etype):
            spans.append((start, i, etype))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, etype = i, kind
    return spans


@dataclass
class Lexicon:
    """entries: lower-cased word tuple -> most frequent entity type. longest: words in the longest entry."""
    entries: dict[tuple[str, ...], str]
    longest: int

    def __len__(self) -> int:
        return len(self.entries)

    def tag(self, words: list[str]) -> list[str]:
        """BIO tags for one sentence by greedy longest match, left to right."""
        lowered = [w.lower() for w in words]
        tags, i = ["O"] * len(words), 0
        while i < len(words):
            for length in range(min(self.longest, len(words) - i), 0, -1):
                etype = self.entries.get(tuple(lowered[i:i + length]))
                if etype is not None:
                    tags[i:i + length] = [f"B-{etype}"] + [f"I-{etype}"] * (length - 1)
                    i += length
                    break
            else:
                i += 1
        return tags

    def tag_all(self, sentences: list[list[str]]) -> list[list[str]]:
        return [self.tag(words) for words in sentences]


def build_lexicon(split, min_count: int = 1) -> Lexicon:
    """A :class:`Lexicon` from a :class:`~effkit.data.TaggedSplit` (usually the train split).

    Each entity string keeps its most frequent type (ties: alphabetical, so it is deterministic);
    strings seen fewer than ``min_count`` times are dropped.
    """
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    counts: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    for words, tags in zip(split.tokens, split.tags):
        if len(words) != len(tags):
            raise ValueError(f"a sentence has {len(words)} words but {len(tags)} tags")
        for start, end, etype in entity_spans(tags):
            counts[tuple(w.lower() for w in words[start:end])][etype] += 1
    entries = {}
    for key, types in counts.items():
        if sum(types.values()) >= min_count:
            entries[key] = min(types, key=lambda t: (-types[t], t))
    return Lexicon(entries, max((len(k) for k in entries), default=0))


def evaluate_lexicon(lexicon: Lexicon, split) -> dict:
    """Entity precision/recall/F1 (seqeval, same function as the model's) of the lexicon on ``split``."""
    from .evaluate import entity_metrics

    return entity_metrics(split.tags, lexicon.tag_all(split.tokens))
