"""effkit.cache: keys, round trip, and every way an entry can be broken -> warn and retrain."""
import json

import pytest
import torch
from torch import nn

from effkit import cache


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path / "cache"))


def tiny(seed=0, width=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width), nn.Linear(width, 2))


CONFIG = {"model": "tiny", "task": "sequence", "profile": "fast", "data": {"train": 10},
          "train_config": {"lr": 1e-3, "seed": 0}, "recipe_version": 1}


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_key_is_canonical_and_sensitive():
    reordered = dict(reversed(list(CONFIG.items())))
    assert cache.config_key(reordered) == cache.config_key(CONFIG)
    changed = {**CONFIG, "train_config": {"lr": 2e-3, "seed": 0}}
    assert cache.config_key(changed) != cache.config_key(CONFIG)
    assert len(cache.config_key(CONFIG)) == 64


def test_bad_configs_are_errors():
    with pytest.raises(TypeError, match="must be a dict"):
        cache.config_key([1, 2])
    with pytest.raises(TypeError, match="plain JSON"):
        cache.config_key({"x": object()})


def test_round_trip_restores_weights_and_metrics():
    trained = tiny(seed=1)
    folder = cache.save_checkpoint(CONFIG, trained, {"accuracy": 0.9})
    assert (folder / "model.safetensors").exists() and (folder / "entry.json").exists()
    side = json.loads((folder / "entry.json").read_text())
    assert side["config"] == CONFIG and len(side["weights_sha256"]) == 64
    fresh = tiny(seed=2)
    assert not same_weights(fresh, trained)
    assert cache.load_checkpoint(CONFIG, fresh) == {"accuracy": 0.9}
    assert same_weights(fresh, trained)


def test_missing_entry_is_none_without_warning(recwarn):
    assert cache.load_checkpoint(CONFIG, tiny()) is None
    assert not recwarn.list


def _flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _delete(path):
    path.unlink()


@pytest.mark.parametrize("damage, file, why", [
    (_flip_a_byte, "model.safetensors", "sha256"),
    (_truncate, "model.safetensors", "sha256"),
    (_delete, "entry.json", "sidecar"),
    (_delete, "model.safetensors", "no weights"),
    (_truncate, "entry.json", "not valid JSON"),
])
def test_broken_entry_warns_is_not_loaded_and_is_retrained(damage, file, why):
    folder = cache.save_checkpoint(CONFIG, tiny(seed=1), {"accuracy": 0.9})
    damage(folder / file)
    model = tiny(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(cache.CorruptEntryWarning, match=why):
        assert cache.load_checkpoint(CONFIG, model) is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "model was modified"

    calls = []

    def train(m):
        calls.append(1)
        return {"accuracy": 0.5}

    with pytest.warns(cache.CorruptEntryWarning):
        metrics, from_cache = cache.cached(CONFIG, model, train)
    assert calls == [1] and metrics == {"accuracy": 0.5} and not from_cache
    again, from_cache = cache.cached(CONFIG, tiny(seed=3), train)  # the retrained entry is good
    assert from_cache and again == {"accuracy": 0.5} and calls == [1]


def test_weights_for_another_architecture_are_not_loaded():
    cache.save_checkpoint(CONFIG, tiny(width=4))
    with pytest.warns(cache.CorruptEntryWarning, match="wrong shape"):
        assert cache.load_checkpoint(CONFIG, tiny(width=5)) is None


def test_remove():
    cache.save_checkpoint(CONFIG, tiny())
    assert cache.remove(CONFIG) and not cache.remove(CONFIG)
    assert cache.load_checkpoint(CONFIG, tiny()) is None
