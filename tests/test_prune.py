"""effkit.prune: magnitude masks (against torch.nn.utils.prune), masks kept applied while training
and removable, sparsity accounting, structured removal, storage bytes, weight sharing, and the
clear errors for bad input."""
import copy

import pytest
import torch
from torch import nn

import effkit as ek
from effkit import batching
from effkit.prune import masks as M
from effkit.prune import sharing, storage, structured, techniques
from effkit.train import TrainConfig, fit


@pytest.fixture(scope="module")
def tiny_loader(encoder):
    split = ek.data.load_sentiment().dev.take(16, seed=0)
    return batching.make_loader(batching.encode_sentiment(split, encoder[1], 32), 8)


class Tiny(nn.Module):
    """Two Linear layers, an embedding, a LayerNorm and a head: enough to test what is prunable."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = nn.Embedding(10, 6)
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 6))
        self.norm = nn.LayerNorm(6)
        self.classifier = nn.Linear(6, 2)

    def forward(self, ids):
        return self.classifier(self.norm(self.encoder(self.embeddings(ids)).mean(1)))


# ---------------------------------------------------------------- what is prunable
def test_embeddings_layernorm_and_head_are_left_out_unless_asked(encoder):
    names = list(M.prunable_weights(encoder[0]))
    assert len(names) == 36 and all("encoder.layer" in n and n.endswith(".weight") for n in names)
    tiny = Tiny()
    assert list(M.prunable_weights(tiny)) == ["encoder.0.weight", "encoder.2.weight"]
    everything = M.prunable_weights(tiny, include=("embeddings", "layernorm", "classifier"))
    assert set(everything) == {"embeddings.weight", "encoder.0.weight", "encoder.2.weight",
                               "norm.weight", "classifier.weight"}


# ---------------------------------------------------------------- the masks
@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_masks_equal_torch_prune_on_minilm(encoder, scope, sparsity):
    ours = M.magnitude_masks(encoder[0], sparsity, scope)
    theirs = M.torch_masks(encoder[0], sparsity, scope)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


def test_global_masks_equal_torch_global_unstructured_directly(encoder):
    """The reference written out: torch's own call on a copy, masks read off its buffers."""
    from torch.nn.utils import prune

    twin = copy.deepcopy(encoder[0])
    names = list(M.prunable_weights(twin))
    modules = [twin.get_submodule(n.rpartition(".")[0]) for n in names]
    prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured,
                              amount=0.5)
    ours = M.magnitude_masks(encoder[0], 0.5, "global")
    assert all(torch.equal(ours[n], m.weight_mask.bool()) for n, m in zip(names, modules))


def test_layer_scope_gives_every_layer_the_sparsity_global_does_not(encoder):
    layer = M.mask_sparsity(M.magnitude_masks(encoder[0], 0.6, "layer"))
    glob = M.mask_sparsity(M.magnitude_masks(encoder[0], 0.6, "global"))
    assert layer["overall"] == pytest.approx(0.6, abs=1e-6) and glob["overall"] == pytest.approx(0.6, abs=1e-6)
    per_layer = [v for k, v in layer.items() if k != "overall"]
    assert max(per_layer) - min(per_layer) < 1e-5
    spread = [v for k, v in glob.items() if k != "overall"]
    assert max(spread) - min(spread) > 0.05          # small-weight layers lose more


def test_masks_keep_the_largest_magnitudes():
    tiny = Tiny()
    masks = M.magnitude_masks(tiny, 0.5, "layer")
    for name, w in M.prunable_weights(tiny).items():
        kept, dropped = w.detach().abs()[masks[name]], w.detach().abs()[~masks[name]]
        assert kept.min() >= dropped.max()


@pytest.mark.parametrize("bad, error, match", [
    (1.0, ValueError, r"sparsity must be in \[0, 1\)"), (-0.1, ValueError, r"sparsity must be in \[0, 1\)"),
    (1.5, ValueError, r"\[0, 1\)"), (float("nan"), ValueError, r"\[0, 1\)"), ("0.5", TypeError, "a number"),
    (True, TypeError, "a number")])
