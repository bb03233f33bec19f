"""The chapter 02b checker passes a right prediction of the memory bill and rejects each plausible
mistake with a hint that names it (and no other mistake's); its oracle is memory_breakdown on set-ups
it builds itself."""
import re

import pytest
import torch

from effkit.check import ch02b
from effkit.targets import find_linears


# ---------------------------------------------------------------- a right answer, with knobs
def predict(model, setup, *, weight_bytes=4, grad_bytes=4, moment_bytes=4, moments=2,
            step=lambda sizes: 4 * len(sizes), buffers=lambda b: b.numel() * b.element_size(),
            adapters_in_weights=True, only_trainable_weights=False, lora_size=None,
            lora_extra=(), top_frozen=None, embeddings_train=False, pooler_trains=True,
            classifier_trains=True, state_over_all=False):
    """predict_memory with one knob per plausible mistake; the defaults are right."""
    params = dict(model.named_parameters())
    adapters = []
    if setup["train"] == "all":
        trainable = list(params)
    elif setup["train"] == "top":
        layers = top_frozen(setup["frozen_layers"]) if top_frozen else range(setup["frozen_layers"])
        frozen = tuple(f"bert.encoder.layer.{i}." for i in layers)
        if not embeddings_train:
            frozen += ("bert.embeddings.",)
        trainable = [n for n in params if not n.startswith(frozen)
                     and (pooler_trains or not n.startswith("bert.pooler."))]
    else:
        r = setup["r"]
        trainable = [n for n in params if n.startswith("classifier.") or
                     any(n.startswith(p) for p in lora_extra)]
        for name in find_linears(model, setup["targets"]):
            layer = model.get_submodule(name)
            adapters += (lora_size(layer, r) if lora_size else
                         [r * layer.in_features, layer.out_features * r])
    if not classifier_trains:
        trainable = [n for n in trainable if not n.startswith("classifier.")]
    sizes = [params[n].numel() for n in trainable] + adapters
    every = sum(p.numel() for p in params.values()) + (sum(adapters) if adapters_in_weights else 0)
    state_sizes = sizes if not state_over_all else [p.numel() for p in params.values()] + adapters
    weights = (sum(sizes) if only_trainable_weights else every) * weight_bytes
    return {"weights": weights + sum(buffers(b) for b in model.buffers()),
            "gradients": grad_bytes * sum(sizes),
            "optimizer_state": moments * moment_bytes * sum(state_sizes) + step(state_sizes)}


def right(model, setup):
    return predict(model, setup)


def bf16(setup, value):
    return value if setup["precision"] == "bf16" else 4


# ---------------------------------------------------------------- mutants
def w_bf16_two_bytes(model, setup):
    return predict(model, setup, weight_bytes=bf16(setup, 2))


def w_no_buffers(model, setup):
    return predict(model, setup, buffers=lambda b: 0)


def w_buffers_four_bytes(model, setup):
    return predict(model, setup, buffers=lambda b: 4 * b.numel())


def w_no_adapters(model, setup):
    return predict(model, setup, adapters_in_weights=False)


def w_only_trainable(model, setup):
    return predict(model, setup, only_trainable_weights=True)


def g_frozen_counted(model, setup):
    out = predict(model, setup)
    n_all = sum(p.numel() for p in model.parameters())
    return {**out, "gradients": 4 * n_all}


def g_bf16_two_bytes(model, setup):
    return predict(model, setup, grad_bytes=bf16(setup, 2))


def g_lora_in_times_out(model, setup):
    return predict(model, setup, lora_size=lambda layer, r: [layer.in_features * layer.out_features])


def g_lora_pooler_trains(model, setup):
    return predict(model, setup, lora_extra=("bert.pooler.",))


def g_no_classifier(model, setup):
    return predict(model, setup, classifier_trains=False)


def g_embeddings_trainable(model, setup):
    return predict(model, setup, embeddings_train=True)


def g_one_layer_too_many(model, setup):
    return predict(model, setup, top_frozen=lambda k: range(k + 1))


def g_one_layer_too_few(model, setup):
    return predict(model, setup, top_frozen=lambda k: range(k - 1))


def g_pooler_frozen(model, setup):
    return predict(model, setup, pooler_trains=False)


def s_one_moment(model, setup):
    return predict(model, setup, moments=1)


def s_bf16_moments(model, setup):
    return predict(model, setup, moment_bytes=bf16(setup, 2))


def s_no_step(model, setup):
    return predict(model, setup, step=lambda sizes: 0)


