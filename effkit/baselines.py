"""The full fine-tuning baselines of chapter 02, trained once and cached.

``sentiment_baseline()`` and ``ner_baseline()`` return ``(model, tokenizer, metrics)`` for the
current profile. Chapters 03-08 call them instead of retraining: the first call trains (minutes
in the full profile), later calls load the checkpoint from :mod:`effkit.cache` in a second.
``metrics`` holds the dev and test scores, the training history and the training time measured
when the model was trained.
"""
from __future__ import annotations

import json

from . import cache
from .batching import encode_ner, encode_sentiment, make_loader
from .config import device, pick, profile, seed_everything
from .data import load_ner, load_sentiment
from .evaluate import evaluate
from .models import DEFAULT_MODEL, load_encoder

RECIPE_VERSION = 1  # bump when the recipe changes in a way the config does not capture


def default_config(task: str):
    """The TrainConfig of each baseline, per profile (fast: a short fixed step budget)."""
    from .train import TrainConfig

    if task == "sequence":
        return pick(fast=TrainConfig(lr=1e-4, epochs=1, batch_size=16, max_length=48, max_steps=20,
                                     eval_every=10, patience=3),
                    full=TrainConfig(lr=5e-5, epochs=2, batch_size=32, max_length=64, eval_every=80,
                                     patience=3))
    if task == "token":
        return pick(fast=TrainConfig(lr=1e-4, epochs=3, batch_size=16, max_length=128, max_steps=30,
                                     eval_every=15, patience=3),
                    full=TrainConfig(lr=1e-4, epochs=8, batch_size=16, max_length=128, patience=3))
    raise ValueError(f"task must be 'sequence' or 'token', got {task!r}")


def data_sizes(task: str) -> dict:
    """How many train/dev/test examples each profile uses (None: the whole split)."""
    if task == "sequence":
        return pick(fast={"train": 480, "dev": 160, "test": 320},
                    full={"train": None, "dev": None, "test": None})
    return pick(fast={"train": 720, "dev": 120, "test": None},
                full={"train": None, "dev": None, "test": None})


def subsets(splits, sizes: dict, seed: int = 0) -> dict:
    """The train/dev/test splits cut to ``sizes`` (seeded), as a dict."""
    out = {}
    for name in ("train", "dev", "test"):
        split, n = getattr(splits, name), sizes[name]
        out[name] = split if n is None else split.take(n, seed=seed)
    return out


def sentiment_loaders(tokenizer, config, sizes: dict | None = None) -> dict:
    """Rotten Tomatoes DataLoaders (train shuffled, dev/test in order) for this profile."""
    parts = subsets(load_sentiment(), sizes or data_sizes("sequence"))
    return {name: make_loader(encode_sentiment(split, tokenizer, config.max_length), config.batch_size,
                              shuffle=name == "train", seed=config.seed)
            for name, split in parts.items()}


def ner_loaders(tokenizer, config, sizes: dict | None = None) -> dict:
    """WNUT-2016 DataLoaders with aligned labels (train shuffled) for this profile."""
    splits = load_ner()
    parts = subsets(splits, sizes or data_sizes("token"))
    return {name: make_loader(encode_ner(split, tokenizer, splits.label_names, config.max_length),
                              config.batch_size, shuffle=name == "train", seed=config.seed)
            for name, split in parts.items()}


def recipe(task: str, config, sizes: dict, label_names: list[str]) -> dict:
    """The cache key of a baseline: everything that decides its weights."""
    from . import __version__

    return {"recipe": f"ch02_{task}_baseline", "recipe_version": RECIPE_VERSION,
            "effkit_version": __version__, "model": DEFAULT_MODEL, "task": task,
            "profile": profile(), "data_sizes": sizes, "label_names": label_names,
            "train_config": config.to_dict()}


def _baseline(task: str, config, loaders_fn, label_names, progress: bool):
    from .train import fit

    config = config or default_config(task)
    sizes = data_sizes(task)
    seed_everything(config.seed)  # the new head's random init is part of the recipe
    model, tokenizer = load_encoder(task, len(label_names), label_names=label_names)
    loaders = loaders_fn(tokenizer, config, sizes)

    def train(model):
        history = fit(model, loaders["train"], loaders["dev"], config, task=task,
                      label_names=label_names, progress=progress)
        return {"history": history.to_dict(), "train_seconds": history.seconds,
                "device": str(device()),
                "dev": evaluate(model, loaders["dev"], task, label_names),
                "test": evaluate(model, loaders["test"], task, label_names)}

    metrics, from_cache = cache.cached(recipe(task, config, sizes, label_names), model,
                                       lambda m: _jsonable(train(m)))
    model.to(device()).eval()
    return model, tokenizer, {**metrics, "from_cache": from_cache}


def sentiment_baseline(config=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: MiniLM fully fine-tuned on Rotten Tomatoes (cached).

    config: a TrainConfig; None uses :func:`default_config` for the current profile.
    metrics: ``dev`` / ``test`` (accuracy, macro_f1, loss), ``history`` (History.to_dict()),
    ``train_seconds`` and ``device`` of the run that trained it, ``from_cache``.
    """
    return _baseline("sequence", config, sentiment_loaders, load_sentiment().label_names, progress)


def ner_baseline(config=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: MiniLM with a token head fine-tuned on WNUT-2016 (cached).

    metrics: ``dev`` / ``test`` from ``evaluate(task="token")`` (entity f1, per-type report,
    token_accuracy ...), ``history``, ``train_seconds``, ``device``, ``from_cache``.
    """
    return _baseline("token", config, ner_loaders, load_ner().label_names, progress)


def _jsonable(obj):
    """numpy scalars (seqeval, sklearn) to plain floats/ints so the sidecar is valid JSON."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
