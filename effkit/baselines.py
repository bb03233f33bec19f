"""The full fine-tuning baselines of chapter 02, trained once and cached.

``sentiment_baseline()`` and ``ner_baseline()`` return ``(model, tokenizer, metrics)`` for the
current profile. Chapters 03-08 call them instead of retraining: the first call trains (minutes
in the full profile), later calls load the checkpoint from :mod:`effkit.cache` in a second.
``metrics`` holds the dev and test scores, the training history and the training time measured
when the model was trained.
"""
from __future__ import annotations

from . import recipes
from .batching import encode_ner, encode_ner_seed_style, encode_sentiment, make_loader
from .compare import cached_fit, run_key
from .config import device, seed_everything
from .data import load_ner, load_sentiment
from .models import load_encoder

DATASETS = {"sequence": "rotten-tomatoes", "token": "wnut-2016"}
SEED_STYLE = "seed article: tags on positions 0, 1, 2 ..., padded with 'O' to max_length"


def data_spec(task: str, sizes: dict | None = None, seed: int = 0) -> dict:
    """What a run's cache key says about its data: the dataset, the subset sizes and their seed."""
    return {"dataset": DATASETS[task], "sizes": sizes or recipes.data_sizes(task), "seed": seed}


def subsets(splits, sizes: dict, seed: int = 0) -> dict:
    """The train/dev/test splits cut to ``sizes`` (seeded), as a dict."""
    out = {}
    for name in ("train", "dev", "test"):
        split, n = getattr(splits, name), sizes[name]
        out[name] = split if n is None else split.take(n, seed=seed)
    return out


def sentiment_loaders(tokenizer, config, sizes: dict | None = None) -> dict:
    """Rotten Tomatoes DataLoaders (train shuffled, dev/test in order) for this profile."""
    parts = subsets(load_sentiment(), sizes or recipes.data_sizes("sequence"))
    return {name: make_loader(encode_sentiment(split, tokenizer, config.max_length), config.batch_size,
                              shuffle=name == "train", seed=config.seed)
            for name, split in parts.items()}


def ner_loaders(tokenizer, config, sizes: dict | None = None) -> dict:
    """WNUT-2016 DataLoaders with aligned labels (train shuffled) for this profile."""
    splits = load_ner()
    parts = subsets(splits, sizes or recipes.data_sizes("token"))
    return {name: make_loader(encode_ner(split, tokenizer, splits.label_names, config.max_length),
                              config.batch_size, shuffle=name == "train", seed=config.seed)
            for name, split in parts.items()}


def ner_seed_style_loaders(tokenizer, config, sizes: dict | None = None) -> dict:
    """WNUT-2016 DataLoaders labelled the seed article's way (``encode_ner_seed_style``): tags on
    positions 0, 1, 2 ... and 'O' up to ``max_length``, every position scored."""
    splits = load_ner()
    parts = subsets(splits, sizes or recipes.data_sizes("token"))
    return {name: make_loader(encode_ner_seed_style(split, tokenizer, splits.label_names, config.max_length),
                              config.batch_size, shuffle=name == "train", seed=config.seed)
            for name, split in parts.items()}


def baseline_key(task: str, config=None) -> dict:
    """The cache key of a baseline: the harness's key of the ``"full"`` technique with this
    recipe and data, so chapter 04's full fine-tuning row loads this same run. Token tasks
    include their tag names (they decide the head); sentiment's are fixed by the dataset."""
    label_names = load_ner().label_names if task == "token" else None
    return run_key("full", {}, config or recipes.baseline(task), task, data_spec(task), label_names)


def _baseline(task: str, config, loaders_fn, label_names, progress: bool, labels: str | None = None):
    config = config or recipes.baseline(task)
    seed_everything(config.seed)  # the new head's random init is part of the recipe
    model, tokenizer = load_encoder(task, len(label_names), label_names=label_names)
    loaders = loaders_fn(tokenizer, config)
    key = baseline_key(task, config)
    if labels is not None:  # a labelling other than the aligned one is part of what was trained
        key = {**key, "data": {**key["data"], "labels": labels}}
    metrics, from_cache = cached_fit(model, loaders, config, key=key, task=task,
                                     label_names=label_names, progress=progress)
    model.to(device()).eval()
    return model, tokenizer, {**metrics, "from_cache": from_cache}


def sentiment_baseline(config=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: MiniLM fully fine-tuned on Rotten Tomatoes (cached).

    config: a TrainConfig; None uses ``recipes.baseline("sequence")`` for the current profile.
    metrics: ``dev`` / ``test`` (accuracy, macro_f1, loss), ``history`` (History.to_dict()),
    ``train_seconds`` and ``device`` of the run that trained it, ``from_cache``.
    """
    return _baseline("sequence", config, sentiment_loaders, load_sentiment().label_names, progress)


def ner_seed_style_model(config=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: MiniLM fully fine-tuned on WNUT-2016 with the seed
    article's padded-'O' labels (``recipes.ner_seed_style()``; cached). Its dev/test metrics
    read every position the seed's way: the tag of word i is the prediction at position i."""
    return _baseline("token", config or recipes.ner_seed_style(), ner_seed_style_loaders,
                     load_ner().label_names, progress, labels=SEED_STYLE)


def ner_baseline(config=None, progress: bool = True):
    """``(model, tokenizer, metrics)``: MiniLM with a token head fine-tuned on WNUT-2016 (cached).

    metrics: ``dev`` / ``test`` from ``evaluate(task="token")`` (entity f1, per-type report,
    token_accuracy ...), ``history``, ``train_seconds``, ``device``, ``from_cache``.
    """
    return _baseline("token", config, ner_loaders, load_ner().label_names, progress)