def s_step_per_number(model, setup):
    return predict(model, setup, step=lambda sizes: 4 * sum(sizes))


def s_step_eight_bytes(model, setup):
    return predict(model, setup, step=lambda sizes: 8 * len(sizes))


def s_step_once(model, setup):
    return predict(model, setup, step=lambda sizes: 4)


def s_step_per_group(model, setup):
    return predict(model, setup, step=lambda sizes: 8)


def s_frozen_state(model, setup):
    return predict(model, setup, state_over_all=True)


def x_analytic_memory(model, setup):
    """Calls the library's full-fine-tuning count whatever the set-up."""
    from effkit.measure import analytic_memory

    return analytic_memory(model)


def x_hard_coded_minilm(model, setup):
    """The chapter's full-fine-tuning MiniLM numbers, whatever the model and set-up."""
    return {"weights": 90272776, "gradients": 90264584, "optimizer_state": 180529580}


def x_mib(model, setup):
    return {k: v / 2**20 for k, v in right(model, setup).items()}


def x_changes_model(model, setup):
    if setup["train"] == "top":
        for name, p in model.named_parameters():
            p.requires_grad_(not ch02b.frozen_by_top(name, setup["frozen_layers"]))
    return right(model, setup)


def x_builds_lora(model, setup):
    """Builds the set-up on the model it was given and counts what is there."""
    from effkit.measure import analytic_memory
    from effkit.peft.lora import add_lora

    if setup["train"] == "lora":
        add_lora(model, setup["targets"], r=setup["r"])
        return analytic_memory(model)
    return right(model, setup)


def x_list(model, setup):
    return list(right(model, setup).values())


def x_missing_key(model, setup):
    out = right(model, setup)
    del out["optimizer_state"]
    return out


def x_none_value(model, setup):
    return {**right(model, setup), "gradients": None}


def x_crashes(model, setup):
    return {"weights": 4 * model.num_parameters, "gradients": 0, "optimizer_state": 0}  # method


def x_setup_key(model, setup):
    setup["r"]  # KeyError for set-ups without LoRA
    return right(model, setup)


def x_unfinished(model, setup):
    raise NotImplementedError("Your code here")


# ---------------------------------------------------------------- the tables
M, P = ch02b.check_memory, ch02b.check_mixed_precision
NAMED = [
    (P, w_bf16_two_bytes, "weights are counted at 2 bytes"),
    (M, w_no_buffers, "buffers are missing from the weights"),
    (M, w_buffers_four_bytes, "buffers are counted at 4 bytes per element"),
    (M, w_no_adapters, "LoRA matrices A and B are missing"),
    (M, w_only_trainable, "only the trainable parameters are counted in the weights"),
    (M, g_frozen_counted, "frozen parameters are counted in the gradients"),
    (P, g_bf16_two_bytes, "gradients are counted at 2 bytes"),
    (M, g_lora_in_times_out, "LoRA is counted as in × out"),
    (M, g_lora_pooler_trains, "pooler is counted as trainable under LoRA"),
    (M, g_no_classifier, "classifier head is left out"),
    (M, g_embeddings_trainable, "embeddings are counted as trainable"),
    (M, g_one_layer_too_many, "one encoder layer too many or too few"),
    (M, g_one_layer_too_few, "one encoder layer too many or too few"),
    (M, g_pooler_frozen, "pooler is left out of the trainable"),
    (M, s_one_moment, "only one AdamW moment"),
    (P, s_bf16_moments, "moments are counted at 2 bytes"),
    (M, s_no_step, "step counters are missing"),
    (M, s_step_per_number, "step counter is counted for every trainable number"),
    (M, s_step_eight_bytes, "step counters are counted at 8 bytes"),
    (M, s_step_once, "one step counter for the whole optimizer"),
    (M, s_step_per_group, "one step counter for the whole optimizer"),
    (M, s_frozen_state, "frozen parameters are given optimizer state"),
    (M, x_analytic_memory, "frozen parameters are counted in the gradients"),
    (M, x_mib, "looks like MiB"),
    (M, x_changes_model, "changed the model"),
    (M, x_builds_lora, "changed the model"),
]
PHRASES = {w for _, _, w in NAMED}


@pytest.mark.parametrize("checker, wrong, words", NAMED, ids=[w.__name__ for _, w, _ in NAMED])
def test_checker_names_the_mistake(checker, wrong, words):
    with pytest.raises(AssertionError) as info:
        checker(wrong)
    message = str(info.value)
    assert re.search(words, message), message
    # the FAIL names this mistake and no other one (a wrong hint is worse than a neutral one)
    assert not [w for w in PHRASES - {words} if re.search(w, message)], message