def test_sparsity_outside_0_1_is_a_clear_error(bad, error, match):
    with pytest.raises(error, match=match):
        M.magnitude_masks(Tiny(), bad, "layer")


@pytest.mark.parametrize("scope", ["local", "Global", None, "unstructured"])
def test_unknown_scope_is_a_clear_error(scope):
    with pytest.raises(ValueError, match="scope must be 'layer'.*or 'global'"):
        M.magnitude_masks(Tiny(), 0.5, scope)


def test_unknown_include_is_a_clear_error():
    with pytest.raises(ValueError, match="include may name"):
        M.prunable_weights(Tiny(), include=("bias",))


# ---------------------------------------------------------------- applying, training, removing
def test_masks_whose_shape_does_not_fit_are_a_clear_error():
    tiny = Tiny()
    masks = M.magnitude_masks(tiny, 0.5, "layer")
    masks["encoder.0.weight"] = masks["encoder.0.weight"].T
    with pytest.raises(ValueError, match=r"has shape \(6, 8\) but the weight has shape \(8, 6\)"):
        M.apply_masks(tiny, masks)
    with pytest.raises(ValueError, match="names no parameter"):
        M.apply_masks(tiny, {"encoder.5.weight": torch.ones(8, 6, dtype=torch.bool)})
    with pytest.raises(ValueError, match="bool"):
        M.apply_masks(tiny, {"encoder.0.weight": torch.full((8, 6), 0.5)})


def test_pruned_weights_stay_zero_after_optimizer_steps_in_a_plain_loop():
    tiny = Tiny()
    masks = M.magnitude_masks(tiny, 0.7, "global")
    M.apply_masks(tiny, masks)
    optimizer = torch.optim.AdamW(tiny.parameters(), lr=0.05, weight_decay=0.1)
    ids = torch.randint(0, 10, (16, 5))
    labels = torch.randint(0, 2, (16,))
    before = {n: w.detach().clone() for n, w in M.prunable_weights(tiny).items()}
    for _ in range(5):
        nn.functional.cross_entropy(tiny(ids), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, w in M.prunable_weights(tiny).items():
        assert torch.count_nonzero(w[~masks[name]]) == 0, name       # pruned: exactly zero
        assert not torch.equal(w[masks[name]], before[name][masks[name]])   # the rest trained


def test_pruned_weights_stay_zero_through_fit_with_the_technique(encoder, tiny_loader):
    model = techniques.magnitude_prune(copy.deepcopy(encoder[0]), 0.5, "global", start="test")
    hooks = techniques.pruning_hooks(model)
    masks = hooks[0].masks
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=8, max_length=32, max_steps=2)
    fit(model, tiny_loader, None, config, hooks=hooks, progress=False)
    report = M.sparsity_report(model)
    assert report.loc["overall", "sparsity"] == pytest.approx(0.5, abs=1e-6)
    params = dict(model.named_parameters())
    assert all(torch.count_nonzero(params[n][~m]) == 0 for n, m in masks.items())


def test_removing_masks_makes_the_zeros_permanent():
    tiny = Tiny()
    pruning = M.apply_masks(tiny, M.magnitude_masks(tiny, 0.5, "layer"))
    masks = pruning.remove()
    assert pruning.handles == []
    w = tiny.encoder[0].weight
    assert torch.count_nonzero(w[~masks["encoder.0.weight"]]) == 0        # zeros kept ...
    nn.functional.cross_entropy(tiny(torch.randint(0, 10, (4, 3))), torch.tensor([0, 1, 0, 1])).backward()
    assert torch.count_nonzero(w.grad[~masks["encoder.0.weight"]]) > 0     # ... and no longer enforced


def test_a_copied_pruned_model_keeps_its_own_masks(encoder):
    model = techniques.magnitude_prune(copy.deepcopy(encoder[0]), 0.3, "layer", start="test")
    twin = copy.deepcopy(model)
    hook = techniques.pruning_hooks(twin)[0]
    name = next(iter(hook.params))
    assert hook.params[name] is dict(twin.named_parameters())[name]


