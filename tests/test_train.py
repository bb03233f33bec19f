"""effkit.train: config checks, param groups, autocast, the loop (hooks, schedule, early stopping,
seeding) on a tiny model, and fit/evaluate/baselines on the real MiniLM and data."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import effkit as ek
from effkit import batching, train
from effkit.train import Hook, TrainConfig


# ---------------------------------------------------------------- a tiny stand-in classifier
class Tiny(nn.Module):
    """Same interface as a transformers classifier: forward(**batch) -> .loss, .logits."""

    def __init__(self, num_labels=2):
        super().__init__()
        self.config = SimpleNamespace(num_labels=num_labels)
        self.emb = nn.Embedding(16, 8)
        self.norm = nn.LayerNorm(8)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(8, num_labels)

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self.head(self.dropout(self.norm(self.emb(input_ids).mean(1))))
        return SimpleNamespace(loss=F.cross_entropy(logits, labels), logits=logits)


def tiny_loader(n=32, batch_size=4, shuffle=True, label_max=1):
    g = torch.Generator().manual_seed(0)
    examples = [{"input_ids": torch.randint(1, 16, (5,), generator=g).tolist(),
                 "attention_mask": [1] * 5, "labels": i % (label_max + 1)} for i in range(n)]
    return batching.make_loader(batching.Encoded(examples, 0, "sequence"), batch_size, shuffle, 0)


def quiet(**kw):
    return dict(progress=False, device="cpu", **kw)


# ---------------------------------------------------------------- config and pieces
@pytest.mark.parametrize("kw, words", [
    ({"lr": 0}, "lr must be > 0"),
    ({"epochs": 0}, "epochs must be an int >= 1"),
    ({"precision": "int8"}, "precision must be one of"),
    ({"max_steps": 0}, "max_steps must be None or an int >= 1"),
    ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
])
def test_train_config_rejects_bad_values(kw, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**kw)


def test_param_groups_skip_decay_on_biases_and_layernorm_and_leave_out_frozen():
    model = Tiny()
    model.emb.weight.requires_grad_(False)
    decay, no_decay = train.param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.head.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model.norm.weight), id(model.norm.bias),
                                                   id(model.head.bias)}
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.param_groups(model, 0.01)


def test_param_groups_on_minilm_cover_every_parameter_once():
    model, _ = ek.models.load_encoder("sequence", 2)
    decay, no_decay = train.param_groups(model, 0.01)
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in map(names.get, map(id, no_decay["params"])))
    assert all("LayerNorm" not in names[id(p)] and not names[id(p)].endswith("bias") for p in decay["params"])


def test_autocast_context():
    assert isinstance(train.autocast_context("cpu", "bf16"), torch.autocast)
    with train.autocast_context("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
        train.autocast_context("cpu", "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        train.autocast_context("cpu", "fp8")
    with pytest.raises(ValueError, match="not on 'meta'"):
        train.autocast_context("meta", "bf16")


def test_fit_refuses_fp16_on_cpu_before_training():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        train.fit(Tiny(), tiny_loader(), None, TrainConfig(precision="fp16"), **quiet())


# ---------------------------------------------------------------- the loop, on the tiny model
class Counter(Hook):
    def __init__(self):
        self.calls = {"start": 0, "backward": 0, "step": 0, "evaluate": []}

    def on_train_start(self, model, optimizer):
        self.calls["start"] += 1
        assert isinstance(optimizer, torch.optim.AdamW)

    def after_backward(self, model):
        self.calls["backward"] += 1
        assert model.head.weight.grad is not None  # gradients exist and are not yet cleared

    def after_step(self, model):
        self.calls["step"] += 1

    def on_evaluate(self, step, metrics):
        self.calls["evaluate"].append(step)


def test_hooks_schedule_and_max_steps():
    hook = Counter()
    config = TrainConfig(lr=1e-2, epochs=3, max_steps=10, eval_every=4, warmup_ratio=0.2, patience=9)
    history = train.fit(Tiny(), tiny_loader(), tiny_loader(shuffle=False), config, hooks=[hook], **quiet())
    assert history.steps == 10 == len(history.train_loss) == hook.calls["backward"] == hook.calls["step"]
    assert hook.calls["start"] == 1 and hook.calls["evaluate"] == [4, 8, 10]  # and at the last step
    lrs = history.learning_rate
    assert lrs[0] == pytest.approx(0.5e-2) and lrs[1] == pytest.approx(1e-2)  # 2 warmup steps
    assert lrs[-1] == pytest.approx(0.0) and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


def test_default_is_one_evaluation_per_epoch():
    history = train.fit(Tiny(), tiny_loader(n=12), tiny_loader(shuffle=False), TrainConfig(epochs=3, patience=5),
                        **quiet())
    assert [e["step"] for e in history.evals] == [3, 6, 9] and [e["epoch"] for e in history.evals] == [1, 2, 3]


def test_early_stopping_stops_on_patience_and_restores_best_weights(monkeypatch):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])  # best at the 2nd eval, then 2 worse -> stop
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"accuracy": next(scores)})
    snapshots = {}

    class Snap(Hook):
        def on_evaluate(self, step, metrics):
            snapshots[step] = model.head.weight.detach().clone()

    model = Tiny()
    config = TrainConfig(lr=1e-2, epochs=5, eval_every=2, patience=2)
    history = train.fit(model, tiny_loader(), tiny_loader(shuffle=False), config, hooks=[Snap()], **quiet())
    assert [e["step"] for e in history.evals] == [2, 4, 6, 8]
    assert history.stopped_early and history.steps == 8
    assert history.best_step == 4 and history.best_metric == 0.7
    assert torch.equal(model.head.weight, snapshots[4]) and not torch.equal(snapshots[4], snapshots[8])


def test_ties_do_not_count_as_improvement(monkeypatch):
    scores = iter([0.7, 0.7, 0.7])
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"accuracy": next(scores)})
    history = train.fit(Tiny(), tiny_loader(), tiny_loader(), TrainConfig(eval_every=2, patience=2), **quiet())
    assert history.best_step == 2 and history.steps == 6 and history.stopped_early


def test_only_trainable_parameters_change():
    model = Tiny()
    model.emb.weight.requires_grad_(False)
    frozen = model.emb.weight.detach().clone()
    head = model.head.weight.detach().clone()
    train.fit(model, tiny_loader(), None, TrainConfig(lr=1e-2, epochs=1), **quiet())
    assert torch.equal(model.emb.weight, frozen) and not torch.equal(model.head.weight, head)


def test_same_seed_same_run_even_with_a_reused_loader():
    loader, dev = tiny_loader(), tiny_loader(shuffle=False)

    def run(seed):
        torch.manual_seed(seed)
        model = Tiny()
        h = train.fit(model, loader, dev, TrainConfig(lr=1e-2, epochs=2, seed=seed), **quiet())
        return h.train_loss, [e["accuracy"] for e in h.evals]

    assert run(0) == run(0)
    assert run(0)[0] != run(1)[0]


# ---------------------------------------------------------------- errors that teach
def test_label_ids_beyond_the_head_are_an_error():
    loader = tiny_loader(label_max=2)  # labels 0, 1, 2 for a 2-label head
    with pytest.raises(ValueError, match="label id 2 but the model's head has num_labels=2"):
        train.fit(Tiny(num_labels=2), loader, None, TrainConfig(), **quiet())


def test_label_names_must_match_the_head():
    with pytest.raises(ValueError, match="3 label names but the model's head has num_labels=2"):
        train.fit(Tiny(), tiny_loader(), None, TrainConfig(), label_names=["a", "b", "c"], **quiet())
    with pytest.raises(ValueError, match="3 label names .* num_labels=2"):
        train.evaluate(Tiny(), tiny_loader(), label_names=["a", "b", "c"])


def test_a_batch_without_labels_is_an_error():
    def no_labels():
        yield {"input_ids": torch.ones(2, 3, dtype=torch.long)}

    class Loader(list):
        pass

    with pytest.raises(ValueError, match="batch has no 'labels'"):
        train.fit(Tiny(), Loader(no_labels()), None, TrainConfig(), **quiet())
    with pytest.raises(ValueError, match="batch has no 'labels'"):
        train.evaluate(Tiny(), no_labels())


def test_token_task_needs_label_names_and_task_is_checked():
    with pytest.raises(ValueError, match="needs label_names"):
        train.fit(Tiny(), tiny_loader(), None, TrainConfig(), task="token", **quiet())
    with pytest.raises(ValueError, match="task must be one of"):
        train.evaluate(Tiny(), tiny_loader(), task="tokens")


# ---------------------------------------------------------------- the real model and data
@pytest.fixture(scope="module")
def sentiment_bits():
    _, tok = ek.models.load_encoder("sequence", 2)
    s = ek.data.load_sentiment()
    return (batching.encode_sentiment(s.train.take(24, seed=0), tok, 32),
            batching.encode_sentiment(s.dev.take(16, seed=0), tok, 32))


def test_fit_on_minilm_is_repeatable_with_the_same_seed(sentiment_bits):
    train_enc, dev_enc = sentiment_bits
    config = TrainConfig(lr=5e-5, epochs=1, batch_size=8, max_length=32, max_steps=2, seed=0)

    def run():
        ek.seed_everything(0)
        model, _ = ek.models.load_encoder("sequence", 2)
        h = train.fit(model, batching.make_loader(train_enc, 8, True, 0),
                      batching.make_loader(dev_enc, 16), config, **quiet())
        return h.train_loss, h.evals

    first, second = run(), run()
    assert first == second
    assert 0 < first[0][0] < 2 and first[1][0]["examples"] == 16


def test_evaluate_token_reports_entities_per_type():
    ner = ek.data.load_ner()
    model, tok = ek.models.load_encoder("token", len(ner.label_names), label_names=ner.label_names)
    loader = batching.make_loader(batching.encode_ner(ner.dev.take(16), tok, ner.label_names), 16)
    metrics = train.evaluate(model, loader, "token", ner.label_names)
    assert {"precision", "recall", "f1", "report", "token_accuracy", "loss"} <= set(metrics)
    assert 0 <= metrics["f1"] <= 1 and 0 <= metrics["token_accuracy"] <= 1
    assert "micro avg" in metrics["report"]
    from effkit.evaluate import report_frame
    assert "support" in report_frame(metrics).columns


def test_baseline_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    from effkit import baselines, recipes

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(recipes, "data_sizes", lambda task: {"train": 8, "dev": 8, "test": 8})
    config = TrainConfig(epochs=1, batch_size=8, max_length=32, max_steps=1)
    model, tok, first = baselines.sentiment_baseline(config, progress=False)
    assert not first["from_cache"] and first["history"]["steps"] == 1
    again, _, second = baselines.sentiment_baseline(config, progress=False)
    assert second["from_cache"] and second["test"] == first["test"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_seed_style_ner_model_is_cached_apart_from_the_aligned_baseline(tmp_path, monkeypatch):
    """The seed article's labels are part of the run's key: the two NER models never share a
    checkpoint, and the seed-style one is scored on every position (labels never -100)."""
    from effkit import baselines, recipes

    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(recipes, "data_sizes", lambda task: {"train": 8, "dev": 8, "test": 8})
    config = TrainConfig(epochs=1, batch_size=8, max_length=24, max_steps=1)
    _, tok, seed = baselines.ner_seed_style_model(config, progress=False)
    _, _, aligned = baselines.ner_baseline(config, progress=False)
    assert not seed["from_cache"] and not aligned["from_cache"]          # two runs, two keys
    assert baselines.ner_seed_style_model(config, progress=False)[2]["from_cache"]
    batch = next(iter(baselines.ner_seed_style_loaders(tok, config)["test"]))
    assert batch["labels"].shape[1] == 24 and bool((batch["labels"] >= 0).all())


def test_bf16_autocast_trains_on_cpu():
    history = train.fit(Tiny(), tiny_loader(), None, TrainConfig(lr=1e-2, epochs=1, precision="bf16"),
                        **quiet())
    assert history.steps == 8 and all(torch.isfinite(torch.tensor(history.train_loss)))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_fit_on_cuda_in_each_precision(precision):  # CUDA path
    model = Tiny()
    history = train.fit(model, tiny_loader(), tiny_loader(shuffle=False),
                        TrainConfig(lr=1e-2, epochs=2, precision=precision), progress=False, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert history.steps == 16 and all(torch.isfinite(torch.tensor(history.train_loss)))
    assert model.head.weight.dtype == torch.float32  # autocast keeps fp32 master weights


# ---------------------------------------------------------------- gradient accumulation (chapter 07)
def test_grad_accum_steps_is_an_added_field_that_keeps_existing_cache_keys():
    """At its default (1) the new field is left out of the key: every cached run keeps its key."""
    before = {"schema": 1, "lr": 5e-5, "weight_decay": 0.01, "epochs": 3, "batch_size": 32,
              "max_length": 64, "warmup_ratio": 0.1, "max_grad_norm": 1.0, "patience": 2, "seed": 0,
              "precision": "fp32", "max_steps": None, "eval_every": None}
    assert TrainConfig().cache_fields() == before
    assert TrainConfig(grad_accum_steps=4).cache_fields() == {**before, "grad_accum_steps": 4}
    with pytest.raises(ValueError, match="grad_accum_steps must be an int >= 1"):
        TrainConfig(grad_accum_steps=0)


def _accumulation_runs(micro, k, steps=3, n=48):
    """(big-batch run, accumulated run): params and history, on the tiny model without dropout."""
    out = []
    for batch_size, accum in ((micro * k, 1), (micro, k)):
        torch.manual_seed(0)
        model = Tiny()
        model.dropout.p = 0.0            # dropout draws different masks per micro-batch
        history = train.fit(model, tiny_loader(n=n, batch_size=batch_size), None,
                            TrainConfig(lr=1e-2, epochs=1, max_steps=steps, grad_accum_steps=accum),
                            **quiet())
        out.append((model, history))
    return out


@pytest.mark.parametrize("micro, k", [(4, 2), (2, 4), (3, 3)])
def test_k_micro_batches_equal_one_batch_k_times_larger(micro, k):
    (big, h_big), (acc, h_acc) = _accumulation_runs(micro, k)
    assert h_big.steps == h_acc.steps == 3
    assert h_acc.train_loss == pytest.approx(h_big.train_loss, rel=1e-5)
    for a, b in zip(big.parameters(), acc.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_accumulation_weights_micro_batches_by_their_labels():
    """A last micro-batch of 2 examples after one of 4 must weigh 2/6, not 1/2 (token tasks count
    labelled tokens the same way)."""
    (big, h_big), (acc, h_acc) = _accumulation_runs(micro=4, k=2, steps=1, n=6)
    assert h_acc.train_loss == pytest.approx(h_big.train_loss, rel=1e-5)
    for a, b in zip(big.parameters(), acc.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_accumulation_counts_optimizer_steps_and_calls_hooks_once_per_step():
    hook = Counter()
    history = train.fit(Tiny(), tiny_loader(n=32, batch_size=4), None,
                        TrainConfig(epochs=2, grad_accum_steps=3), hooks=[hook], **quiet())
    assert history.steps == 2 * 3 == hook.calls["backward"] == hook.calls["step"]  # ceil(8 / 3) per epoch


def test_accumulation_on_minilm_equals_the_large_batch(sentiment_bits):
    train_enc, _ = sentiment_bits
    runs = []
    for batch_size, accum in ((8, 1), (4, 2)):
        ek.seed_everything(0)
        model, _ = ek.models.load_encoder("sequence", 2)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        config = TrainConfig(lr=5e-5, epochs=1, batch_size=batch_size, max_length=32, max_steps=2,
                             grad_accum_steps=accum)
        h = train.fit(model, batching.make_loader(train_enc, batch_size, True, 0), None, config, **quiet())
        runs.append((h.train_loss, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (loss_a, p_a), (loss_b, p_b) = runs
    assert loss_b == pytest.approx(loss_a, rel=1e-4)
    assert (p_a - p_b).abs().max() < 1e-5