def test_right_prediction_passes(capsys):
    ch02b.check_memory(right)
    ch02b.check_mixed_precision(right)
    assert capsys.readouterr().out.count("PASS") == 2


@pytest.mark.parametrize("wrong, words", [
    (x_hard_coded_minilm, "predicted .* bytes, memory_breakdown measured"),
    (x_list, "returned list; return a dict"),
    (x_missing_key, "returned no 'optimizer_state'"),
    (x_none_value, "'gradients' is NoneType; expected a number"),
    (x_crashes, "(?s)raised TypeError.*hint: read sizes from the model"),
    (x_setup_key, "(?s)raised KeyError.*'frozen_layers' \\(train='top'\\)"),
], ids=["x_hard_coded_minilm", "x_list", "x_missing_key", "x_none_value", "x_crashes", "x_setup_key"])
def test_other_errors_are_readable_and_neutral(wrong, words):
    """Wrong types and crashes give a FAIL with a hint, never the student's traceback, and a hint
    that does not guess a mistake that was not made."""
    with pytest.raises(AssertionError, match=words) as info:
        ch02b.check_memory(wrong)
    message = str(info.value)
    assert "hint:" in message
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert not [w for w in PHRASES if re.search(w, message)], message


@pytest.mark.parametrize("checker", [ch02b.check_memory, ch02b.check_mixed_precision])
def test_unfinished_stub_raises_not_implemented(checker):
    with pytest.raises(NotImplementedError):
        checker(x_unfinished)


# ---------------------------------------------------------------- the cases and the oracle
def test_cases_cannot_be_special_cased():
    """MiniLM and random BERTs of other sizes, with and without a pooler; full, frozen bottoms
    (including all layers), LoRA on several target sets; fp32 and bf16."""
    cases = ch02b.FP32_CASES + ch02b.BF16_CASES
    assert {k for k, _ in cases} == set(ch02b.MODELS)
    assert {s["train"] for _, s in cases} == {"all", "top", "lora"}
    assert len({s["frozen_layers"] for _, s in cases if s["train"] == "top"}) >= 4
    assert len({(s["r"], tuple(s["targets"])) for _, s in cases if s["train"] == "lora"}) >= 3
    assert {s["precision"] for _, s in ch02b.BF16_CASES} == {"bf16"}
    assert any(s["train"] == "top" and s["frozen_layers"] == 6 for k, s in cases if k == "minilm")
    pooler = [sum(p.numel() for n, p in ch02b.MODELS[k][1]()[0].named_parameters()
                  if n.startswith("bert.pooler.")) for k in ("minilm", "tiny3", "tiny4")]
    assert pooler[0] == 0 and pooler[1] > 0 and pooler[2] > 0


def test_oracle_measures_the_set_up():
    """The checker's measurement really builds each set-up: the trainable count behind it is the
    one the set-up describes, and memory_breakdown's fp32 parts are analytic_memory's."""
    from effkit.measure import analytic_memory

    for key, setup in ch02b.FP32_CASES[:5]:
        base, batch = ch02b.MODELS[key][1]()
        built = ch02b.apply_setup(__import__("copy").deepcopy(base), setup)
        measured, counts = ch02b._measured(key, setup)
        analytic = analytic_memory(built)
        assert {k: measured[k] for k in analytic} == analytic
        assert counts["T"] == sum(p.numel() for p in built.parameters() if p.requires_grad)
        if setup["train"] == "lora":
            assert counts["lora"] > 0 and counts["T"] == counts["lora"] + counts["classifier"]
    assert all(p.requires_grad for p in ch02b.MODELS["minilm"][1]()[0].parameters())


def test_bf16_changes_what_the_student_does_not_predict():
    """Under bf16 the measured weight copies are non-zero: the set-ups really ran autocast."""
    for key, setup in ch02b.BF16_CASES:
        measured, _ = ch02b._measured(key, setup)
        assert measured["weight_copies"] > 0
        fp32, _ = ch02b._measured(key, {**setup, "precision": "fp32"})
        assert {k: fp32[k] for k in ch02b.PARTS} == {k: measured[k] for k in ch02b.PARTS}
        assert fp32["weight_copies"] == 0
    assert torch.get_default_dtype() == torch.float32
