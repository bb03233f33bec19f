"""Structured pruning of a BERT encoder: remove whole attention heads and FFN neurons, so the
matrices really shrink and a dense CPU kernel does less work.

- Head importance (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): put a gate
  ``xi_h = 1`` on each head's output and accumulate ``|dL/dxi_h|`` over real batches. A head whose
  gate barely moves the loss can go. The scores are normalised per layer (L2), as in the paper.
- FFN neuron importance: neuron ``j`` of a layer reads row ``j`` of ``intermediate.dense`` and
  writes column ``j`` of ``output.dense``; its score is the product of those two L2 norms.
- Removal: heads are cut out of ``query``/``key``/``value`` (output rows) and
  ``attention.output.dense`` (input columns); neurons out of ``intermediate.dense`` (rows) and
  ``output.dense`` (columns). transformers' BERT infers the head count from the projection width,
  so nothing else changes. A layer must keep at least one head and one neuron.
"""
from __future__ import annotations

import torch
from torch import nn

from ..targets import replace_module


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer layers of a BERT-style model (``model.bert.encoder.layer``)."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__} has no BERT encoder (base_model.encoder.layer)")
    return list(layers)


def head_counts(model: nn.Module) -> list[int]:
    """Heads left in each layer (the ``query`` width / head size)."""
    return [layer.attention.self.query.out_features // layer.attention.self.attention_head_size
            for layer in encoder_layers(model)]


def ffn_widths(model: nn.Module) -> list[int]:
    """FFN neurons left in each layer (``intermediate.dense`` rows)."""
    return [layer.intermediate.dense.out_features for layer in encoder_layers(model)]


