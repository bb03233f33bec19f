"""Assignment 02, task 1: labels on word pieces, checked against the tokenizer's word_ids(),
``effkit.batching.align_labels`` and the "inside" rule, on real WNUT-2016 tweets."""
from __future__ import annotations

import random
from functools import lru_cache

from .._core import call_student, fail, passed


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

    from ...models import default_model_path

    return AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)


def _inside_tag(tag: str) -> str:
    """The tag of a continuation piece under the "inside" scheme: I-<type>, or O."""
    return "O" if tag == "O" else "I-" + tag[2:]


def reference_labels(word_ids, tags, label_names, continuation: str) -> list[int]:
    """The oracle: ``effkit.batching.align_labels`` for the first pieces (and -100 elsewhere);
    under ``"inside"`` every continuation piece gets I-<type> of its word (O for an O word)."""
    from ...batching import align_labels, tag_ids

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
    from ...data import load_ner

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
