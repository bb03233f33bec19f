"""effkit.peft.methods and the techniques of effkit.compare on the real MiniLM: trainable counts, adapters start as identity, bad input."""
import copy

import pytest
import torch

import effkit as ek
from effkit.measure import count_parameters
from effkit.peft.methods import BottleneckAdapter, WithAdapter, add_adapters, bitfit, head_only

HIDDEN, FFN, LAYERS = 384, 1536, 6
HEAD = HIDDEN * 2 + 2


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)
    model, tok = ek.models.load_encoder("sequence", 2)
    return model.eval(), tok(["a fine film", "a dull, long one"], padding=True, return_tensors="pt")


@pytest.fixture
def model(minilm):
    return copy.deepcopy(minilm[0])


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_head_only(model):
    assert head_only(model) == ["classifier"]
    assert count_parameters(model, trainable_only=True) == HEAD


def test_bitfit_counts_every_bias(model):
    names = bitfit(model)
    # per layer: q, k, v, attn-out (4 x 384), ffn-in 1536, ffn-out 384, two LayerNorm biases
    per_layer = 4 * HIDDEN + FFN + HIDDEN + 2 * HIDDEN
    embeddings_ln = HIDDEN      # the mean pooler has no parameters (effkit.models.MeanPooler)
    expected = LAYERS * per_layer + embeddings_ln + HEAD
    assert count_parameters(model, trainable_only=True) == expected
    assert all(n.endswith(".bias") or n.startswith("classifier") for n in names)
    assert not model.bert.encoder.layer[0].attention.self.query.weight.requires_grad


def test_adapters_start_as_identity_and_count(model, minilm):
    before = logits(minilm[0], minilm[1])
    names = add_adapters(model, bottleneck=16)
    assert len(names) == 2 * LAYERS
    assert isinstance(model.bert.encoder.layer[3].attention.output.dense, WithAdapter)
    assert isinstance(model.bert.encoder.layer[3].output.dense, WithAdapter)
    adapter = 2 * HIDDEN * 16 + 16 + HIDDEN
    layer_norms = (2 * LAYERS + 1) * 2 * HIDDEN
    assert count_parameters(model, trainable_only=True) == 2 * LAYERS * adapter + layer_norms + HEAD
    torch.testing.assert_close(logits(model, minilm[1]), before, rtol=0, atol=0)


def test_adapters_change_output_once_trained(model, minilm):
    add_adapters(model, bottleneck=8, train_layer_norm=False)
    assert count_parameters(model, trainable_only=True) == 2 * LAYERS * (2 * HIDDEN * 8 + 8 + HIDDEN) + HEAD
    with torch.no_grad():
        model.bert.encoder.layer[5].output.dense.adapter.up.weight.normal_(0, 0.1)
    assert (logits(model, minilm[1]) - logits(minilm[0], minilm[1])).abs().max() > 1e-4


def test_adapter_module_is_identity_at_init():
    torch.manual_seed(0)
    h = torch.randn(2, 3, 10)
    assert torch.equal(BottleneckAdapter(10, 4)(h), h)


@pytest.mark.parametrize("bottleneck", [0, 2.5, True])
def test_bad_bottleneck(model, bottleneck):
    with pytest.raises(ValueError, match="bottleneck must be an int >= 1"):
        add_adapters(model, bottleneck=bottleneck)


def test_adapters_twice_and_bad_sites(model):
    add_adapters(model, bottleneck=4)
    with pytest.raises(ValueError, match="already has an adapter"):
        add_adapters(model, bottleneck=4)
    with pytest.raises(ValueError, match="matches no module"):
        add_adapters(copy.deepcopy(model), bottleneck=4, sites=("ffn_out",))
    with pytest.raises(TypeError, match="not an nn.Linear"):
        add_adapters(copy.deepcopy(model), bottleneck=4, sites=(r"bert\.pooler",))


@pytest.mark.parametrize("method, expected", [
    ("full", 22_566_146),      # MiniLM with the mean pooler and a 2-class head
    ("lora", 74_498),
    ("peft-lora", 74_498),
    ("head-only", HEAD),
])
def test_technique_counts(minilm, method, expected):
    from effkit.compare import technique

    model = technique(method).prepare(copy.deepcopy(minilm[0]))
    assert count_parameters(model, trainable_only=True) == expected
    torch.testing.assert_close(logits(model.eval(), minilm[1]), logits(minilm[0], minilm[1]))


def test_unknown_technique_lists_the_registered_ones():
    from effkit.compare import technique

    with pytest.raises(ValueError, match=r"unknown technique 'prefix-tuning'; registered: .*'bitfit'.*'lora'"):
        technique("prefix-tuning")


def test_save_trainable_holds_only_trainable(model, tmp_path):
    from safetensors.torch import load_file

    from effkit.compare import save_trainable

    bitfit(model)
    size = save_trainable(model, tmp_path / "bitfit.safetensors")
    stored = load_file(str(tmp_path / "bitfit.safetensors"))
    assert sum(t.numel() for t in stored.values()) == count_parameters(model, trainable_only=True)
    assert size < 4 * count_parameters(model, trainable_only=True) + 20_000
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        save_trainable(model, tmp_path / "none.safetensors")


def test_train_and_measure_row_and_cache(minilm, tmp_path, monkeypatch):
    from dataclasses import replace

    from effkit import baselines, recipes
    from effkit.compare import train_and_measure

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    config = replace(recipes.peft(), max_steps=2, batch_size=8)
    _, tok = ek.models.load_encoder("sequence", 2)
    sizes = {"train": 16, "dev": 8, "test": 8}
    loaders = baselines.sentiment_loaders(tok, config, sizes)
    key = baselines.data_spec("sequence", sizes)
    row = train_and_measure(minilm[0], "bitfit", loaders, config, data=key)
    assert row["trainable"] == count_parameters(row.pop("model"), trainable_only=True)
    assert row["gradients"] == 4 * row["trainable"]
    assert row["optimizer_state"] > 8 * row["trainable"]
    assert row["activations"] > 0 and row["step_seconds"] > 0 and not row["from_cache"]
    assert 0 <= row["test_accuracy"] <= 1 and row["saved_bytes"] > 4 * row["trainable"]
    again = train_and_measure(minilm[0], "bitfit", loaders, config, data=key)
    assert again["from_cache"] and again["test_accuracy"] == row["test_accuracy"]
    assert all(p.requires_grad for p in minilm[0].parameters()), "the base model must not change"
