"""The experiment harness: one row of a comparison table, for any fine-tuning technique.

A *technique* is a named way to prepare a pretrained model for training (full fine-tuning,
LoRA, BitFit, adapters, QLoRA, pruning ...), optionally with :class:`~effkit.train.Hook` s that
``fit`` calls while it trains. Techniques register themselves with :func:`register`::

    @register("bitfit")
    def bitfit(model, trainable=("classifier",)):
        ...                      # freeze and unfreeze in place
        return model             # the module to train

:func:`train_and_measure` then turns a technique into one row: the dev and test metric, the
trainable count, the bytes of what must ship, the memory of one training step (weights,
gradients, optimizer state, activations), the step time on a fixed batch, the training seconds,
the dev curve, and whether the run came from the cache. Trained runs are cached under a key
named by the technique (not by the chapter that first ran it), so chapters share runs.
"""
from __future__ import annotations

import copy
import importlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import cache, measure
from .config import device, profile, seed_everything
from .evaluate import PRIMARY_METRIC, evaluate
from .files import atomic_path
from .models import DEFAULT_MODEL
from .train import TrainConfig, fit, param_groups

# Bump when the meaning of a cached run changes in a way its key does not capture.
KEY_SCHEMA = 1
# Topic packages whose techniques register on import; looked up lazily so that the harness,
# which they import, never imports them back.
TECHNIQUE_PACKAGES = ("effkit.peft", "effkit.prune")


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Technique:
    """A registered technique.

    prepare(model, **options) -> nn.Module: changes a fresh copy of the pretrained model in place
        (freezing, wrapping, quantizing) and returns the module to train.
    hooks(model, **options) -> list[Hook]: extra ``fit`` hooks (pruning masks, all-reduce ...).
    version: bump when the technique's code changes what it trains; cached runs are then redone.
    """
    name: str
    prepare: Callable[..., nn.Module]
    hooks: Callable[..., list] | None = None
    version: int = 1


TECHNIQUES: dict[str, Technique] = {}


