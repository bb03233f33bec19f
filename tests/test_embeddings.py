"""effkit.embeddings: frozen MiniLM sentence embeddings, checked against sentence-transformers,
and the safetensors cache (reuse, corruption detection, atomic writes)."""
import warnings

import pytest
import torch

import effkit as ek
from effkit import embeddings


@pytest.fixture(scope="module")
def texts():
    return ek.data.load_sentiment().dev.texts[:16]


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    return tmp_path


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(embeddings.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"\(B, T, H\)"):
        embeddings.mean_pool(hidden[0], mask)


def test_matches_sentence_transformers(texts, tmp_cache):
    from sentence_transformers import SentenceTransformer

    ours = embeddings.sentence_embeddings(texts, progress=False)
    st = SentenceTransformer(str(ek.models.default_model_path()), device="cpu")
    ref = st.encode(texts, convert_to_tensor=True, batch_size=8).cpu()
    assert ours.shape == (16, 384) and ours.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(ours, ref)
    assert cosine.min().item() > 0.999
    assert torch.allclose(ours.norm(dim=1), torch.ones(16), atol=1e-5)


def test_length_sorting_does_not_change_the_order(texts, tmp_cache):
    both = embeddings.sentence_embeddings(texts[:6], batch_size=2, cache=False, progress=False)
    one_by_one = torch.cat([embeddings.sentence_embeddings([t], cache=False, progress=False)
                            for t in texts[:6]])
    assert torch.nn.functional.cosine_similarity(both, one_by_one).min().item() > 0.9999


def test_cache_is_written_once_and_reused(texts, tmp_cache, monkeypatch):
    first = embeddings.sentence_embeddings(texts[:4], progress=False)
    files = list((tmp_cache / "embeddings").glob("*.safetensors"))
    assert len(files) == 1
    assert not list((tmp_cache / "embeddings").glob(".*tmp"))  # the atomic write left no temp file

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed although the cache was valid")
    monkeypatch.setattr(embeddings, "compute_embeddings", no_compute)
    assert torch.equal(embeddings.sentence_embeddings(texts[:4], progress=False), first)
    # a different text list, or a different max_length, is a different key
    assert embeddings.cache_key(texts[:4], None, 128, True) != embeddings.cache_key(texts[:3], None, 128, True)
    assert embeddings.cache_key(texts[:4], None, 128, True) != embeddings.cache_key(texts[:4], None, 64, True)


@pytest.mark.parametrize("damage", ["truncate", "flip_data_byte", "garbage"])
def test_corrupt_cache_is_detected_and_recomputed(texts, tmp_cache, damage):
    first = embeddings.sentence_embeddings(texts[:3], progress=False)
    path = next((tmp_cache / "embeddings").glob("*.safetensors"))
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip_data_byte":
        raw[-5] ^= 0xFF  # inside the tensor data: safetensors itself cannot notice this
    else:
        raw = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="corrupt"):
        again = embeddings.sentence_embeddings(texts[:3], progress=False)
    assert torch.allclose(again, first, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is valid: no second warning
        embeddings.sentence_embeddings(texts[:3], progress=False)


@pytest.mark.parametrize("texts_arg, kwargs, err, words", [
    ("a single string", {}, TypeError, "wrap a single text in a list"),
    ([], {}, ValueError, "empty"),
    (["ok", 3], {}, TypeError, r"texts\[1\] is int"),
    (["ok"], {"max_length": 0}, ValueError, "max_length must be a positive int"),
    (["ok"], {"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    (["ok"], {"max_length": 4096, "cache": False}, ValueError, "exceeds the model's 512 positions"),
])
def test_bad_input(texts_arg, kwargs, err, words, tmp_cache):
    with pytest.raises(err, match=words):
        embeddings.sentence_embeddings(texts_arg, progress=False, **kwargs)


@pytest.mark.gpu
def test_cuda_embeddings_match_cpu(texts, monkeypatch, tmp_cache):
    monkeypatch.setenv("EFFKIT_DEVICE", "cpu")
    embeddings._frozen_encoder.cache_clear()
    try:
        cpu = embeddings.sentence_embeddings(texts, cache=False, progress=False)
        monkeypatch.setenv("EFFKIT_DEVICE", "cuda")
        embeddings._frozen_encoder.cache_clear()
        gpu = embeddings.sentence_embeddings(texts, cache=False, progress=False)  # CUDA path
    finally:
        embeddings._frozen_encoder.cache_clear()
    assert torch.nn.functional.cosine_similarity(cpu, gpu).min().item() > 0.999