def test_sparsity_report_counts_per_layer_and_overall():
    tiny = Tiny()
    M.apply_masks(tiny, M.magnitude_masks(tiny, 0.5, "layer"))
    report = M.sparsity_report(tiny)
    assert list(report.index) == ["encoder.0.weight", "encoder.2.weight", "overall"]
    assert report.loc["encoder.0.weight", "zeros"] == 24 and report.loc["overall", "total"] == 96
    assert report.loc["overall", "sparsity"] == pytest.approx(0.5)


def test_gradual_schedule_and_final_sparsity(encoder, tiny_loader):
    assert techniques.cubic_schedule(0.8, 4)[-1] == pytest.approx(0.8)
    assert techniques.cubic_schedule(0.8, 4)[0] == pytest.approx(0.8 * (1 - 0.75 ** 3))
    model = techniques.gradual_prune(copy.deepcopy(encoder[0]), 0.6, "layer", stages=2, steps=2, start="test")
    assert M.sparsity_report(model).loc["overall", "sparsity"] == pytest.approx(0.6 * 7 / 8, abs=1e-4)
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=8, max_length=32, max_steps=2)
    fit(model, tiny_loader, None, config, hooks=techniques.pruning_hooks(model), progress=False)
    assert M.sparsity_report(model).loc["overall", "sparsity"] == pytest.approx(0.6, abs=1e-4)


def test_technique_needs_a_start_name(encoder):
    with pytest.raises(ValueError, match="start must name the model"):
        techniques.magnitude_prune(copy.deepcopy(encoder[0]), 0.5)


# ---------------------------------------------------------------- structured
def test_head_and_neuron_removal_shrinks_the_matrices_and_keeps_the_rest(encoder, tiny_loader):
    model = copy.deepcopy(encoder[0])
    batch = next(iter(tiny_loader))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    scores = structured.head_importance(model, [batch])
    assert len(scores) == 6 and all(s.shape == (12,) for s in scores)
    assert all(abs(float(s.norm()) - 1) < 1e-5 for s in scores)
    plan = structured.prune_structured(model, [batch], 1 / 3, 1 / 3)
    assert structured.head_counts(model) == [8] * 6 and structured.ffn_widths(model) == [1024] * 6
    layer = model.bert.encoder.layer[0]
    assert layer.attention.self.query.weight.shape == (256, 384)
    assert layer.attention.output.dense.weight.shape == (384, 256)
    assert layer.output.dense.weight.shape == (384, 1024)
    with torch.no_grad():
        assert model(**inputs).logits.shape == (8, 2)
    assert sorted(plan["heads"]) == list(range(6)) and all(len(h) == 4 for h in plan["heads"].values())


def test_removing_a_head_equals_gating_it_to_zero(encoder, tiny_loader):
    """The removal is exact: the smaller model computes what the full one computes with that
    head's output multiplied by zero."""
    model = copy.deepcopy(encoder[0])
    batch = next(iter(tiny_loader))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    gate = torch.ones(12)
    gate[[3, 7]] = 0
    dense = model.bert.encoder.layer[2].attention.output.dense
    handle = dense.register_forward_pre_hook(
        lambda m, args: (args[0].reshape(*args[0].shape[:-1], 12, 32).mul(gate[:, None]).reshape(args[0].shape),))
    with torch.no_grad():
        gated = model(**inputs).logits
    handle.remove()
    structured.remove_heads(model, {2: [3, 7]})
    with torch.no_grad():
        removed = model(**inputs).logits
    assert torch.allclose(gated, removed, atol=1e-5)


def test_removing_neurons_equals_zeroing_them(encoder, tiny_loader):
    model = copy.deepcopy(encoder[0])
    inputs = {k: v for k, v in next(iter(tiny_loader)).items() if k != "labels"}
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.bert.encoder.layer[1].output.dense.weight[:, [0, 5, 9]] = 0
        expected = zeroed(**inputs).logits
        structured.remove_neurons(model, {1: [0, 5, 9]})
        assert torch.allclose(model(**inputs).logits, expected, atol=1e-5)


