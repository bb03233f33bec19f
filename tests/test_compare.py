"""effkit.compare: a technique registered in one module gets a full row, hooks reach fit,
and cache keys come from a versioned schema."""
from dataclasses import dataclass, replace

import pytest
import torch

import effkit as ek
from effkit import baselines, cache, compare, recipes
from effkit.train import Hook, TrainConfig, added_field

ROW_KEYS = {"method", "technique", "options", "trainable", "trainable_pct", "weights", "gradients",
            "optimizer_state", "activations", "step_seconds", "train_seconds", "best_step", "steps",
            "evals", "dev_accuracy", "test_accuracy", "saved_bytes", "from_cache", "model"}


class CountSteps(Hook):
    """A toy hook: counts optimizer steps and re-zeroes the head bias after each (a 'mask')."""

    def __init__(self):
        self.steps = 0

    def after_step(self, model):
        self.steps += 1
        with torch.no_grad():
            model.classifier.bias.zero_()


@pytest.fixture
def toy_technique():
    counter = CountSteps()

    @compare.register("toy-head-with-mask", hooks=lambda model, **options: [counter])
    def toy(model, scale: float = 1.0):
        model.requires_grad_(False)
        model.classifier.requires_grad_(True)
        return model

    yield counter
    del compare.TECHNIQUES["toy-head-with-mask"]


@pytest.fixture(scope="module")
def tiny():
    model, tok = ek.models.load_encoder("sequence", 2)
    config = replace(recipes.peft(), max_steps=2, batch_size=8, eval_every=1)
    sizes = {"train": 16, "dev": 8, "test": 8}
    return model, baselines.sentiment_loaders(tok, config, sizes), config, baselines.data_spec("sequence", sizes)


def test_a_registered_toy_technique_gets_a_full_row_and_its_hooks_run(toy_technique, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    model, loaders, config, data = tiny
    row = compare.train_and_measure(model, "toy-head-with-mask", loaders, config, data=data, scale=2.0)
    assert set(row) == ROW_KEYS
    assert toy_technique.steps == 2 == row["steps"], "the technique's hook must be passed to fit"
    trained = row["model"]
    assert torch.count_nonzero(trained.classifier.bias) == 0, "the hook's mask must hold after training"
    assert row["trainable"] == 384 * 2 + 2 and row["gradients"] == 4 * row["trainable"]
    assert len(row["evals"]) == 2 and 0 <= row["test_accuracy"] <= 1 and not row["from_cache"]
    assert row["options"] == {"scale": 2.0}
    again = compare.train_and_measure(model, "toy-head-with-mask", loaders, config, data=data, scale=2.0)
    assert again["from_cache"] and again["test_accuracy"] == row["test_accuracy"]
    assert toy_technique.steps == 2, "a cached run must not train again"
    other = compare.train_and_measure(model, "toy-head-with-mask", loaders, config, data=data, scale=3.0)
    assert not other["from_cache"], "different options are a different run"


def test_extra_hooks_reach_fit(tiny):
    model, loaders, config, _ = tiny
    counter = CountSteps()
    row = compare.train_and_measure(model, "head-only", loaders, config, hooks=[counter])
    assert counter.steps == row["steps"] == 2 and not row["from_cache"]


def test_register_refuses_a_second_technique_under_the_same_name():
    with pytest.raises(ValueError, match="'lora' is already registered"):
        compare.register("lora")(lambda model: model)
    with pytest.raises(TypeError, match="non-empty string"):
        compare.register("")


def test_cache_entries_are_named_by_technique_not_chapter():
    key = compare.run_key("lora", {"r": 8}, recipes.peft(), "sequence", baselines.data_spec("sequence"))
    assert key["technique"] == "lora" and key["schema"] == compare.KEY_SCHEMA
    assert not any("ch0" in str(v) for v in key.values())


def test_the_full_row_and_the_chapter_02_baseline_share_one_cache_key():
    harness = compare.run_key("full", {}, recipes.baseline("sequence"), "sequence", baselines.data_spec("sequence"))
    assert baselines.baseline_key("sequence") == harness
    assert baselines.baseline_key("token") != harness


# ---------------------------------------------------------------- the versioned config schema
@dataclass
class ConfigWithAccumulation(TrainConfig):
    """TrainConfig as it would look after chapter 07 adds gradient accumulation."""
    grad_accumulation: int = added_field(1)


def test_adding_a_field_at_its_default_keeps_the_cache_key():
    old, new = TrainConfig(lr=1e-3), ConfigWithAccumulation(lr=1e-3)
    assert cache.config_key(old.cache_fields()) == cache.config_key(new.cache_fields())


def test_setting_the_new_field_or_changing_a_value_changes_the_key():
    base = cache.config_key(TrainConfig(lr=1e-3).cache_fields())
    assert cache.config_key(ConfigWithAccumulation(lr=1e-3, grad_accumulation=4).cache_fields()) != base
    assert cache.config_key(TrainConfig(lr=2e-3).cache_fields()) != base
    assert cache.config_key(TrainConfig(lr=1e-3, seed=1).cache_fields()) != base
