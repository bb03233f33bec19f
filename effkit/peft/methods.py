"""Other parameter-efficient fine-tuning methods, to set beside LoRA (``effkit.lora``).

- ``head_only(model)``: freeze the whole encoder, train the classifier head (a linear probe);
- ``bitfit(model)``: train every bias and the head (Ben Zaken et al., 2021);
- ``add_adapters(model, bottleneck)``: Houlsby bottleneck adapters after the attention output and
  the feed-forward output of every layer (Houlsby et al., 2019), trained with the layer norms
  and the head.

Each changes the model in place and returns the names of what it made trainable or inserted.
Each is also registered as a technique of :mod:`effkit.compare` (``"head-only"``, ``"bitfit"``,
``"adapters"``), so chapter 04's table is built by one harness.
"""
from __future__ import annotations

import torch
from torch import nn

from ..compare import register
from ..targets import find_modules, replace_module, set_trainable

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
        replace_module(model, name, WithAdapter(modules[name], bottleneck))
    return names


# ---------------------------------------------------------------- as techniques of the harness
@register("head-only")
def head_only_technique(model: nn.Module, trainable=HEAD) -> nn.Module:
    head_only(model, trainable)
    return model


@register("bitfit")
def bitfit_technique(model: nn.Module, trainable=HEAD) -> nn.Module:
    bitfit(model, trainable)
    return model


@register("adapters")
def adapters_technique(model: nn.Module, bottleneck: int = 64, trainable=HEAD) -> nn.Module:
    add_adapters(model, bottleneck, trainable=trainable)
    return model
