"""effkit.prune.sweeps (a cached sweep point) and effkit.prune.sparsity_explorer (the explorer's
pure update, the figure it updates, and the book's static slider)."""
import pytest
import torch

import effkit as ek
from effkit import batching
from effkit.prune import sparsity_explorer as sx
from effkit.prune import sweeps


@pytest.fixture(scope="module")
def tiny_loader(encoder):
    split = ek.data.load_sentiment().dev.take(8, seed=0)
    return batching.make_loader(batching.encode_sentiment(split, encoder[1], 64), 8)


@pytest.fixture(scope="module")
def points(encoder, tiny_loader):
    return [sweeps.sweep_point(encoder[0], tiny_loader, s, scope)
            for scope in ("layer", "global") for s in (0.0, 0.5, 0.9)]


def test_sweep_point_measures_what_it_says(points):
    p = next(p for p in points if p["scope"] == "global" and p["sparsity"] == 0.5)
    assert p["overall"] == pytest.approx(0.5, abs=1e-6) and len(p["layers"]) == 36
    assert 0 <= p["accuracy"] <= 1
    dense = next(q for q in points if q["sparsity"] == 0.0)
    assert dense["bytes"]["dense"] == p["bytes"]["dense"]            # dense keeps the zeros
    assert p["bytes"]["bitmask"] < p["bytes"]["dense"] < p["bytes"]["csr"]
    high = next(q for q in points if q["scope"] == "global" and q["sparsity"] == 0.9)
    assert high["bytes"]["csr"] < high["bytes"]["dense"]


def test_cached_json_computes_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    calls = []
    compute = lambda: calls.append(1) or [{"a": 1}]       # noqa: E731
    assert sweeps.cached_json({"kind": "t"}, compute) == ([{"a": 1}], False)
    assert sweeps.cached_json({"kind": "t"}, compute) == ([{"a": 1}], True)
    assert len(calls) == 1
    assert sweeps.cached_json({"kind": "other"}, compute)[1] is False


def test_explorer_data_follows_the_point(points):
    curves = sx.curves_of(points)
    assert set(curves) == {"layer", "global"} and curves["global"]["x"] == [0.0, 0.5, 0.9]
    dense = points[0]["accuracy"]
    at = {(p["scope"], p["sparsity"]): sx.explorer_data(p, curves, dense) for p in points}
    d5, d9 = at[("global", 0.5)], at[("global", 0.9)]
    assert d5["marker"] == {"x": [0.5], "y": [points[4]["accuracy"]]}
    assert d5["title"].startswith("global magnitude pruning at 50%")
    assert d5["formats"] == ["dense", "CSR (int64)", "CSR (int32)", "bitmask"]
    assert d9["bytes"][1] < d5["bytes"][1]                   # CSR shrinks as sparsity grows
    assert d5["bytes"][0] == d9["bytes"][0]                  # dense does not
    assert d5["layers"][0] == "L0 query" and d5["layers"][-1] == "L5 ffn out"
    layer = at[("layer", 0.5)]["layer_sparsity"]
    assert max(layer) - min(layer) < 1e-5                    # layer scope: the same everywhere
    assert max(d5["layer_sparsity"]) - min(d5["layer_sparsity"]) > 0.01
    assert "smallest: bitmask" in d5["title"]


def test_explorer_data_rejects_bad_points(points):
    bad = dict(points[1], scope="rows")
    with pytest.raises(ValueError, match="scope must be"):
        sx.explorer_data(bad, {}, 0.8)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        sx.explorer_data(dict(points[1], sparsity=1.0), {}, 0.8)


def test_update_explorer_changes_the_figure_and_its_synced_state(points):
    curves = sx.curves_of(points)
    first = sx.explorer_data(points[4], curves, points[0]["accuracy"])
    fig = sx.explorer_figure(first, widget=True)
    second = sx.explorer_data(points[5], curves, points[0]["accuracy"])
    sx.update_explorer(fig, second)
    assert list(fig.data[0].x) == [0.9] and fig.layout.title.text == second["title"]
    assert list(fig.data[1].y) == second["bytes"] and list(fig.data[1].text) == second["byte_labels"]
    synced = ek.ui.synced_figure(fig)
    assert synced["layout"]["title"]["text"] == second["title"]
    assert synced["data"][2]["y"] == second["layer_sparsity"]


def test_static_slider_has_a_step_per_point(points):
    import pandas as pd

    frame = pd.DataFrame(points)
    fig = sx.sparsity_slider_figure(frame, "global", start=0.5)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0%", "50%", "90%"] and fig.layout.sliders[0].active == 1
    assert all(s.args[1]["title.text"].startswith("global magnitude pruning") for s in steps)
    assert list(steps[2].args[0]["x"][0]) == [0.9] and list(steps[2].args[2]) == [0, 1, 2]
    with pytest.raises(ValueError, match="sparsity-0 point"):
        sx.sparsity_slider_figure(frame[frame.sparsity > 0], "global")


def test_short_names():
    assert sx.short_name("bert.encoder.layer.3.attention.self.query.weight") == "L3 query"
    assert sx.short_name("bert.encoder.layer.5.output.dense.weight") == "L5 ffn out"
    assert sx.short_name("classifier.weight") == "classifier"
