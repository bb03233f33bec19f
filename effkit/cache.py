"""Trained checkpoints, keyed by the config that produced them, so nothing is trained twice.

An entry is a folder ``<cache>/checkpoints/<key>/`` holding

- ``model.safetensors``: the model's ``state_dict`` (safetensors: plain tensors, no pickle), and
- ``entry.json``: the config, the metrics measured when it was trained and the sha256 of the
  weights file.

The key is the sha256 of the config written as canonical JSON (sorted keys, no spaces), so any
change of model, task, profile, data sizes, training settings or recipe version gives a new entry.
Both files are written atomically, weights first: an entry without its sidecar is unfinished.
On load the weights' sha256 and every key and shape are checked against the model; a corrupt,
partial or mismatched entry is reported with a warning and treated as missing (so it is
retrained), never loaded.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

from .config import cache_dir
from .files import atomic_path, atomic_write_json, sha256_file

WEIGHTS = "model.safetensors"
SIDECAR = "entry.json"


class CorruptEntryWarning(UserWarning):
    """A cache entry failed verification and will be retrained."""


def canonical_json(config: dict) -> str:
    """The one JSON spelling of ``config``: sorted keys, no whitespace. TypeError if not JSON-able."""
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"a cache config must be plain JSON (dict/list/str/int/float/bool/None): {err}") from None


def config_key(config: dict) -> str:
    """sha256 (hex) of the canonical JSON of ``config``."""
    if not isinstance(config, dict):
        raise TypeError(f"a cache config must be a dict, got {type(config).__name__}")
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def entry_dir(config: dict) -> Path:
    """Folder of the entry for ``config`` (it may not exist yet)."""
    return cache_dir() / "checkpoints" / config_key(config)


def save_checkpoint(config: dict, model, metrics: dict | None = None) -> Path:
    """Store ``model.state_dict()`` and ``metrics`` under ``config``; returns the entry folder."""
    from safetensors.torch import save_file

    folder = entry_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"effkit_key": config_key(config)})
    sidecar = {"key": config_key(config), "config": config, "metrics": metrics or {},
               "weights_sha256": sha256_file(folder / WEIGHTS)}
    atomic_write_json(folder / SIDECAR, sidecar)  # written last: its presence marks a complete entry
    return folder


def load_checkpoint(config: dict, model) -> dict | None:
    """Load the entry for ``config`` into ``model`` (in place) and return its metrics.

    Returns None when there is no entry, or when it fails verification (missing sidecar, sha256
    mismatch, unreadable weights, keys or shapes that differ from ``model``); the latter also warns
    with :class:`CorruptEntryWarning`. The model is only modified once every check has passed.
    """
    folder = entry_dir(config)
    if not folder.exists():
        return None
    problem, sidecar, state = _verify(folder, config, model)
    if problem:
        warnings.warn(f"cache entry {folder} is unusable ({problem}); it will be retrained",
                      CorruptEntryWarning, stacklevel=2)
        return None
    model.load_state_dict(state, strict=True)
    return sidecar["metrics"]


def _verify(folder: Path, config: dict, model):
    """(problem or None, sidecar, state): every check an entry must pass before it is loaded."""
    from safetensors.torch import load_file

    weights, side = folder / WEIGHTS, folder / SIDECAR
    if not side.exists():
        return "no sidecar entry.json: the entry was never finished", None, None
    if not weights.exists():
        return "no weights file", None, None
    try:
        sidecar = json.loads(side.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"sidecar is not valid JSON: {err}", None, None
    if sidecar.get("key") != config_key(config) or sidecar.get("config") != json.loads(canonical_json(config)):
        return "sidecar belongs to another config", None, None
    if sha256_file(weights) != sidecar.get("weights_sha256"):
        return "sha256 of the weights does not match the sidecar (corrupt or truncated file)", None, None
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for bad headers
        return f"weights cannot be read: {err}", None, None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        return (f"weights do not fit the model (missing {missing[:3]}, unexpected {extra[:3]}, "
                f"wrong shape {wrong[:3]})"), None, None
    return None, sidecar, state


def remove(config: dict) -> bool:
    """Delete the entry for ``config``; True if there was one."""
    folder = entry_dir(config)
    if folder.exists():
        shutil.rmtree(folder)
        return True
    return False


def cached(config: dict, model, train):
    """Load ``model`` from the cache for ``config``, or run ``train(model) -> metrics`` and store it.

    Returns ``(metrics, from_cache)``. ``train`` must train ``model`` in place.
    """
    metrics = load_checkpoint(config, model)
    if metrics is not None:
        return metrics, True
    metrics = train(model)
    save_checkpoint(config, model, metrics)
    return metrics, False
