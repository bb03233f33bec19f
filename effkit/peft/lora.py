"""LoRA from scratch: a low-rank update beside a frozen ``nn.Linear``.

A fine-tuned weight is ``W + ΔW``. LoRA (Hu et al., 2021) bets that ``ΔW`` has low rank and
trains it as a product ``ΔW = (alpha / r) · B A`` with ``A`` of shape ``(r, in)`` and ``B`` of shape
``(out, r)``. ``W`` stays frozen, so only ``r · (in + out)`` numbers per layer get gradients and
optimizer state. ``B`` starts at zero, so the wrapped model starts exactly equal to the base.

- ``LoRALinear(base, r, alpha)``: the wrapper (``merge()`` / ``unmerge()`` fold ``ΔW`` in and out);
- ``add_lora(model, targets, r, alpha)``: swap it into every matching ``nn.Linear``, freeze the rest;
- ``merge_lora`` / ``unmerge_lora``: the same over a whole model;
- ``save_lora`` / ``load_lora``: only the adapters and the head, as safetensors.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..compare import register
from ..files import atomic_path
from ..targets import as_patterns, find_modules, replace_module, set_trainable

# Where LoRA goes, as ``targets`` (peft's target_modules rules: an exact name, a dotted suffix or
# a full-match regular expression). The LoRA paper adapted query and value; the QLoRA paper found
# that adapting every linear layer is what matches full fine-tuning. In a BERT block the
# feed-forward layers hold two thirds of the weights.
QUERY_VALUE = ("query", "value")
ATTENTION = ("query", "key", "value", "attention.output.dense")
FEED_FORWARD = ("intermediate.dense", r".*layer\.\d+\.output\.dense")   # not attention.output.dense


# ---------------------------------------------------------------- the layer
class LoRALinear(nn.Module):
    """``y = base(x) + dropout(x) A^T B^T · (alpha / r)`` with ``base`` frozen.

    base: the ``nn.Linear`` to adapt, weight ``(out, in)``; it is kept, frozen, as ``self.base``.
    r: rank, an int in ``[1, min(in, out)]``.  alpha: scale numerator (``scaling = alpha / r``).
    dropout: dropout on the LoRA path's input only (the base path is unchanged).
    Input ``(..., in)`` -> output ``(..., out)``.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        check_hyperparameters(r, alpha, dropout, base.in_features, base.out_features)
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = base.weight
        self.A = nn.Parameter(torch.empty(r, base.in_features, dtype=weight.dtype, device=weight.device))
        self.B = nn.Parameter(torch.empty(base.out_features, r, dtype=weight.dtype, device=weight.device))
        self.merged = False
        base.requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # A like nn.Linear's own default (as the LoRA paper's code and peft do); B = 0 so ΔW = 0.
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)

    def delta_weight(self) -> torch.Tensor:
        """``ΔW = (alpha / r) · B A``, shape ``(out, in)`` like ``base.weight``."""
        return (self.B @ self.A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # ΔW already sits inside base.weight
            return self.base(x)
        # Two thin matmuls (in -> r -> out), never the full (out, in) ΔW: that is LoRA's saving.
        return self.base(x) + (self.dropout(x) @ self.A.T @ self.B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``ΔW`` into ``base.weight``: same outputs, no extra matmuls at inference."""
        if self.merged:
            raise RuntimeError("this LoRALinear is already merged; call unmerge() first")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ``ΔW`` back out of ``base.weight`` (to keep training the adapter)."""
        if not self.merged:
            raise RuntimeError("this LoRALinear is not merged; nothing to unmerge")
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def check_hyperparameters(r, alpha, dropout, in_features: int, out_features: int) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r (the LoRA rank) must be an int >= 1, got {r!r}")
    if r > min(in_features, out_features):
        raise ValueError(f"r={r} is larger than min(in_features, out_features) = "
                         f"min({in_features}, {out_features}); a rank above that adds parameters "
                         f"but no expressiveness. Allowed: 1 <= r <= {min(in_features, out_features)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


# ---------------------------------------------------------------- whole models
def add_lora(model: nn.Module, targets, r: int = 8, alpha: float = 16, dropout: float = 0.0,
             trainable=("classifier",)) -> list[str]:
    """Wrap every ``nn.Linear`` matched by ``targets`` in a ``LoRALinear``, in place.

    targets: module-name patterns (``effkit.targets``: peft's rule), e.g. ``["query", "value"]``.
    trainable: modules that train in full beside the adapters (the new classifier head).
    Everything else is frozen. Returns the wrapped module names.
    """
    names = find_modules(model, targets)
    if as_patterns(trainable, "trainable"):
        find_modules(model, trainable, "trainable")
    modules = dict(model.named_modules())
    for name in names:  # check everything first, so a bad target leaves the model untouched
        module, parent = modules[name], modules[name.rpartition(".")[0]]
        if isinstance(module, LoRALinear) or isinstance(parent, LoRALinear):
            raise ValueError(f"{name} already has LoRA: add_lora was applied twice. Load a fresh "
                             f"model, or use unmerge/merge on the existing adapters")
        if not isinstance(module, nn.Linear):
            linears = [n for n, m in module.named_modules() if n and isinstance(m, nn.Linear)]
            raise TypeError(f"target {name} is a {type(module).__name__}, not an nn.Linear; LoRA "
                            f"wraps Linear layers only. Linear layers inside it: "
                            f"{[f'{name}.{n}' for n in linears] or 'none'}")
        check_hyperparameters(r, alpha, dropout, module.in_features, module.out_features)
    set_trainable(model, trainable)
    _wrap(model, names, r, alpha, dropout)
    return names


def _wrap(model: nn.Module, names: list[str], r: int, alpha: float, dropout: float) -> None:
    for name in names:
        replace_module(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """``{name: LoRALinear}`` for every adapted layer in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRALinear layers; call add_lora(model, targets, r, alpha) first")
    return layers


def merge_lora(model: nn.Module) -> int:
    """Merge every adapter into its base weight; returns how many layers were merged."""
    layers = _require_lora(model)
    for layer in layers.values():
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo ``merge_lora``; returns how many layers were unmerged."""
    layers = _require_lora(model)
    for layer in layers.values():
        layer.unmerge()
    return len(layers)


# ---------------------------------------------------------------- saving only what was trained
def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint holds: every A and B, plus the parameters that train in full (head)."""
    layers = _require_lora(model)
    if any(layer.merged for layer in layers.values()):
        raise RuntimeError("save the adapters before merging (or unmerge_lora first): a merged "
                           "model's A and B are already inside the base weights")
    keep = {f"{n}.{ab}" for n in layers for ab in ("A", "B")}
    return {n: p.detach().contiguous() for n, p in model.named_parameters()
            if n in keep or p.requires_grad}


def save_lora(model: nn.Module, path: str | Path) -> Path:
    """Write the adapters and trainable head to ``path`` (safetensors); returns the path.

    The file's metadata records each adapted layer's r, alpha and dropout, so ``load_lora`` can rebuild
    the wrappers on a fresh model.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = adapter_state_dict(model)
    config = {n: {"r": m.r, "alpha": m.alpha, "dropout": getattr(m.dropout, "p", 0.0)}
              for n, m in lora_layers(model).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"effkit_lora": json.dumps(config)})
    return path


def load_lora(model: nn.Module, path: str | Path) -> list[str]:
    """Load a ``save_lora`` file into ``model``; returns the names of the tensors loaded.

    A fresh model (no LoRA yet) is wrapped first with the saved layers' settings. A model that
    already has adapters must have exactly the saved layout.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        meta = (f.metadata() or {}).get("effkit_lora")
    if meta is None:
        raise ValueError(f"{path} is not an effkit LoRA file (no 'effkit_lora' metadata); "
                         f"write it with save_lora")
    config = json.loads(meta)
    if not lora_layers(model):
        model.requires_grad_(False)
        for name, c in config.items():
            _wrap(model, [name], c["r"], c["alpha"], c.get("dropout", 0.0))
    elif set(lora_layers(model)) != set(config):
        raise ValueError(f"the model's LoRA layers differ from those saved in {path}: "
                         f"missing {sorted(set(config) - set(lora_layers(model)))}, "
                         f"extra {sorted(set(lora_layers(model)) - set(config))}")
    state = load_file(str(path))
    params = dict(model.named_parameters())
    for name, tensor in state.items():
        if name not in params:
            raise ValueError(f"{path} holds {name!r}, which this model does not have")
        if params[name].shape != tensor.shape:
            raise ValueError(f"{name}: saved shape {tuple(tensor.shape)} but the model has "
                             f"{tuple(params[name].shape)} (different r or a different model?)")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    # Whatever was trained in full (the head) trains again; the adapters always do.
    for name in state:
        params[name].requires_grad_(True)
    return sorted(state)


def lora_parameter_count(model: nn.Module, targets, r: int) -> int:
    """How many numbers ``add_lora(model, targets, r)`` would add, without changing ``model``:
    ``r · (in + out)`` summed over the matched Linear layers (the head is not included)."""
    modules = dict(model.named_modules())
    total = 0
    for name in find_modules(model, targets):
        module = modules[name]
        if isinstance(module, LoRALinear):
            module = module.base
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target {name} is a {type(module).__name__}, not an nn.Linear")
        check_hyperparameters(r, 1.0, 0.0, module.in_features, module.out_features)
        total += r * (module.in_features + module.out_features)
    return total


# ---------------------------------------------------------------- as techniques of the harness
@register("lora")
def lora_technique(model: nn.Module, r: int = 8, alpha: float = 16, targets=("query", "value"),
                   trainable=("classifier",)) -> nn.Module:
    """effkit's LoRA (:func:`add_lora`) for :func:`effkit.compare.train_and_measure`."""
    add_lora(model, list(targets), r=r, alpha=alpha, trainable=trainable)
    return model


@register("peft-lora")
def peft_lora_technique(model: nn.Module, r: int = 8, alpha: float = 16, targets=("query", "value"),
                        trainable=("classifier",)) -> nn.Module:
    """The Hugging Face peft library's LoRA with the same settings. It returns a new wrapper
    module (``PeftModel``), which is what must be trained."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(target_modules=list(targets), r=r, lora_alpha=alpha,
                        modules_to_save=list(trainable))
    return get_peft_model(model, config)
