"""effkit.ptq (PTQ specs, measured bytes, the grid row) and effkit.bits_explorer (the explorer's pure update)."""
import pytest
import torch

import effkit as ek
from effkit import batching
from effkit.quant import bits_explorer as bx
from effkit.quant import ptq
from effkit.quant.ptq import PTQSpec


@pytest.fixture(scope="module")
def encoder():
    ek.seed_everything(0)
    return ek.models.load_encoder("sequence", 2)


@pytest.fixture(scope="module")
def tiny_loader(encoder):
    _, tokenizer = encoder
    split = ek.data.load_sentiment().dev.take(8, seed=0)
    return batching.make_loader(batching.encode_sentiment(split, tokenizer, 64), 8)


@pytest.fixture(scope="module")
def ffn_weight(encoder):
    return encoder[0].bert.encoder.layer[0].intermediate.dense.weight.detach()


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "int3"}, ValueError, "method must be one of"),
    ({"method": "affine", "bits": 12}, ValueError, r"bits must be an integer in \[2, 8\]"),
    ({"method": "affine", "bits": 4.0}, TypeError, "bits must be an integer"),
    ({"method": "affine", "bits": 4, "granularity": "row"}, ValueError, "granularity must be one of"),
    ({"method": "affine", "bits": 4, "granularity": "group"}, ValueError, "group_size goes with"),
    ({"method": "affine", "bits": 4, "group_size": 64}, ValueError, "group_size goes with"),
    ({"method": "nf4", "bits": 3}, ValueError, "4 bits by definition"),
])
def test_bad_specs_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PTQSpec(**kwargs)


def test_spec_bits_and_labels():
    assert PTQSpec("nf4").nominal_bits == 4 and PTQSpec("bnb-int8").nominal_bits == 8
    assert PTQSpec("affine", 3, "group", 64).label == "RTN int3 (group 64)"
    grid = ptq.default_grid()
    assert len({s.label for s in grid}) == len(grid), "grid labels must be unique (they index tables)"


# ---------------------------------------------------------------- bytes
@pytest.mark.parametrize("spec, ratio", [
    (PTQSpec("affine", 8, "channel"), 0.25), (PTQSpec("affine", 4, "group", 64), 4.5 / 32),
    (PTQSpec("nf4"), 4.5 / 32), (PTQSpec("affine", 3, "tensor"), 3 / 32)])
def test_stored_bytes_of_quantized_copy_equal_the_floor(encoder, spec, ratio):
    model = encoder[0]
    twin = ptq.quantized_copy(model, spec)
    stored = ptq.linear_bytes(twin)
    fp32 = ptq.linear_bytes(model)
    assert stored["numel"] == fp32["numel"] and stored["n_layers"] == fp32["n_layers"]
    assert stored["bytes"] == pytest.approx(ptq.floor_bytes(model, spec), abs=1)
    assert stored["bytes"] / fp32["bytes"] == pytest.approx(ratio, rel=0.03)
    # the original model is untouched
    assert type(model.bert.encoder.layer[0].intermediate.dense) is torch.nn.Linear


def test_torchao_bytes_are_read_from_inside_the_tensor_subclass(encoder):
    pytest.importorskip("torchao")
    twin = ptq.quantized_copy(encoder[0], PTQSpec("torchao-int8-weight"))
    ratio = ptq.linear_bytes(twin)["bytes"] / ptq.linear_bytes(encoder[0])["bytes"]
    assert 0.25 < ratio < 0.26, ratio           # int8 codes + a scale and zero point per row


def test_evaluate_ptq_row(encoder, tiny_loader):
    row = ptq.evaluate_ptq(encoder[0], tiny_loader, PTQSpec("affine", 8, "channel"))
    assert 0 <= row["accuracy"] <= 1 and row["ms_per_batch"] > 0
    assert row["label"] == "RTN int8 (channel)"
    assert row["bits"] == 8 and row["bytes_ratio"] == pytest.approx(0.2534, abs=0.002)
    # bits per weight: 8-bit codes + one fp32 scale per output row; the fp32 biases are left out
    linears = [m for n, m in encoder[0].named_modules()
               if isinstance(m, torch.nn.Linear) and not n.startswith("classifier")]
    weights, rows = sum(m.weight.numel() for m in linears), sum(m.out_features for m in linears)
    assert row["bits_per_weight"] == pytest.approx(8 + 32 * rows / weights)
    with pytest.raises(TypeError, match="spec must be a PTQSpec"):
        ptq.quantized_copy(encoder[0], "int8")


def test_int8_copy_predicts_like_fp32(encoder, tiny_loader):
    batch = next(iter(tiny_loader))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    twin = ptq.quantized_copy(encoder[0], PTQSpec("affine", 8, "channel"))
    with torch.no_grad():
        a, b = encoder[0](**inputs).logits, twin(**inputs).logits
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3


# ---------------------------------------------------------------- the explorer's pure update
def test_explorer_data_changes_with_bits(ffn_weight):
    d3 = bx.explorer_data(ffn_weight, PTQSpec("affine", 3, "channel"))
    d6 = bx.explorer_data(ffn_weight, PTQSpec("affine", 6, "channel"))
    assert len(d3["levels"]) == 7 and len(d6["levels"]) == 63
    assert d6["error"] < d3["error"] / 4           # 3 more bits: the step is 8x smaller
    assert d6["bytes"]["quantized"] > d3["bytes"]["quantized"]
    assert d3["bytes"]["fp32"] == 4 * ffn_weight.numel()
    assert sum(d3["hist_y"]) == ffn_weight.shape[1]   # one row of the channel view