@pytest.mark.parametrize("plan, match", [
    ({0: list(range(13))}, "13 to remove from layer 0, which has only 12"),
    ({0: list(range(12))}, "removing all 12 from layer 0 would leave it empty"),
    ({7: [0]}, "layer 7 does not exist"),
    ({0: [12]}, r"indices \[12\] do not exist in layer 0"),
])
def test_bad_head_plans_are_clear_errors(encoder, plan, match):
    model = copy.deepcopy(encoder[0])
    with pytest.raises(ValueError, match=match):
        structured.remove_heads(model, plan)
    assert structured.head_counts(model) == [12] * 6, "a rejected plan must change nothing"


def test_pruning_every_head_left_is_an_error_after_an_earlier_removal(encoder):
    model = copy.deepcopy(encoder[0])
    structured.remove_heads(model, {0: list(range(10))})
    with pytest.raises(ValueError, match="removing all 2 from layer 0"):
        structured.remove_heads(model, {0: [0, 1]})
    with pytest.raises(ValueError, match="fraction must be a number in"):
        structured.lowest([torch.ones(4)], 1.0)


# ---------------------------------------------------------------- storage
def test_measured_bytes_match_the_formulas():
    torch.manual_seed(0)
    w = torch.randn(40, 96)
    w[w.abs() < 1.0] = 0                       # about 68% zeros
    nnz, rows, n = int((w != 0).sum()), 40, w.numel()
    assert storage.stored_bytes(w, "dense") == 4 * n
    assert storage.stored_bytes(w, "csr") == 4 * nnz + 8 * nnz + 8 * (rows + 1)
    assert storage.stored_bytes(w, "csr-int32") == 4 * nnz + 4 * nnz + 4 * (rows + 1)
    assert storage.stored_bytes(w, "bitmask") == n // 8 + 4 * nnz
    assert storage.all_bytes(w) == {f: storage.stored_bytes(w, f) for f in storage.FORMATS}
    with pytest.raises(ValueError, match="fmt must be one of"):
        storage.stored_bytes(w, "coo")


def test_break_even_formula_agrees_with_the_measurement():
    torch.manual_seed(1)
    w = torch.randn(384, 1536)
    grid = [i / 200 for i in range(200)]
    for fmt, index in (("csr", 8), ("csr-int32", 4), ("bitmask", 8)):
        predicted = storage.break_even_sparsity(fmt, 4, index)
        measured = storage.measured_break_even(w, fmt, grid)
        assert abs(measured - predicted) <= 0.01, (fmt, predicted, measured)


# ---------------------------------------------------------------- weight sharing
def test_kmeans_codebook_and_bytes():
    torch.manual_seed(0)
    w = torch.randn(64, 48)
    out = sharing.share_weight(w, 3)
    assert out["codebook"].numel() == 8 and torch.unique(out["weight"]).numel() <= 8
    assert out["bytes"] == 8 * 4 + w.numel() * 3 // 8
    err3 = (out["weight"] - w).norm()
    err6 = (sharing.share_weight(w, 6)["weight"] - w).norm()
    assert err6 < err3 / 4
    w[w.abs() < 0.8] = 0
    pruned = sharing.share_weight(w, 2, keep_zeros=True)
    assert torch.equal(pruned["weight"] == 0, w == 0)           # the zeros stay zero
    nnz = int((w != 0).sum())
    assert pruned["bytes"] == 4 * 4 + -(-nnz * 2 // 8) + -(-w.numel() // 8)
    with pytest.raises(ValueError, match="bits must be an integer in"):
        sharing.share_weight(w, 1)


def test_pruning_techniques_are_registered_with_the_harness():
    from effkit import compare

    for name in ("magnitude-prune", "gradual-prune", "structured-prune"):
        assert compare.technique(name).name == name
    assert "effkit.prune" in compare.TECHNIQUE_PACKAGES
    config = TrainConfig(max_steps=5)
    key = compare.run_key("magnitude-prune", {"sparsity": 0.5, "scope": "global", "start": "a"}, config,
                          "sequence", {"dataset": "x"})
    other = compare.run_key("magnitude-prune", {"sparsity": 0.5, "scope": "global", "start": "b"}, config,
                            "sequence", {"dataset": "x"})
    assert key != other, "the starting model is part of the cache key"
