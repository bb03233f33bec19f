"""effkit.peft.lora: the layer's maths, add_lora on the real MiniLM, merge, save/load, bad input, and peft."""
import copy
import math

import pytest
import torch
from torch import nn

import effkit as ek
from effkit.targets import find_modules
from effkit.peft.lora import (LoRALinear, add_lora, load_lora, lora_layers, merge_lora,
                         save_lora, unmerge_lora)
from effkit.measure import count_parameters

TEXTS = ["a fine, moving film", "dull, long and a waste of a good cast", "not bad at all"]


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)  # the classifier head is freshly initialised
    model, tok = ek.models.load_encoder("sequence", 2)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    return model.eval(), batch


@pytest.fixture
def model(minilm):
    return copy.deepcopy(minilm[0])


@pytest.fixture
def batch(minilm):
    return minilm[1]


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def randomize_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.B.copy_(torch.randn(layer.B.shape, generator=g) * 0.05)


# ---------------------------------------------------------------- the layer
def test_layer_matches_formula_and_starts_at_base():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, r=2, alpha=6)
    x = torch.randn(3, 5, 6)
    assert torch.equal(layer(x), base(x)), "B = 0 at init, so the output must be the base output"
    assert torch.count_nonzero(layer.A) == layer.A.numel() and torch.count_nonzero(layer.B) == 0
    bound = 1 / math.sqrt(6)  # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(in), 1/sqrt(in))
    assert layer.A.abs().max() <= bound
    with torch.no_grad():
        layer.B.normal_()
    expected = base(x) + 3.0 * (x @ layer.A.T @ layer.B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.A.shape == (2, 6) and layer.B.shape == (4, 2)
    assert not base.weight.requires_grad and layer.A.requires_grad and layer.B.requires_grad


def test_layer_merge_unmerge_roundtrip():
    torch.manual_seed(0)
    base = nn.Linear(8, 5)
    w0 = base.weight.detach().clone()
    layer = LoRALinear(base, r=3, alpha=12)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(4, 8)
    before = layer(x)
    layer.merge()
    torch.testing.assert_close(base.weight, w0 + 4.0 * layer.B @ layer.A)
    torch.testing.assert_close(layer(x), before)
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    torch.testing.assert_close(base.weight, w0)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


def test_dropout_only_on_lora_path():
    torch.manual_seed(0)
    base = nn.Linear(6, 6)
    layer = LoRALinear(base, r=2, alpha=2, dropout=0.5).train()
    x = torch.randn(10, 6)
    assert torch.equal(layer(x), base(x)), "with B = 0, dropout must not touch the base path"


@pytest.mark.parametrize("kwargs, words", [
    ({"r": 0}, r"r \(the LoRA rank\) must be an int >= 1, got 0"),
    ({"r": 2.0}, "must be an int"),
    ({"r": 5}, r"r=5 is larger than min\(in_features, out_features\) = min\(6, 4\)"),
    ({"r": 2, "alpha": 0}, "alpha must be a positive number"),
    ({"r": 2, "alpha": 1, "dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
])
def test_layer_bad_hyperparameters(kwargs, words):
    kwargs.setdefault("alpha", 1)
    with pytest.raises(ValueError, match=words):
        LoRALinear(nn.Linear(6, 4), **kwargs)


def test_layer_wraps_only_linear():
    with pytest.raises(TypeError, match="wraps an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=1, alpha=1)


# ---------------------------------------------------------------- on the real MiniLM
def test_add_lora_wraps_and_freezes(model, batch):
    before = logits(model, batch)
    names = add_lora(model, ["query", "value"], r=8, alpha=16)
    assert len(names) == 12 and all(n.endswith((".query", ".value")) for n in names)
    # 6 layers x 2 targets x r (in + out) + the 384 x 2 head with its bias
    assert count_parameters(model, trainable_only=True) == 6 * 2 * 8 * (384 + 384) + 384 * 2 + 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.{ab}" for n in names for ab in "AB"} | {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(logits(model, batch), before, rtol=0, atol=0)


def test_add_lora_regex_targets_and_trainable(model):
    names = add_lora(model, [r"bert\.encoder\.layer\.[0-1]\..*\.(query|key)"], r=2, alpha=4, trainable=())
    assert len(names) == 4
    assert count_parameters(model, trainable_only=True) == 4 * 2 * (384 + 384)


def test_merge_lora_matches_unmerged_on_minilm(model, batch):
    add_lora(model, ["query", "value", "intermediate.dense"], r=4, alpha=8)
    randomize_b(model)
    adapted = logits(model, batch)
    assert merge_lora(model) == 18
    torch.testing.assert_close(logits(model, batch), adapted, rtol=1e-4, atol=1e-5)
    assert unmerge_lora(model) == 18
    torch.testing.assert_close(logits(model, batch), adapted, rtol=1e-4, atol=1e-5)


def test_save_load_roundtrip_into_fresh_model(model, minilm, batch, tmp_path):
    add_lora(model, ["query", "value"], r=8, alpha=16)
    randomize_b(model)
    with torch.no_grad():
        model.classifier.weight.add_(0.1)
    expected = logits(model, batch)
    path = save_lora(model, tmp_path / "adapter.safetensors")
    full = tmp_path / "full.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in minilm[0].state_dict().items()}, str(full))
    assert path.stat().st_size < full.stat().st_size / 100, "adapter file should be ~0.3% of the model"
    fresh = copy.deepcopy(minilm[0])
    loaded = load_lora(fresh, path)
    assert len(loaded) == 12 * 2 + 2
    torch.testing.assert_close(logits(fresh, batch), expected, rtol=0, atol=0)
    assert count_parameters(fresh, trainable_only=True) == count_parameters(model, trainable_only=True)


def test_save_refuses_merged_and_load_refuses_other_layout(model, minilm, tmp_path):
    add_lora(model, ["query"], r=2, alpha=2)
    merge_lora(model)
    with pytest.raises(RuntimeError, match="before merging"):
        save_lora(model, tmp_path / "a.safetensors")
    unmerge_lora(model)
    path = save_lora(model, tmp_path / "a.safetensors")
    other = copy.deepcopy(minilm[0])
    add_lora(other, ["value"], r=2, alpha=2)
    with pytest.raises(ValueError, match="LoRA layers differ"):
        load_lora(other, path)
    other = copy.deepcopy(minilm[0])
    add_lora(other, ["query"], r=4, alpha=2)
    with pytest.raises(ValueError, match=r"saved shape \(2, 384\)"):
        load_lora(other, path)


def test_load_rejects_non_lora_file(model, tmp_path):
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="not an effkit LoRA file"):
        load_lora(model, tmp_path / "x.safetensors")


def test_merge_without_lora_is_an_error(model):
    with pytest.raises(ValueError, match="call add_lora"):
        merge_lora(model)


# ---------------------------------------------------------------- bad input on the model
def test_target_matching_nothing_lists_linear_names(model):
    with pytest.raises(ValueError, match=r"'qkv' matches no module.*attention\.self\.query.*intermediate\.dense"):
        add_lora(model, ["query", "qkv"], r=8, alpha=16)
    assert not lora_layers(model), "a bad target must leave the model untouched"


def test_target_that_is_not_linear(model):
    with pytest.raises(TypeError, match=r"attention\.output is a BertSelfOutput, not an nn\.Linear"
                                        r".*attention\.output\.dense"):
        add_lora(model, ["attention.output"], r=8, alpha=16)


def test_add_lora_twice_is_an_error(model):
    add_lora(model, ["query"], r=8, alpha=16)
    with pytest.raises(ValueError, match="already has LoRA: add_lora was applied twice"):
        add_lora(model, ["query"], r=8, alpha=16)
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, [r".*query\.base"], r=8, alpha=16)


def test_rank_too_large_for_the_head(model):
    with pytest.raises(ValueError, match=r"r=4 is larger than min\(in_features, out_features\) = min\(384, 2\)"):
        add_lora(model, ["classifier"], r=4, alpha=4, trainable=())


def test_bad_trainable_pattern_leaves_model_untouched(model):
    with pytest.raises(ValueError, match="trainable 'head' matches no module"):
        add_lora(model, ["query"], r=8, alpha=16, trainable=("head",))
    assert not lora_layers(model)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_pattern_types(model):
    with pytest.raises(TypeError, match="module-name string or a list"):
        find_modules(model, [3])


# ---------------------------------------------------------------- against peft
def test_same_as_peft(minilm, batch):
    from peft import LoraConfig, get_peft_model

    ours, theirs = copy.deepcopy(minilm[0]), copy.deepcopy(minilm[0])
    add_lora(ours, ["query", "value"], r=8, alpha=16)
    config = LoraConfig(target_modules=["query", "value"], r=8, lora_alpha=16,
                        modules_to_save=["classifier"])
    peft_model = get_peft_model(theirs, config).eval()
    assert count_parameters(ours, True) == count_parameters(peft_model, True) == 74_498
    torch.testing.assert_close(logits(ours, batch), logits(peft_model, batch), rtol=0, atol=0)
    randomize_b(ours)
    peft_modules = dict(peft_model.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            target = peft_modules[f"base_model.model.{name}"]
            target.lora_A["default"].weight.copy_(layer.A)
            target.lora_B["default"].weight.copy_(layer.B)
    ours_out = logits(ours, batch)
    assert (ours_out - logits(minilm[0], batch)).abs().max() > 1e-3, "B must now change the output"
    torch.testing.assert_close(ours_out, logits(peft_model, batch), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- rank explorer (effkit.peft.rank_explorer)
def test_lora_budget_matches_add_lora(model):
    from effkit.peft.lora import lora_parameter_count
    from effkit.peft.rank_explorer import LORA_TARGETS, full_budget, lora_budget

    for targets in LORA_TARGETS.values():
        budget = lora_budget(model, targets, 4)
        wrapped = copy.deepcopy(model)
        add_lora(wrapped, list(targets), r=4, alpha=8)
        assert budget["trainable"] == count_parameters(wrapped, trainable_only=True)
        optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad])
        memory = ek.measure.memory_breakdown(wrapped, optimizer, {**ek_batch(model), "labels": torch.tensor([1])})
        assert memory["gradients"] == budget["gradients"]
        assert memory["optimizer_state"] == budget["optimizer_state"]
    assert lora_parameter_count(model, ["query", "value"], 8) == 73_728
    full = full_budget(model)
    assert full["optimizer_state"] > 100 * lora_budget(model, ["query", "value"], 8)["optimizer_state"]


def ek_batch(model):
    return {"input_ids": torch.tensor([[101, 2023, 2003, 2204, 102]]),
            "attention_mask": torch.ones(1, 5, dtype=torch.long)}


def test_rank_explorer_slider_changes_figure(model):
    from effkit.peft.rank_explorer import LORA_TARGETS, rank_explorer

    box = rank_explorer(model, r=8, target_names=tuple(LORA_TARGETS))
    fig = box.figure
    assert len(fig.data) == 8  # full fine-tuning + 3 target choices (bars), 3 accuracy lines, the r marker
    before = [list(t.y) for t in fig.data[:4]]
    box.slider.value = 64
    after = [list(t.y) for t in fig.data[:4]]
    assert after[0] == before[0], "full fine-tuning does not depend on r"
    assert after[1][1] == pytest.approx(8 * before[1][1], rel=0.01), "LoRA gradients grow ~linearly in r"
    assert "r = 64" in fig.layout.title.text
    assert list(fig.data[-1].x) == [64, 64], "the marker moves to the new rank"
    box.choice.value = ("query, value",)
    assert [t.name for t in fig.data] == ["full fine-tuning", "LoRA on query, value",
                                          "accuracy, query, value", "r = 64"]


def test_rank_explorer_trains_a_missing_rank_once_and_caches_it(minilm, tmp_path, monkeypatch):
    from dataclasses import replace

    from effkit.peft.rank_explorer import RankSweep, rank_explorer
    from effkit.recipes import rank_sweep as sweep_config

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    _, tokenizer = ek.models.load_encoder("sequence", 2)
    tiny = replace(sweep_config(), max_steps=1, batch_size=8)
    sizes = {"train": 8, "dev": 8, "test": 8}
    sweep = RankSweep(minilm[0], tokenizer, tiny, sizes)
    box = rank_explorer(minilm[0], r=1, sweep=sweep)
    accuracy = box.figure.data[2]
    assert list(sweep.points) == [("query, value", 1)] and list(accuracy.x) == [1]
    assert not sweep.points[("query, value", 1)]["from_cache"]
    box.slider.value = 4                                    # a rank not trained yet: trains it
    accuracy = box.figure.data[2]
    assert list(accuracy.x) == [1, 4] and all(0 <= a <= 1 for a in accuracy.y)
    again = RankSweep(minilm[0], tokenizer, tiny, sizes).point("query, value", 4, progress=False)
    assert again["from_cache"] and again["test_accuracy"] == sweep.points[("query, value", 4)]["test_accuracy"]
    assert again["trainable"] > sweep.points[("query, value", 1)]["trainable"]


def test_rank_slider_figure_has_a_step_per_rank(model):
    from effkit.peft.rank_explorer import RANKS, rank_slider_figure

    fig = rank_slider_figure(model)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == [str(r) for r in RANKS]
    ys = [s.args[0]["y"][1][1] for s in steps]  # LoRA q,v gradient MiB at each rank
    # 4 bytes x (12 layers' r (384 + 384) + the 770-number head), in MiB
    assert ys == pytest.approx([4 * (12 * r * 768 + 770) / 2**20 for r in RANKS])
    assert [s.args[0]["x"][-1] for s in steps] == [[r, r] for r in RANKS], "the r marker moves"


def test_rank_slider_steps_set_the_title_text_marker_name_and_bar_labels(model):
    from effkit.peft.rank_explorer import RANKS, rank_slider_figure

    fig = rank_slider_figure(model)
    for r, step in zip(RANKS, fig.layout.sliders[0].steps):
        restyle, relayout = step.args
        # "title" set to a string would replace the title object and drop the title on the first move
        assert "title" not in relayout and relayout["title.text"].startswith(f"LoRA r = {r}<br>")
        assert restyle["name"][-1] == f"r = {r}", "the marker's name follows the rank"
        assert restyle["text"][1][1] == ek.ui.format_bytes(4 * (12 * r * 768 + 770)), "bars keep their labels"
    active = fig.layout.sliders[0].steps[fig.layout.sliders[0].active]
    assert active.args[1]["title.text"] == fig.layout.title.text, "the figure starts at the active step"


def test_rank_bars_carry_their_sizes_as_text(model):
    from effkit.peft.rank_explorer import rank_figure

    fig = rank_figure(model, r=8, target_names=["query, value"])
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 and all(len(t.text) == 4 for t in bars)
    full_weights = bars[0].y[0] * 2**20
    assert bars[0].text[0] == ek.ui.format_bytes(full_weights) and bars[0].text[0].endswith("MiB")
    assert bars[1].text[3].endswith("KiB"), "LoRA r=8's adapter file is a few hundred KiB"
    axis = fig.layout.yaxis
    assert axis.type == "log" and all(f"{v:g}" == t for v, t in zip(axis.tickvals, axis.ticktext))


def test_rank_explorer_widget_state_follows_the_controls(model):
    """What a reloaded page draws is the widget's synced state, not the Python-side figure."""
    pytest.importorskip("anywidget")
    import plotly.graph_objects as go

    from effkit.peft.rank_explorer import rank_explorer
    from effkit.ui import synced_figure

    box = rank_explorer(model, r=8)
    assert box.slider.continuous_update is False, "the slider acts on release, not at every rank passed"
    assert isinstance(box.figure, go.FigureWidget)
    state = synced_figure(box.figure)
    # the whole layout is in the state from the start, not only the data
    assert state["layout"]["title"]["text"].startswith("LoRA r = 8<br>")
    assert state["layout"]["yaxis"]["type"] == "log" and state["layout"]["xaxis2"]["anchor"] == "y2"
    assert state["layout"]["barmode"] == "group" and len(state["data"]) == 4
    assert state["data"][-1]["x"] == [8, 8] and state["data"][-1]["name"] == "r = 8"
    box.slider.value = 32
    state = synced_figure(box.figure)
    assert state["layout"]["title"]["text"].startswith("LoRA r = 32<br>")
    assert state["data"][-1]["x"] == [32, 32] and state["data"][-1]["name"] == "r = 32"
    assert state["data"][1]["text"] == list(box.figure.data[1].text)
    box.choice.value = ("query, value", "all attention")
    assert len(synced_figure(box.figure)["data"]) == 6


def test_rank_explorer_bad_input(model):
    from effkit.peft.rank_explorer import rank_figure

    with pytest.raises(ValueError, match=r"r must be one of \(1, 2, 4"):
        rank_figure(model, r=3)
    with pytest.raises(ValueError, match="target choices must be among"):
        rank_figure(model, target_names=["everything"])
