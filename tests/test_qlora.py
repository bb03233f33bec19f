"""effkit.peft.qlora: NF4 frozen base + LoRA adapters, gradients, memory, errors."""
import copy

import pytest
import torch

import effkit as ek
from effkit.peft import qlora


@pytest.fixture(scope="module")
def encoder():
    ek.seed_everything(0)
    return ek.models.load_encoder("sequence", 2)


@pytest.fixture(scope="module")
def batch(encoder):
    _, tokenizer = encoder
    split = ek.data.load_sentiment().train.take(8, seed=0)
    enc = tokenizer(split.texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return {**enc, "labels": torch.tensor(split.labels)}


def _nf4_layer(encoder):
    return qlora.NF4Linear.from_linear(encoder[0].bert.encoder.layer[0].intermediate.dense, "nf4",
                                       blocksize=64, double_quant=True)


def test_dequantized_matmul_gradient_matches_autograd(encoder):
    layer = _nf4_layer(encoder)
    x = torch.randn(5, 7, layer.in_features)
    xa = x.clone().requires_grad_(True)
    (layer(xa) ** 2).sum().backward()
    xb = x.clone().requires_grad_(True)
    (torch.nn.functional.linear(xb, layer.dequantized_weight(), layer.bias) ** 2).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)


def test_nf4_linear_saves_no_weight_copy_for_backward(encoder):
    """The point of DequantizedMatmul: plain QuantLinear keeps the fp32 weight for backward."""
    layer = _nf4_layer(encoder)
    plain = ek.quant.QuantLinear(layer.qweight, layer.bias, "nf4")

    def saved_bytes(module):
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t
        x = torch.randn(4, layer.in_features, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x).sum()
        return sum(sizes)

    weight_bytes = 4 * layer.in_features * layer.out_features
    assert saved_bytes(plain) >= weight_bytes
    assert saved_bytes(layer) < weight_bytes / 100


def test_prepare_qlora_starts_equal_to_the_nf4_model_and_freezes_the_base(encoder, batch):
    model = copy.deepcopy(encoder[0]).eval()
    nf4_model = copy.deepcopy(encoder[0]).eval()
    report = qlora.prepare_qlora(model, targets=("query", "value"), r=4, alpha=8)
    qlora.quantize_base_nf4(nf4_model)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, nf4_model(**inputs).logits)
    assert report.ratio <= 0.15 and report.skipped == ["classifier"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".A", ".B")) or n.startswith("classifier.") for n in trainable)
    assert len([n for n in trainable if n.endswith(".A")]) == 12          # 6 layers x (query, value)
    layers = [m for m in model.modules() if isinstance(m, qlora.QLoRALinear)]
    assert all(isinstance(m.base, qlora.NF4Linear) for m in layers)


def test_qlora_trains_adapters_and_leaves_the_base_alone(encoder, batch):
    model = copy.deepcopy(encoder[0])
    qlora.prepare_qlora(model, r=4, alpha=8)
    frozen = {n: b.clone() for n, b in model.named_buffers()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for _ in range(3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(torch.equal(frozen[n], b) for n, b in model.named_buffers())
    b_norm = sum(float(m.B.detach().norm()) for m in model.modules() if isinstance(m, qlora.QLoRALinear))
    assert b_norm > 0, "B must move away from zero"


def test_base_weight_bytes(encoder):
    model = copy.deepcopy(encoder[0])
    report = qlora.prepare_qlora(model)
    parts = qlora.base_weight_bytes(model)
    assert parts["quantized"] == report.stored_bytes
    total = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    assert parts["quantized"] + parts["float"] == total


def test_qlora_errors_are_clear(encoder):
    with pytest.raises(ValueError, match="matches no module"):
        qlora.prepare_qlora(copy.deepcopy(encoder[0]), targets=("nonexistent",))
    with pytest.raises(TypeError, match="not an nn.Linear"):
        qlora.prepare_qlora(copy.deepcopy(encoder[0]), targets=("attention.self",))
    with pytest.raises(ValueError, match="larger than min"):
        qlora.prepare_qlora(copy.deepcopy(encoder[0]), r=1000)
    with pytest.raises(ValueError, match="blocksize"):
        qlora.prepare_qlora(copy.deepcopy(encoder[0]), blocksize=63)


def test_train_and_measure_reports_the_nf4_base_and_caches(encoder, tmp_path, monkeypatch):
    from dataclasses import replace

    from effkit import baselines, recipes
    from effkit.compare import technique, train_and_measure

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    config = replace(recipes.peft(), max_steps=2, batch_size=8)
    sizes = {"train": 16, "dev": 8, "test": 8}
    loaders = baselines.sentiment_loaders(encoder[1], config, sizes)
    data = baselines.data_spec("sequence", sizes)
    row = train_and_measure(encoder[0], "qlora", loaders, config, data=data, timing_repeats=1)
    nf4 = qlora.quantized_layer_bytes(row["model"])
    lora_only = technique("lora").prepare(copy.deepcopy(encoder[0]))
    assert row["trainable"] == ek.measure.count_parameters(lora_only, True)
    assert nf4["quantized_bytes"] / nf4["quantized_fp32_bytes"] < 0.15
    assert row["weights"] < ek.measure.count_parameters(encoder[0]) * 4 * 0.6
    assert not row["from_cache"] and len(row["evals"]) >= 1
    again = train_and_measure(encoder[0], "qlora", loaders, config, data=data, timing_repeats=1)
    assert again["from_cache"] and again["test_accuracy"] == row["test_accuracy"]
    assert qlora.quantized_layer_bytes(again["model"]) == nf4
