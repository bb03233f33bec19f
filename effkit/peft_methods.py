"""Other parameter-efficient fine-tuning methods, to set beside LoRA (``effkit.lora``).

- ``head_only(model)``: freeze the whole encoder, train the classifier head (a linear probe);
- ``bitfit(model)``: train every bias and the head (Ben Zaken et al., 2021);
- ``add_adapters(model, bottleneck)``: Houlsby bottleneck adapters after the attention output and
  the feed-forward output of every layer (Houlsby et al., 2019), trained with the layer norms
  and the head.

Each changes the model in place and returns the names of what it made trainable or inserted.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .lora import find_modules, set_trainable

HEAD = ("classifier",)


def head_only(model: nn.Module, trainable=HEAD) -> list[str]:
    """Freeze everything but the head; returns the trainable module names."""
    return set_trainable(model, trainable)


def bitfit(model: nn.Module, trainable=HEAD) -> list[str]:
    """Freeze everything but the bias vectors and the head; returns the trainable parameter names."""
    set_trainable(model, trainable)
    for name, p in model.named_parameters():
        if name == "bias" or name.endswith(".bias"):
            p.requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


# ---------------------------------------------------------------- Houlsby adapters
class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))``: a small residual MLP through ``bottleneck`` dimensions.

    Input and output ``(..., hidden)``. ``up`` starts at zero, so at initialisation the adapter
    is the identity and the adapted model equals the base model.
    """

    def __init__(self, hidden: int, bottleneck: int):
        super().__init__()
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
            raise ValueError(f"bottleneck must be an int >= 1, got {bottleneck!r}")
        self.down = nn.Linear(hidden, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class WithAdapter(nn.Module):
    """A frozen ``nn.Linear`` followed by a ``BottleneckAdapter``: ``adapter(dense(x))``."""

    def __init__(self, dense: nn.Linear, bottleneck: int):
        super().__init__()
        if not isinstance(dense, nn.Linear):
            raise TypeError(f"an adapter goes after an nn.Linear, got {type(dense).__name__}")
        self.dense = dense
        w = dense.weight
        self.adapter = BottleneckAdapter(dense.out_features, bottleneck).to(w.device, w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.dense(x))


# In BERT both sub-layers end in a module called ``output`` whose ``dense`` projects back to the
# hidden size before dropout + residual + LayerNorm: attention.output.dense and output.dense.
ADAPTER_SITES = ("output.dense",)


def add_adapters(model: nn.Module, bottleneck: int = 64, sites=ADAPTER_SITES,
                 trainable=HEAD, train_layer_norm: bool = True) -> list[str]:
    """Insert a bottleneck adapter after each Linear named by ``sites``; returns their names.

    Houlsby et al. place one after the attention output projection and one after the feed-forward
    output projection, before the residual add and LayerNorm, and train the adapters, the layer
    norms and the head. ``train_layer_norm=False`` trains adapters and head only.
    """
    if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
        raise ValueError(f"bottleneck must be an int >= 1, got {bottleneck!r}")
    names = find_modules(model, sites)
    modules = dict(model.named_modules())
    for name in names:
        if isinstance(modules[name], WithAdapter) or isinstance(modules[name.rpartition(".")[0]], WithAdapter):
            raise ValueError(f"{name} already has an adapter: add_adapters was applied twice")
        if not isinstance(modules[name], nn.Linear):
            raise TypeError(f"adapter site {name} is a {type(modules[name]).__name__}, not an nn.Linear")
    set_trainable(model, trainable)
    if train_layer_norm:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(modules[parent], child, WithAdapter(modules[name], bottleneck))
    return names


# ---------------------------------------------------------------- one interface for the comparison
def default_config(max_steps: int | None = None):
    """The TrainConfig every PEFT method uses here: the chapter 02 baseline's batch, length and
    schedule (full: 2 epochs, evaluated every 80 steps), with a 20x larger learning rate (few,
    mostly freshly initialised parameters). Fast: a fixed budget of 12 steps."""
    from .config import pick
    from .train import TrainConfig

    config = pick(fast=TrainConfig(lr=1e-3, epochs=1, batch_size=16, max_length=48, max_steps=12,
                                   patience=3),
                  full=TrainConfig(lr=1e-3, epochs=2, batch_size=32, max_length=64, eval_every=80,
                                   patience=3))
    if max_steps is not None:
        from dataclasses import replace

        config = replace(config, max_steps=max_steps, eval_every=max(max_steps // 3, 1))
    return config


METHODS = ("full", "lora", "peft-lora", "qlora", "bitfit", "adapters", "head-only")


def apply_method(model: nn.Module, method: str, r: int = 8, alpha: float = 16,
                 targets=("query", "value"), bottleneck: int = 64, trainable=HEAD) -> nn.Module:
    """Prepare a fresh classifier for ``method`` and return the module to train.

    method: one of ``METHODS``. ``full`` trains everything; ``lora`` is ``effkit.lora.add_lora``;
    ``peft-lora`` is the Hugging Face peft library with the same settings (it returns a new
    wrapper module, so always train what this function returns); ``qlora`` is
    ``effkit.qlora.prepare_qlora`` (an NF4 base under the same LoRA adapters).
    """
    from .lora import add_lora

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "full":
        model.requires_grad_(True)
    elif method == "lora":
        add_lora(model, list(targets), r=r, alpha=alpha, trainable=trainable)
    elif method == "peft-lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(target_modules=list(targets), r=r, lora_alpha=alpha,
                            modules_to_save=list(trainable))
        model = get_peft_model(model, config)
    elif method == "qlora":
        from .qlora import prepare_qlora

        prepare_qlora(model, targets, r=r, alpha=alpha, trainable=trainable)
    elif method == "bitfit":
        bitfit(model, trainable)
    elif method == "adapters":
        add_adapters(model, bottleneck, trainable=trainable)
    else:
        head_only(model, trainable)
    return model


def save_trainable(model: nn.Module, path) -> int:
    """Write only the trainable parameters (what a method must ship beside the base model) as
    safetensors; returns the file size in bytes."""
    from pathlib import Path

    from safetensors.torch import save_file

    from .files import atomic_path

    state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    if not state:
        raise ValueError("the model has no trainable parameters to save")
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return Path(path).stat().st_size


# ---------------------------------------------------------------- train and measure one method
def train_and_measure(base: nn.Module, method: str, loaders: dict, config, label: str | None = None,
                      cache_key: dict | None = None, timing_repeats: int = 2, progress: bool = False,
                      batch: dict | None = None, **options) -> dict:
    """Fine-tune a copy of ``base`` with ``method`` and return one row of the comparison table.

    base: the pretrained classifier (not changed). loaders: ``{"train", "dev", "test"}`` from
    ``effkit.baselines.sentiment_loaders``. config: an ``effkit.train.TrainConfig``.
    options: passed to :func:`apply_method` (``r``, ``alpha``, ``targets``, ``bottleneck``).
    cache_key: a dict naming everything else that decides the result (data sizes, profile ...);
    when given, the trained weights and metrics are cached under it plus method, options and config.
    progress: show a tqdm bar while training (a widget bar in JupyterLab).
    batch: the batch that memory and step time are measured on; default the first dev batch, so
    every method is measured on the same reviews (the shuffled train loader gives a different
    first batch each time it is iterated).
    Returns ``{"method", "trainable", "trainable_pct", "weights", "gradients", "optimizer_state",
    "activations", "step_seconds", "train_seconds", "dev_accuracy", "test_accuracy",
    "saved_bytes", "from_cache", "model"}`` (memory in bytes, from ``measure.memory_breakdown`` on
    one training batch in fp32; ``model`` is the trained model, to save or inspect).
    """
    import tempfile
    from pathlib import Path

    from . import cache, measure
    from .config import device, seed_everything
    from .train import evaluate, fit

    seed_everything(config.seed)  # A matrices, adapters and the head start the same every run
    model = apply_method(copy.deepcopy(base), method, **options).to(device())
    batch = batch if batch is not None else next(iter(loaders["dev"]))
    row = {"method": label or method, "trainable": measure.count_parameters(model, True),
           "trainable_pct": 100 * measure.count_parameters(model, True) / measure.count_parameters(model)}
    row.update(memory_and_step_time(model, batch, config, timing_repeats))

    def train(model):
        history = fit(model, loaders["train"], loaders["dev"], config, progress=progress)
        # fit keeps the weights of its best dev evaluation, so that score is the dev accuracy.
        return {"train_seconds": history.seconds, "best_step": history.best_step,
                "steps": history.steps, "evals": history.evals,
                "dev_accuracy": history.best_metric,
                "test_accuracy": evaluate(model, loaders["test"])["accuracy"]}

    if cache_key is None:
        metrics, from_cache = train(model), False
    else:
        key = {**cache_key, "recipe": "ch04_peft_method", "method": method, "options": options,
               "train_config": config.to_dict()}
        metrics, from_cache = cache.cached(_plain(key), model, train)
    with tempfile.TemporaryDirectory() as tmp:
        row["saved_bytes"] = save_trainable(model, Path(tmp) / "trained.safetensors")
    return {**row, **{k: metrics.get(k) for k in ("train_seconds", "best_step", "steps", "dev_accuracy",
                                                  "test_accuracy", "evals")},
            "from_cache": from_cache, "model": model}


def memory_and_step_time(model: nn.Module, batch, config, repeats: int = 2) -> dict:
    """``{"weights", "gradients", "optimizer_state", "activations"}`` (bytes, from
    ``measure.memory_breakdown``) and ``"step_seconds"``: the median of ``repeats`` AdamW steps
    on ``batch``, timed on a copy so ``model`` is unchanged."""
    from . import measure
    from .train import param_groups

    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    memory = measure.memory_breakdown(model, optimizer, batch)
    twin = copy.deepcopy(model)
    twin_optimizer = torch.optim.AdamW(param_groups(twin, config.weight_decay), lr=config.lr)
    seconds = measure.step_time(lambda: measure.training_step(twin, twin_optimizer, batch),
                                warmup=1, repeats=repeats)["median"]
    del twin, twin_optimizer
    return {**{k: memory[k] for k in ("weights", "gradients", "optimizer_state", "activations")},
            "step_seconds": seconds}


def interleaved_step_times(models: dict, batch, config, warmup: int = 1, repeats: int = 3) -> dict:
    """``{name: {"median", "iqr", "all"}}``: seconds of one AdamW training step on ``batch`` for
    each model, the models taking turns (``measure.compare_step_times``) so that load from other
    programs slows them alike. Copies are stepped; the models are unchanged."""
    from . import measure
    from .train import param_groups

    def stepper(model):
        twin = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW(param_groups(twin, config.weight_decay), lr=config.lr)
        return lambda: measure.training_step(twin, optimizer, batch)

    return measure.compare_step_times({n: stepper(m) for n, m in models.items()}, warmup, repeats)


def _plain(obj):
    """Tuples to lists, so a cache key is plain JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