# ---------------------------------------------------------------- importance
def head_importance(model: nn.Module, batches, normalize: bool = True) -> list[torch.Tensor]:
    """Per layer, a ``(heads,)`` tensor: the sum over ``batches`` of ``|dL/dxi_h|`` for a gate
    ``xi_h = 1`` multiplying each head's output (Michel et al.), L2-normalised per layer when
    ``normalize``. ``torch.stack`` makes it a (layers, heads) grid while no head is removed.

    batches: an iterable of dict batches with ``labels`` (a few dev batches are enough).
    The model's weights and gradients are left as they were (``torch.autograd.grad`` on the gates).
    """
    layers = encoder_layers(model)
    counts = head_counts(model)
    size = layers[0].attention.self.attention_head_size
    gates = [torch.ones(n, requires_grad=True) for n in counts]
    handles = [layer.attention.output.dense.register_forward_pre_hook(_gate(gates[i], size))
               for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()                                  # no dropout: the scores should be repeatable
    scores = [torch.zeros(n) for n in counts]
    seen = 0
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            for total, grad in zip(scores, torch.autograd.grad(loss, gates)):
                total += grad.abs().cpu() * len(batch["labels"])
            seen += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("batches is empty: head importance needs at least one batch with labels")
    if normalize:
        scores = [s / s.norm().clamp_min(1e-12) for s in scores]
    return scores


def _gate(gate: torch.Tensor, size: int):
    """A forward pre-hook multiplying each head's slice of the context vectors by its gate."""
    def hook(module, args):
        (context,) = args
        shape = context.shape
        gated = context.reshape(*shape[:-1], gate.numel(), size) * gate.to(context.device)[:, None]
        return (gated.reshape(shape),)
    return hook


def neuron_importance(model: nn.Module) -> list[torch.Tensor]:
    """Per layer, a ``(ffn width,)`` tensor: ``||row j of intermediate.dense|| * ||column j of
    output.dense||``, the weight magnitude of what neuron ``j`` reads and writes."""
    return [(layer.intermediate.dense.weight.detach().norm(dim=1)
             * layer.output.dense.weight.detach().norm(dim=0)) for layer in encoder_layers(model)]


def lowest(scores, fraction: float, scope: str = "global") -> list[list[int]]:
    """Per layer, the indices of the ``fraction`` lowest scores: ``"global"`` ranks all layers'
    scores together (as Michel et al. do for heads), ``"layer"`` takes the same count from each.
    Never returns every index of a layer (the lowest-scoring survivor is kept)."""
    rows = [torch.as_tensor(s).reshape(-1) for s in scores]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"fraction must be a number in [0, 1) (the share to remove), got {fraction!r}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if scope == "layer":
        return [sorted(r.argsort()[: min(round(fraction * r.numel()), r.numel() - 1)].tolist()) for r in rows]
    flat = torch.cat(rows)
    order = flat.argsort()[: round(fraction * flat.numel())].tolist()
    starts = torch.tensor([0] + [r.numel() for r in rows]).cumsum(0).tolist()
    picked = [[] for _ in rows]
    for idx in order:
        layer = next(i for i in range(len(rows)) if starts[i] <= idx < starts[i + 1])
        if len(picked[layer]) < rows[layer].numel() - 1:
            picked[layer].append(idx - starts[layer])
    return [sorted(p) for p in picked]


# ---------------------------------------------------------------- removal
def _sliced(linear: nn.Linear, keep: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of ``linear`` keeping rows (``dim=0``: outputs) or columns (``dim=1``) ``keep``."""
    weight = linear.weight.detach().index_select(dim, keep).clone()
    bias = linear.bias
    if bias is not None and dim == 0:
        bias = bias.detach()[keep].clone()
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias.detach())
    new.requires_grad_(linear.weight.requires_grad)
    return new


def _check_removal(what: str, plan: dict, have: list[int]) -> dict[int, list[int]]:
    if not isinstance(plan, dict):
        raise TypeError(f"{what} must be a dict {{layer index: [indices to remove]}}, got {type(plan).__name__}")
    out = {}
    for layer, idx in plan.items():
        if not isinstance(layer, int) or not 0 <= layer < len(have):
            raise ValueError(f"{what}: layer {layer!r} does not exist; the model has layers 0..{len(have) - 1}")
        idx = sorted(set(int(i) for i in idx))
        if len(idx) > have[layer]:
            raise ValueError(f"{what}: {len(idx)} to remove from layer {layer}, which has only {have[layer]}")
        bad = [i for i in idx if not 0 <= i < have[layer]]
        if bad:
            raise ValueError(f"{what}: indices {bad} do not exist in layer {layer} (it has {have[layer]}: 0..{have[layer] - 1})")
        if len(idx) == have[layer]:
            raise ValueError(f"{what}: removing all {have[layer]} from layer {layer} would leave it "
                             f"empty; keep at least one (skip the layer instead of emptying it)")
        out[layer] = idx
    return out


@torch.no_grad()
def remove_heads(model: nn.Module, heads: dict) -> nn.Module:
    """Cut the heads ``{layer: [head indices]}`` out of ``model``, in place; returns it.

    Indices refer to the heads the layer has now. Errors: a layer or head that does not exist,
    more heads than the layer has, or every head of a layer.
    """
    layers = encoder_layers(model)
    plan = _check_removal("heads", heads, head_counts(model))
    for i, drop in plan.items():
        attention = layers[i].attention
        size = attention.self.attention_head_size
        n = attention.self.query.out_features // size
        kept_heads = [h for h in range(n) if h not in drop]
        keep = torch.tensor([h * size + d for h in kept_heads for d in range(size)],
                            device=attention.self.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(attention.self, name, _sliced(getattr(attention.self, name), keep, dim=0))
        replace_module(attention, "output.dense", _sliced(attention.output.dense, keep, dim=1))
        attention.self.num_attention_heads = len(kept_heads)
        attention.self.all_head_size = len(kept_heads) * size
    return model


@torch.no_grad()
def remove_neurons(model: nn.Module, neurons: dict) -> nn.Module:
    """Cut the FFN neurons ``{layer: [indices]}`` out of ``model``, in place; returns it."""
    layers = encoder_layers(model)
    plan = _check_removal("neurons", neurons, ffn_widths(model))
    for i, drop in plan.items():
        layer = layers[i]
        width = layer.intermediate.dense.out_features
        keep = torch.tensor([j for j in range(width) if j not in set(drop)],
                            device=layer.intermediate.dense.weight.device)
        layer.intermediate.dense = _sliced(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = _sliced(layer.output.dense, keep, dim=1)
    return model


def prune_structured(model: nn.Module, batches, head_fraction: float, neuron_fraction: float,
                     scope: str = "layer") -> dict:
    """Score heads (gradient importance on ``batches``) and neurons (weight magnitude), then remove
    the ``head_fraction`` / ``neuron_fraction`` least important, in place. scope: ``"layer"`` (the
    same count from every layer, so every layer shrinks alike) or ``"global"`` (ranked over all
    layers). Returns ``{"heads": {layer: [removed]}, "neurons": {layer: [removed]}}``."""
    heads = lowest(head_importance(model, batches), head_fraction, scope)
    neurons = lowest(neuron_importance(model), neuron_fraction, scope)
    plan = {"heads": {i: h for i, h in enumerate(heads) if h},
            "neurons": {i: n for i, n in enumerate(neurons) if n}}
    remove_heads(model, plan["heads"])
    remove_neurons(model, plan["neurons"])
    return plan
