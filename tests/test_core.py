"""config, files, results, models and show."""
import json

import pytest
import torch

import effkit as ek
from effkit import files, results


def test_profile_validation(monkeypatch):
    monkeypatch.setenv("EFFKIT_PROFILE", "turbo")
    with pytest.raises(ValueError, match="fast.*full"):
        ek.config.profile()
    monkeypatch.setenv("EFFKIT_PROFILE", "fast")
    assert ek.pick(1, 2) == 1


def test_device_env_rejects_missing_cuda(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    monkeypatch.setenv("EFFKIT_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        ek.device()


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.json"
    files.atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [target]


def test_results_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_RESULTS", str(tmp_path))
    results.record("01", "test_accuracy", torch.tensor(0.75), "fraction")
    results.record(1, "dev_accuracy", 0.7, "fraction")
    stored = results.load("01")
    assert stored["test_accuracy"]["value"] == pytest.approx(0.75)
    assert stored["test_accuracy"]["profile"] == "fast"
    assert results.value(1, "dev_accuracy") == 0.7
    with pytest.raises(KeyError, match="run that chapter"):
        results.value("01", "nope")
    with pytest.raises(TypeError, match="number"):
        results.record("01", "x", "high", "")
    monkeypatch.setenv("EFFKIT_PROFILE", "full")
    assert results.load("01") == {}, "a full-profile reader must not see fast-profile figures"


def test_load_encoder_default_minilm():
    model, tok = ek.models.load_encoder("sequence", 2, label_names=["rotten", "fresh"])
    assert ek.measure.count_parameters(model) == pytest.approx(22.7e6, rel=0.01)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert model.config.id2label[1] == "fresh"
    out = model(**tok(["a fine film"], return_tensors="pt"))
    assert out.logits.shape == (1, 2)


def test_load_encoder_token_head_and_base():
    model, _ = ek.models.load_encoder("token", 21)
    assert model.classifier.out_features == 21
    base, _ = ek.models.load_encoder("base")
    assert not hasattr(base, "classifier")


@pytest.mark.parametrize("kwargs, err, words", [
    ({"name": "no-such-org/no-such-model"}, ek.models.ModelNotFoundError, "offline"),
    ({"task": "regression"}, ValueError, "task must be one of"),
    ({"num_labels": 0}, ValueError, "positive int"),
    ({"num_labels": 2, "label_names": ["a"]}, ValueError, "has 1 names"),
])
def test_load_encoder_bad_input(kwargs, err, words):
    with pytest.raises(err, match=words):
        ek.models.load_encoder(**kwargs)


def test_show_prints_source_outside_ipython(capsys):
    ek.show(ek.results.record)
    assert "def record(" in capsys.readouterr().out
    with pytest.raises(TypeError, match="needs a function"):
        ek.show(3)


def test_parameters_by_module_type_sums_to_total():
    model, _ = ek.models.load_encoder("sequence", 2)
    by_type = ek.measure.parameters_by_module_type(model)
    assert sum(by_type.values()) == ek.measure.count_parameters(model)
    assert by_type["Linear"] > by_type["LayerNorm"] > 0