def test_explorer_levels_cover_the_shared_values(ffn_weight):
    for spec in (PTQSpec("affine", 4, "tensor"), PTQSpec("affine", 4, "group", 64), PTQSpec("nf4")):
        values, levels = bx.scale_slice(ffn_weight, spec)
        assert levels.min() <= values.min() + 1e-6 and levels.max() >= values.max() - 1e-6, spec.label
    with pytest.raises(ValueError, match="explorer draws"):
        bx.scale_slice(ffn_weight, PTQSpec("int8"))


def test_update_explorer_changes_the_figure(ffn_weight):
    fig = bx.explorer_figure(bx.explorer_data(ffn_weight, PTQSpec("affine", 4, "channel"),
                                              accuracy={"fp32": 0.8, "quantized": 0.7}))
    before = [list(t.x) for t in fig.data]
    bx.update_explorer(fig, bx.explorer_data(ffn_weight, PTQSpec("affine", 2, "channel"),
                                             accuracy={"fp32": 0.8, "quantized": 0.5}))
    after = [list(t.x) for t in fig.data]
    assert before[1] != after[1], "the level lines must move"
    assert list(fig.data[3].y) == [0.8, 0.5]
    assert "RTN int2" in fig.layout.title.text


def test_bits_slider_figure_has_one_step_per_bit_width(ffn_weight):
    import pandas as pd

    grid = pd.DataFrame([{"method": "fp32", "granularity": None, "bits": 32, "accuracy": 0.8}] +
                        [{"method": "affine", "granularity": "channel", "bits": b, "accuracy": 0.1 * b}
                         for b in range(2, 9)])
    fig = bx.bits_slider_figure(ffn_weight, grid, "channel", start_bits=4)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == [str(b) for b in range(2, 9)]
    assert steps[0].args[0]["x"][1] != steps[1].args[0]["x"][1]
    with pytest.raises(ValueError, match="no fp32 row"):
        bx.bits_slider_figure(ffn_weight, grid[grid.method != "fp32"])


def test_widget_redraws_when_bits_move(encoder, tiny_loader):
    pytest.importorskip("ipywidgets")
    box = bx.bits_explorer(encoder[0], tiny_loader, bits=4)
    title = box.figure.layout.title.text
    box.bits.value = 2
    assert box.figure.layout.title.text != title and "int2" in box.figure.layout.title.text
    box.method.value = "nf4"
    assert box.bits.disabled and "NF4" in box.figure.layout.title.text


def test_explorer_bars_carry_their_values(ffn_weight):
    fig = bx.explorer_figure(bx.explorer_data(ffn_weight, PTQSpec("affine", 4, "channel"),
                                              accuracy={"fp32": 0.8125, "quantized": 0.75}))
    size, accuracy = fig.data[2], fig.data[3]
    assert list(size.text) == [ek.ui.format_bytes(4 * ffn_weight.numel()),
                               ek.ui.format_bytes(size.y[1] * 1024)]
    assert size.text[0] == "2.25 MiB"                   # 1536 x 384 fp32 weights
    assert list(accuracy.text) == ["0.812", "0.750"]


def test_explorer_without_accuracy_says_so(ffn_weight):
    """Chapter 06's first explorer figure (RTN int4 per tensor) has no accuracy yet: the panel
    must say so rather than stay empty; it is hidden again once an accuracy comes in."""
    def note(fig):
        [annotation] = [a for a in fig.layout.annotations if a.name == "no accuracy"]
        return annotation

    fig = bx.explorer_figure(bx.explorer_data(ffn_weight, PTQSpec("affine", 4, "tensor")))
    assert note(fig).visible and "no accuracy" in note(fig).text
    assert note(fig).xref == "x3 domain", "the note sits in the accuracy panel"
    bx.update_explorer(fig, bx.explorer_data(ffn_weight, PTQSpec("affine", 4, "tensor"),
                                             accuracy={"fp32": 0.8, "quantized": 0.7}))
    assert not note(fig).visible and list(fig.data[3].text) == ["0.800", "0.700"]


def test_bits_widget_state_follows_the_controls(encoder, tiny_loader):
    """What a reloaded page draws is the widget's synced state: it must follow every control,
    and NF4 shows 4 bits."""
    pytest.importorskip("anywidget")
    import plotly.graph_objects as go

    from effkit.ui import synced_figure

    box = bx.bits_explorer(encoder[0], tiny_loader, bits=4)
    assert box.bits.continuous_update is False, "the bits slider acts on release"
    assert isinstance(box.figure, go.FigureWidget)
    state = synced_figure(box.figure)
    assert state["layout"]["title"]["text"].startswith("RTN int4 (channel)")
    assert state["layout"]["height"] == 380 and state["layout"]["yaxis3"]["range"] == [0, 1]
    assert len(state["data"]) == 4 and state["data"][3]["text"] == list(box.figure.data[3].text)
    box.bits.value = 8
    assert synced_figure(box.figure)["layout"]["title"]["text"].startswith("RTN int8 (channel)")
    box.method.value = "nf4"
    state = synced_figure(box.figure)
    assert state["layout"]["title"]["text"].startswith("NF4 block 64")
    assert box.bits.value == 4 and box.bits.disabled, "NF4 is 4-bit: the slider must not say 8"
    assert len(state["data"][1]["x"]) == 3 * 16, "16 NF4 levels drawn"
    box.method.value = "affine"
    assert box.bits.value == 8 and not box.bits.disabled, "back to RTN: the bits chosen before"
    assert synced_figure(box.figure)["layout"]["title"]["text"].startswith("RTN int8 (channel)")
