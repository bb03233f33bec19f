"""Frozen sentence embeddings from the packaged MiniLM, computed once and cached as safetensors.

``sentence_embeddings(texts)`` returns one 384-d vector per text: the encoder's last hidden states
averaged over the real (non-padding) tokens, then L2-normalised, exactly as
``sentence_transformers.SentenceTransformer`` does for all-MiniLM-L6-v2. The encoder is frozen:
it runs under ``torch.no_grad`` and nothing about it is trained.

The result is cached in ``<EFFKIT_CACHE>/embeddings/<key>.safetensors``, where the key hashes the
model, the texts (in order), ``max_length`` and ``normalize``. The file carries a sha256 of the
tensor bytes, so a truncated or corrupt file is detected, deleted and recomputed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import warnings
from importlib import metadata
from pathlib import Path

import torch

from .config import cache_dir, device
from .files import atomic_path
from .models import DEFAULT_MODEL, load_encoder, mean_pool  # noqa: F401  (chapter 01 shows ek.embeddings.mean_pool)

CACHE_FORMAT = 1  # bump when the way embeddings are computed changes, so old files are not reused


# ---------------------------------------------------------------- the computation
@functools.lru_cache(maxsize=2)
def _frozen_encoder(name: str | None):
    """The bare encoder (no head) in eval mode on ``ek.device()``, loaded once per process."""
    model, tokenizer = load_encoder("base", name=name)
    model.eval().requires_grad_(False)
    return model.to(device()), tokenizer  # CUDA path: runs the encoder on the GPU when present


def compute_embeddings(texts: list[str], model, tokenizer, *, max_length: int = 128,
                       batch_size: int = 64, normalize: bool = True,
                       progress: bool = True) -> torch.Tensor:
    """Embed ``texts`` with ``model`` (a bare transformers encoder); returns (N, H) float32 on CPU.

    Texts are batched in order of length so each batch pads to a similar length (less wasted
    compute), then put back in the original order.
    """
    # A widget bar in JupyterLab, the text bar (stderr, dropped by the book) elsewhere: a widget
    # bar would be frozen at 0% in the static book. See effkit.ui.progress_bar.
    from .ui import progress_bar

    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length={max_length} exceeds the model's {limit} positions")
    dev = next(model.parameters()).device
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = torch.empty(len(texts), model.config.hidden_size, dtype=torch.float32)
    with torch.no_grad():
        for start in progress_bar(range(0, len(texts), batch_size), desc="embedding", unit="batch",
                                  disable=not progress):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(dev)  # CUDA path
            hidden = model(**batch).last_hidden_state
            vectors = mean_pool(hidden, batch["attention_mask"])
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=1)
            out[idx] = vectors.float().cpu()
    return out


# ---------------------------------------------------------------- the cache
def _model_id(name: str | None) -> str:
    if name is None or name == DEFAULT_MODEL:
        return f"{DEFAULT_MODEL}=={metadata.version(DEFAULT_MODEL)}"
    return str(name)


def cache_key(texts: list[str], name: str | None, max_length: int, normalize: bool) -> str:
    """sha256 over the model, settings and every text in order (a NUL between texts)."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "model": _model_id(name),
                                        "max_length": max_length, "normalize": normalize},
                                       sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def cache_path(key: str) -> Path:
    return cache_dir() / "embeddings" / f"{key}.safetensors"


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _save(path: Path, emb: torch.Tensor, key: str) -> None:
    from safetensors.torch import save_file

    meta = {"key": key, "sha256": _tensor_sha256(emb), "rows": str(emb.shape[0])}
    with atomic_path(path) as tmp:  # a crash mid-write never leaves a half file under the real name
        save_file({"embeddings": emb.contiguous()}, str(tmp), metadata=meta)


def _load(path: Path, key: str, n: int) -> torch.Tensor | None:
    """The cached tensor, or None (after deleting the file) if it is missing or fails any check."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            emb = f.get_tensor("embeddings")
        problem = None
        if meta.get("key") != key:
            problem = "its key does not match"
        elif emb.ndim != 2 or emb.shape[0] != n:
            problem = f"it has shape {tuple(emb.shape)}, expected {n} rows"
        elif meta.get("sha256") != _tensor_sha256(emb):
            problem = "its checksum does not match its contents"
    except Exception as err:  # a truncated or garbled file fails inside safetensors' parser
        problem = f"it cannot be read ({type(err).__name__}: {err})"
    if problem is None:
        return emb
    warnings.warn(f"embedding cache {path.name} is corrupt: {problem}; recomputing", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


# ---------------------------------------------------------------- the entry point
def sentence_embeddings(texts: list[str], *, name: str | None = None, max_length: int = 128,
                        batch_size: int = 64, normalize: bool = True, cache: bool = True,
                        progress: bool = True) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings of ``texts``: (N, 384) float32 on CPU.

    name: None for the packaged all-MiniLM-L6-v2, else any encoder ``ek.models.load_encoder``
    accepts. max_length: tokens kept per text (Rotten Tomatoes snippets are under 70).
    normalize: L2-normalise each vector (as sentence-transformers does for this model).
    cache: reuse / write ``<EFFKIT_CACHE>/embeddings/<key>.safetensors``.
    """
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}"
                        + (" (wrap a single text in a list)" if isinstance(texts, str) else ""))
    if not texts:
        raise ValueError("texts is empty: there is nothing to embed")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, every item must be a str")
    for what, value in (("max_length", max_length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive int, got {value!r}")
    texts = list(texts)
    key = cache_key(texts, name, max_length, normalize)
    path = cache_path(key)
    if cache:
        emb = _load(path, key, len(texts))
        if emb is not None:
            return emb
    model, tokenizer = _frozen_encoder(name)
    emb = compute_embeddings(texts, model, tokenizer, max_length=max_length,
                             batch_size=batch_size, normalize=normalize, progress=progress)
    if cache:
        _save(path, emb, key)
    return emb