def register(name: str, *, hooks: Callable[..., list] | None = None, version: int = 1):
    """Decorator: register ``prepare`` as the technique ``name`` (returns ``prepare`` unchanged)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a technique name must be a non-empty string, got {name!r}")

    def decorator(prepare):
        known = TECHNIQUES.get(name)
        if known is not None and known.prepare.__qualname__ != prepare.__qualname__:
            raise ValueError(f"technique {name!r} is already registered by "
                             f"{known.prepare.__module__}.{known.prepare.__qualname__}")
        TECHNIQUES[name] = Technique(name, prepare, hooks, version)
        return prepare

    return decorator


def technique(name: str) -> Technique:
    """The registered technique ``name``; a ValueError lists the known ones."""
    if name not in TECHNIQUES:
        for package in TECHNIQUE_PACKAGES:
            importlib.import_module(package)
    if name not in TECHNIQUES:
        raise ValueError(f"unknown technique {name!r}; registered: {sorted(TECHNIQUES)}")
    return TECHNIQUES[name]


@register("full")
def full_finetuning(model: nn.Module) -> nn.Module:
    """Every parameter trains (chapter 02)."""
    return model.requires_grad_(True)


# ---------------------------------------------------------------- training, cached
def run_key(technique_name: str, options: dict, config: TrainConfig, task: str, data: dict,
            label_names=None) -> dict:
    """The cache key of one training run: everything that decides its weights."""
    return _plain({"schema": KEY_SCHEMA, "technique": technique_name,
                   "technique_version": technique(technique_name).version, "options": options,
                   "model": DEFAULT_MODEL, "task": task, "profile": profile(), "data": data,
                   "label_names": label_names, "train": config.cache_fields()})


def cached_fit(model: nn.Module, loaders: dict, config: TrainConfig, *, key: dict | None,
               task: str = "sequence", label_names=None, hooks=(), progress: bool = False):
    """Train ``model`` in place with ``fit`` (or load the run cached under ``key``) and return
    ``(metrics, from_cache)``. metrics: ``history`` (``History.to_dict()``), ``train_seconds``,
    ``device`` of the run that trained it, and ``dev`` / ``test`` from ``evaluate`` (the model
    holds the best dev checkpoint). ``key=None`` always trains."""
    def train(model):
        history = fit(model, loaders["train"], loaders["dev"], config, task=task,
                      label_names=label_names, hooks=hooks, progress=progress)
        return _plain_numbers({"history": history.to_dict(), "train_seconds": history.seconds,
                               "device": str(device()),
                               "dev": evaluate(model, loaders["dev"], task, label_names),
                               "test": evaluate(model, loaders["test"], task, label_names)})

    if key is None:
        return train(model), False
    return cache.cached(key, model, train)


# ---------------------------------------------------------------- one row
def train_and_measure(base: nn.Module, technique_name: str, loaders: dict, config: TrainConfig, *,
                      data: dict | None = None, label: str | None = None, task: str = "sequence",
                      label_names=None, hooks=(), batch: dict | None = None,
                      timing_repeats: int = 2, progress: bool = False, **options) -> dict:
    """Fine-tune a copy of ``base`` with a registered technique and return one comparison row.

    base: the pretrained model (not changed). loaders: ``{"train", "dev", "test"}``.
    data: a dict naming the data the loaders hold (dataset, sizes ...); with it the run is cached
        under :func:`run_key`, without it the run always trains.
    hooks: ``fit`` hooks added to the technique's own. options: passed to the technique.
    batch: the batch memory and step time are measured on (default: the first dev batch, the
        same reviews for every row).
    Returns ``{"method" (label), "technique", "options", "trainable", "trainable_pct",
    "weights", "gradients", "optimizer_state", "activations" (bytes), "step_seconds",
    "train_seconds", "best_step", "steps", "evals" (the dev curve), "dev_<metric>",
    "test_<metric>", "saved_bytes", "from_cache", "model"}``.
    """
    chosen = technique(technique_name)
    seed_everything(config.seed)  # new heads, LoRA A matrices, adapters start the same every run
    model = chosen.prepare(copy.deepcopy(base), **options).to(device())
    all_hooks = [*(chosen.hooks(model, **options) if chosen.hooks else []), *hooks]
    batch = batch if batch is not None else next(iter(loaders["dev"]))
    trainable = measure.count_parameters(model, True)
    row = {"method": label or technique_name, "technique": technique_name, "options": options,
           "trainable": trainable, "trainable_pct": 100 * trainable / measure.count_parameters(model),
           **memory_and_step_time(model, batch, config, timing_repeats)}
    key = None if data is None else run_key(technique_name, options, config, task, data, label_names)
    metrics, from_cache = cached_fit(model, loaders, config, key=key, task=task,
                                     label_names=label_names, hooks=all_hooks, progress=progress)
    history, metric = metrics["history"], PRIMARY_METRIC[task]
    with tempfile.TemporaryDirectory() as tmp:
        row["saved_bytes"] = save_trainable(model, Path(tmp) / "trained.safetensors")
    return {**row, "train_seconds": metrics["train_seconds"], "best_step": history["best_step"],
            "steps": history["steps"], "evals": history["evals"],
            f"dev_{metric}": metrics["dev"][metric], f"test_{metric}": metrics["test"][metric],
            "from_cache": from_cache, "model": model}


def save_trainable(model: nn.Module, path) -> int:
    """Write only the trainable parameters (what a technique must ship beside the base model) as
    safetensors; returns the file size in bytes."""
    from safetensors.torch import save_file

    state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if not state:
        raise ValueError("the model has no trainable parameters to save")
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path).stat().st_size


def memory_and_step_time(model: nn.Module, batch, config: TrainConfig, repeats: int = 2) -> dict:
    """``{"weights", "gradients", "optimizer_state", "activations"}`` (bytes, from
    ``measure.memory_breakdown``) and ``"step_seconds"``: the median of ``repeats`` AdamW steps
    on ``batch``, timed on a copy so ``model`` is unchanged."""
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    memory = measure.memory_breakdown(model, optimizer, batch)
    step = _stepper(model, batch, config)
    seconds = measure.step_time(step, warmup=1, repeats=repeats)["median"]
    return {**{k: memory[k] for k in ("weights", "gradients", "optimizer_state", "activations")},
            "step_seconds": seconds}


def interleaved_step_times(models: dict, batch, config: TrainConfig, warmup: int = 1,
                           repeats: int = 3) -> dict:
    """``{name: {"median", "iqr", "all"}}``: seconds of one AdamW training step on ``batch`` for
    each model, the models taking turns (``measure.compare_step_times``) so that load from other
    programs slows them alike. Copies are stepped; the models are unchanged."""
    return measure.compare_step_times({n: _stepper(m, batch, config) for n, m in models.items()},
                                      warmup, repeats)


def _stepper(model: nn.Module, batch, config: TrainConfig):
    """A function that runs one AdamW step of a private copy of ``model`` on ``batch``."""
    twin = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(param_groups(twin, config.weight_decay), lr=config.lr)
    return lambda: measure.training_step(twin, optimizer, batch)


def _plain(obj):
    """Tuples to lists, so a cache key is plain JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _plain_numbers(obj):
    """numpy scalars (seqeval, sklearn) to plain floats/ints, so the sidecar is valid JSON."""
    if isinstance(obj, dict):
        return {k: _plain_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain_numbers(v) for v in obj]
    return obj.item() if hasattr(obj, "item") else obj
