"""Evaluation sweeps over sparsity (and bits), cached as JSON so a second run takes seconds.

A sweep evaluates copies of one trained model, changed without training (pruned, shared), on a
fixed loader. :func:`sweep_point` is one magnitude-pruned point: its accuracy, the sparsity each
weight got and the bytes of the pruned weights in every storage format. :func:`cached_json`
keeps whole sweeps under a key that names the starting model, the points and the data.
"""
from __future__ import annotations

import copy
import json

import torch
from torch import nn

from ..cache import config_key
from ..config import cache_dir, profile
from ..evaluate import evaluate
from ..files import atomic_write_json
from ..ui import progress_bar
from .masks import magnitude_masks, mask_sparsity, prunable_weights
from .storage import FORMATS, model_bytes

SWEEP_SCHEMA = 1   # bump when what a sweep point holds changes


def cached_json(key: dict, compute):
    """``compute()`` (plain JSON) stored under ``key`` in ``<cache>/sweeps``; later calls with an
    equal key read the file instead. Returns ``(value, from_cache)``."""
    key = {"schema": SWEEP_SCHEMA, "profile": profile(), **key}
    path = cache_dir() / "sweeps" / f"{config_key(key)}.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("key") == json.loads(json.dumps(key)):
            return stored["value"], True
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "value": value})
    return value, False


def evaluate_changed(model: nn.Module, loader, change) -> dict:
    """Accuracy and loss of a copy of ``model`` after ``change(copy)`` (``model`` is untouched)."""
    twin = copy.deepcopy(model).eval()
    change(twin)
    metrics = evaluate(twin, loader, "sequence")
    return {"accuracy": float(metrics["accuracy"]), "loss": float(metrics["loss"])}


@torch.no_grad()
def masked_weights(model: nn.Module, masks: dict) -> dict[str, torch.Tensor]:
    """The prunable weights of ``model`` with ``masks`` applied (new tensors)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach() * m.to(params[n].device) for n, m in masks.items()}


def sweep_point(model: nn.Module, loader, sparsity: float, scope: str) -> dict:
    """One magnitude-pruned copy of ``model``: ``{"scope", "sparsity", "accuracy", "loss",
    "overall" (measured sparsity of the prunable weights), "layers" ({weight: sparsity}),
    "bytes" ({format: bytes of the pruned prunable weights})}``."""
    masks = magnitude_masks(model, sparsity, scope)
    pruned = masked_weights(model, masks)

    @torch.no_grad()
    def prune(twin):
        params = dict(twin.named_parameters())
        for name, w in pruned.items():
            params[name].copy_(w)

    shares = mask_sparsity(masks)
    return {"scope": scope, "sparsity": float(sparsity), **evaluate_changed(model, loader, prune),
            "overall": shares.pop("overall"), "layers": shares,
            "bytes": model_bytes(pruned, FORMATS)}


def magnitude_sweep(model: nn.Module, loader, sparsities, scopes=("layer", "global"), *,
                    start: str, data: dict, progress: bool = True):
    """Every (scope, sparsity) point, cached: a pandas DataFrame, one row per point.

    start: names ``model`` (e.g. the baseline's cache key); data: names the loader's reviews
    (e.g. ``{"split": "test", "size": 400, "seed": 0}``). Both go into the cache key.
    """
    import pandas as pd

    points = [(scope, float(s)) for scope in scopes for s in sparsities]

    def compute():
        rows, dense = [], None
        for scope, s in progress_bar(points, desc="sparsity sweep", disable=not progress):
            if s == 0 and dense is not None:      # sparsity 0 is the dense model at every scope
                rows.append({**dense, "scope": scope})
                continue
            rows.append(sweep_point(model, loader, s, scope))
            dense = rows[-1] if s == 0 else dense
        return rows

    rows, from_cache = cached_json({"kind": "magnitude-sweep", "start": start, "data": data,
                                    "points": points, "prunable": list(prunable_weights(model))}, compute)
    frame = pd.DataFrame(rows)
    frame.attrs["from_cache"] = from_cache
    return frame
