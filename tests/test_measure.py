"""measure: memory of a training step (memory_breakdown) and step timing (chapter 02b)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import effkit as ek
from effkit import measure


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM with a sentiment head and the real Rotten Tomatoes training split."""
    model, tokenizer = ek.models.load_encoder("sequence", 2)
    return model, tokenizer, ek.data.load_sentiment().train


def real_batch(minilm, length=32, batch_size=8):
    _, tokenizer, train = minilm
    return measure.fixed_length_batch(train, tokenizer, length, batch_size)


class TinyMLP(nn.Module):
    """x -> Linear(4, 8) -> ReLU -> Linear(8, 2) -> mean(out**2): every saved tensor is known."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x, labels):
        out = self.fc2(torch.relu(self.fc1(x)))
        return SimpleNamespace(loss=(out * out).mean())


def tiny_batch(n=16):
    return {"x": torch.randn(n, 4), "labels": torch.zeros(n)}


# ---------------------------------------------------------------- exact counts on a tiny model
def test_tiny_model_counts_every_saved_tensor_once():
    torch.manual_seed(0)
    model = TinyMLP()
    parts = measure.memory_breakdown(model, torch.optim.AdamW(model.parameters()), tiny_batch(16))
    n_params = 4 * 8 + 8 + 8 * 2 + 2
    assert parts["weights"] == 4 * n_params
    assert parts["gradients"] == 4 * n_params
    assert parts["optimizer_state"] == 2 * 4 * n_params + 4 * 4  # two moments + 4 scalar steps
    # Saved: x (16x4) for fc1's weight grad; relu's output h (16x8), saved by relu AND by fc2 but
    # one storage; out (16x2), saved twice by the product. fc2.weight is saved too: a parameter.
    assert parts["activations"] == 4 * (16 * 4 + 16 * 8 + 16 * 2)
    assert parts["weight_copies"] == 0
    assert parts["total"] == sum(parts[k] for k in measure.MEMORY_PARTS)


def test_tiny_model_bf16_halves_activations_and_saves_a_weight_copy():
    torch.manual_seed(0)
    model = TinyMLP()
    fp32 = measure.memory_breakdown(model, torch.optim.AdamW(model.parameters()), tiny_batch(16))
    bf16 = measure.memory_breakdown(model, torch.optim.AdamW(model.parameters()), tiny_batch(16),
                                    precision="bf16")
    # fc2 needs its (bf16) weight to send the gradient back to h; fc1's input needs no gradient.
    assert bf16["weight_copies"] == 2 * 8 * 2
    # x is cast to bf16 for fc1 and saved so; h and out come out of bf16 matmuls, and `out * out`
    # is not on autocast's fp32 list, so it saves bf16 too: every activation halves.
    assert bf16["activations"] == fp32["activations"] // 2
    assert bf16["weights"] == fp32["weights"] and bf16["optimizer_state"] == fp32["optimizer_state"]


def test_storage_bytes_counts_views_once():
    x = torch.zeros(10, 6)
    assert measure.storage_bytes([x, x.t(), x[2:4]]) == 240
    assert measure.storage_bytes([x, torch.zeros(3)]) == 240 + 12


# ---------------------------------------------------------------- the real model
def test_real_model_matches_the_analytic_count(minilm):
    model = minilm[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    parts = measure.memory_breakdown(model, optimizer, real_batch(minilm))
    n = ek.measure.count_parameters(model)
    n_tensors = len(list(model.parameters()))
    assert parts["weights"] == 4 * n + sum(b.numel() * b.element_size() for b in model.buffers())
    assert parts["gradients"] == 4 * n
    assert parts["optimizer_state"] == 8 * n + 4 * n_tensors
    expected = measure.analytic_memory(model)
    assert {k: parts[k] for k in expected} == expected
    assert parts["activations"] > 0 and parts["weight_copies"] == 0


def test_frozen_parameters_have_no_gradients_or_state(minilm):
    model = minilm[0]
    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(head, lr=1e-3)
        parts = measure.memory_breakdown(model, optimizer, real_batch(minilm, 16, 4))
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    n_head = sum(p.numel() for p in head)
    assert n_head == 384 * 2 + 2
    assert parts["gradients"] == 4 * n_head
    assert parts["optimizer_state"] == 8 * n_head + 4 * len(head)
    assert parts["weights"] == measure.tensor_bytes(model)  # frozen weights still take memory


def test_activations_grow_linearly_with_length_plus_the_attention_square(minilm):
    model = minilm[0]
    optimizer = torch.optim.AdamW(model.parameters())
    lengths = [16, 32, 64, 128]
    acts = [measure.memory_breakdown(model, optimizer, real_batch(minilm, L, 4))["activations"]
            for L in lengths]
    assert 2.0 < acts[2] / acts[1] < 2.5  # doubling the length about doubles the activations
    # Exactly a + b*L + c*L^2: hidden-state tensors grow with L, attention maps with L^2.
    a_b_c = np.polyfit(lengths[:3], acts[:3], 2)
    assert np.polyval(a_b_c, 128) == pytest.approx(acts[3], rel=0.01)
    c, b = a_b_c[0], a_b_c[1]
    assert c > 0 and b * 64 > c * 64 ** 2  # the linear part dominates up to 64 tokens


def test_bf16_shrinks_the_activations_of_the_real_model(minilm):
    model = minilm[0]
    optimizer = torch.optim.AdamW(model.parameters())
    batch = real_batch(minilm, 32, 4)
    fp32 = measure.memory_breakdown(model, optimizer, batch)
    bf16 = measure.memory_breakdown(model, optimizer, batch, precision="bf16")
    # Not half: softmax, layer norm and the loss run in fp32 under autocast and save fp32 tensors.
    assert 0.5 <= bf16["activations"] / fp32["activations"] < 0.9
    # One bf16 copy of every Linear weight (the classifier's too: its input needs a gradient),
    # made once per step because autocast caches the cast.
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert bf16["weight_copies"] == 2 * linear_weights
    assert bf16["gradients"] == fp32["gradients"]  # gradients of fp32 weights stay fp32


def test_memory_breakdown_leaves_the_caller_untouched(minilm):
    model = minilm[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = real_batch(minilm, 16, 4)
    model.eval()
    measure.training_step(model, optimizer, batch)  # the optimizer now has state
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    moment = optimizer.state[model.classifier.weight]["exp_avg"].clone()
    rng = torch.get_rng_state()
    measure.memory_breakdown(model, optimizer, batch)
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    assert torch.equal(optimizer.state[model.classifier.weight]["exp_avg"], moment)
    assert torch.equal(model.classifier.weight.grad, torch.ones_like(model.classifier.weight))
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad is None
    assert not model.training
    assert torch.equal(torch.get_rng_state(), rng)
    model.classifier.weight.grad = None


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("batch, precision, err, words", [
    ({"x": torch.zeros(2, 4)}, "fp32", ValueError, "no 'labels'"),
    (tiny_batch(2), "int8", ValueError, r"precision must be one of \('fp32', 'bf16', 'fp16'\)"),
    (tiny_batch(2), "bfloat16", ValueError, "got 'bfloat16'"),
    ([torch.zeros(2, 4)], "fp32", TypeError, "dict of tensors"),
])
def test_memory_breakdown_bad_input(batch, precision, err, words):
    model = TinyMLP()
    with pytest.raises(err, match=words):
        measure.memory_breakdown(model, torch.optim.AdamW(model.parameters()), batch, precision)


def test_memory_breakdown_rejects_a_foreign_optimizer():
    model, other = TinyMLP(), TinyMLP()
    with pytest.raises(ValueError, match="not in the model"):
        measure.memory_breakdown(model, torch.optim.AdamW(other.parameters()), tiny_batch(2))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        measure.memory_breakdown(model, "adamw", tiny_batch(2))


def test_fp16_on_cpu_is_refused_not_silently_fp32():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    model = TinyMLP()
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        measure.memory_breakdown(model, torch.optim.AdamW(model.parameters()), tiny_batch(2), "fp16")


def test_fixed_length_batch_shapes_and_errors(minilm):
    batch = real_batch(minilm, 48, 3)
    assert batch["input_ids"].shape == (3, 48) and batch["labels"].shape == (3,)
    assert set(batch["labels"].tolist()) <= {0, 1}
    _, tokenizer, train = minilm
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        measure.fixed_length_batch(train, tokenizer, 1, 3)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        measure.fixed_length_batch(train.take(2), tokenizer, 16, 3)


# ---------------------------------------------------------------- step time
def test_step_time_warms_up_then_times_each_repeat():
    calls = []
    result = measure.step_time(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and len(result["all"]) == 5
    assert result["median"] == pytest.approx(float(np.median(result["all"])))
    assert result["iqr"] >= 0


def test_step_time_measures_real_time():
    import time

    result = measure.step_time(lambda: time.sleep(0.02), warmup=0, repeats=3)
    assert min(result["all"]) >= 0.02 and result["median"] < 1.0


def test_compare_step_times_interleaves():
    order = []
    out = measure.compare_step_times({"a": lambda: order.append("a"),
                                      "b": lambda: order.append("b")}, warmup=1, repeats=3)
    assert order == ["a", "b"] * 4
    assert set(out) == {"a", "b"} and len(out["a"]["all"]) == 3


@pytest.mark.parametrize("kwargs, err, words", [
    ({"fn": 3}, TypeError, "callable"),
    ({"fn": print, "warmup": -1}, ValueError, "warmup must be an int >= 0"),
    ({"fn": print, "repeats": 0}, ValueError, "repeats must be an int >= 1"),
    ({"fn": print, "repeats": 2.5}, ValueError, "got 2.5"),
])
def test_step_time_bad_input(kwargs, err, words):
    with pytest.raises(err, match=words):
        measure.step_time(**kwargs)


def test_compare_step_times_bad_input():
    with pytest.raises(ValueError, match="non-empty dict"):
        measure.compare_step_times({})
    with pytest.raises(TypeError, match=r"fns\['a'\] must be callable"):
        measure.compare_step_times({"a": None})


# ---------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_total_agrees_with_cuda_peak_memory(minilm):  # CUDA path
    import copy

    model = copy.deepcopy(minilm[0]).to("cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = {k: v.cuda() for k, v in real_batch(minilm, 128, 32).items()}
    measure.training_step(model, optimizer, batch)  # allocates the optimizer state
    for p in model.parameters():  # gradients that persist across steps, as the breakdown counts them
        p.grad = torch.zeros_like(p)
    parts = measure.memory_breakdown(model, optimizer, batch)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    assert parts["total"] == pytest.approx(peak, rel=0.10), (parts, peak)
