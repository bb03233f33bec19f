"""Magnitude pruning from scratch: masks, keeping them applied while training, sparsity accounting.

A *mask* is a bool tensor the shape of a weight, ``True`` where the weight is kept. Magnitude
pruning keeps the weights with the largest ``|w|``:

- ``scope="layer"``: every weight matrix loses the same fraction, its own smallest ``|w|``;
- ``scope="global"``: one threshold over all the matrices together, so layers whose weights are
  small lose more than the others.

Which weights are prunable: the ``nn.Linear`` weights of the encoder. Embeddings, LayerNorm
weights and the classifier head (with BERT's pooler) are left out unless ``include`` names them;
biases are never pruned (they are few and cheap). The masks equal those of
``torch.nn.utils.prune`` (``l1_unstructured`` per layer, ``global_unstructured`` over all), which
:func:`torch_masks` computes for the comparison.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..train import Hook

SCOPES = ("layer", "global")
INCLUDABLE = ("embeddings", "layernorm", "classifier")
HEAD_MODULES = ("classifier", "pooler")


# ---------------------------------------------------------------- what can be pruned
def check_sparsity(sparsity) -> float:
    """``sparsity`` must be a number in [0, 1): the fraction of weights set to zero."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a number in [0, 1), got {sparsity!r} ({type(sparsity).__name__})")
    if not 0 <= sparsity < 1 or math.isnan(sparsity):
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of weights set to zero; 1 would "
                         f"remove every weight), got {sparsity}")
    return float(sparsity)


def check_scope(scope) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'layer' (the same sparsity in every layer) or 'global' "
                         f"(one threshold over all layers), got {scope!r}")
    return scope


def _check_include(include) -> tuple[str, ...]:
    include = (include,) if isinstance(include, str) else tuple(include)
    unknown = [i for i in include if i not in INCLUDABLE]
    if unknown:
        raise ValueError(f"include may name {INCLUDABLE}, got {unknown}")
    return include


def _is_head(name: str) -> bool:
    return any(part in HEAD_MODULES for part in name.split("."))


def prunable_weights(model: nn.Module, include=()) -> dict[str, nn.Parameter]:
    """``{parameter name: weight}`` of what magnitude pruning touches, in model order.

    Default: the ``nn.Linear`` weights outside the head (``classifier``, ``pooler``).
    ``include``: any of ``"embeddings"`` (``nn.Embedding`` tables), ``"layernorm"`` (LayerNorm
    scales), ``"classifier"`` (the head's Linear weights) to prune those too.
    """
    include = _check_include(include)
    found = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter):
            continue
        if isinstance(module, nn.Linear):
            wanted = not _is_head(name) or "classifier" in include
        elif isinstance(module, nn.Embedding):
            wanted = "embeddings" in include
        elif isinstance(module, nn.LayerNorm):
            wanted = "layernorm" in include
        else:
            wanted = False
        if wanted:
            found[f"{name}.weight" if name else "weight"] = weight
    if not found:
        raise ValueError(f"{type(model).__name__} has no prunable weights (nn.Linear outside the head)")
    return found


# ---------------------------------------------------------------- the masks
def _keep_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True for all but the ``round(sparsity * n)`` smallest scores (ties: topk's choice)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    k = round(sparsity * scores.numel())      # torch.nn.utils.prune counts the same way
    if k:
        mask[torch.topk(scores.reshape(-1), k, largest=False).indices] = False
    return mask.reshape(scores.shape)


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: str = "layer",
                    include=()) -> dict[str, torch.Tensor]:
    """``{weight name: bool mask}`` that zeroes the fraction ``sparsity`` of smallest ``|w|``.

    scope: ``"layer"`` (each weight matrix loses ``round(sparsity * n)`` of its ``n`` weights) or
        ``"global"`` (the ``round(sparsity * N)`` smallest of all ``N`` prunable weights together).
    include: see :func:`prunable_weights`. The model is not changed.
    """
    sparsity, scope = check_sparsity(sparsity), check_scope(scope)
    weights = prunable_weights(model, include)
    if scope == "layer":
        return {n: _keep_mask(w.detach().abs(), sparsity) for n, w in weights.items()}
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    keep = _keep_mask(flat, sparsity)
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start:start + w.numel()].reshape(w.shape)
        start += w.numel()
    return masks


def torch_masks(model: nn.Module, sparsity: float, scope: str = "layer",
                include=()) -> dict[str, torch.Tensor]:
    """The same masks from ``torch.nn.utils.prune`` (the reference): ``l1_unstructured`` on each
    weight, or ``global_unstructured(..., pruning_method=L1Unstructured)``, run on a copy."""
    from torch.nn.utils import prune

    sparsity, scope = check_sparsity(sparsity), check_scope(scope)
    twin = copy.deepcopy(model)
    names = list(prunable_weights(twin, include))
    targets = [(twin.get_submodule(n.rpartition(".")[0]), "weight") for n in names]
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)
    else:
        for module, attr in targets:
            prune.l1_unstructured(module, attr, amount=sparsity)
    return {n: m.weight_mask.bool() for n, (m, _) in zip(names, targets)}


# ---------------------------------------------------------------- keeping them applied
def check_masks(model: nn.Module, masks: dict) -> dict[str, nn.Parameter]:
    """The parameters ``masks`` name; clear errors for unknown names, wrong shapes or values."""
    if not isinstance(masks, dict) or not masks:
        raise TypeError("masks must be a non-empty dict {weight name: bool tensor}")
    params = dict(model.named_parameters())
    found = {}
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"mask {name!r} names no parameter of {type(model).__name__}; "
                             f"prunable weights: {list(prunable_weights(model))[:3]} ...")
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask {name!r} must be a tensor, got {type(mask).__name__}")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)} but the weight has shape "
                             f"{tuple(params[name].shape)}; a mask must match its weight exactly")
        if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask {name!r} must be bool (or 0/1), got values other than 0 and 1")
        found[name] = params[name]
    return found


class Pruning(Hook):
    """Masks applied to a model and kept applied while it trains (see :func:`apply_masks`).

    Three things keep a pruned weight at zero: its gradient is masked as autograd computes it (so
    AdamW's moments for it stay zero and a fresh optimizer never moves it), ``fit`` calls
    ``after_backward`` / ``after_step`` (gradients masked again, weights re-masked after each
    optimizer step, whatever the optimizer's state), and :meth:`apply` can be called by hand.
    :meth:`remove` drops the masks; the zeros stay, now ordinary weights.
    """

    def __init__(self, model: nn.Module, masks: dict):
        params = check_masks(model, masks)
        self.masks = {n: m.detach().bool() for n, m in masks.items()}
        self.params = params
        self.handles = [p.register_hook(self._grad_masker(n)) for n, p in params.items()
                        if p.requires_grad]
        self.apply()

    def _mask_on(self, name: str, like: torch.Tensor) -> torch.Tensor:
        mask = self.masks[name]
        if mask.device != like.device:          # CUDA path: the model moved after masking
            mask = self.masks[name] = mask.to(like.device)
        return mask

    def _grad_masker(self, name: str):
        return lambda grad: grad * self._mask_on(name, grad)

    @torch.no_grad()
    def apply(self) -> None:
        """Set every pruned weight to zero (again)."""
        for name, p in self.params.items():
            p.mul_(self._mask_on(name, p))

    def after_backward(self, model: nn.Module) -> None:
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.mul_(self._mask_on(name, p.grad))

    def after_step(self, model: nn.Module) -> None:
        self.apply()

    def remove(self) -> dict[str, torch.Tensor]:
        """Make the zeros permanent: apply once more, stop enforcing, return the masks."""
        self.apply()
        for handle in self.handles:
            handle.remove()
        self.handles = []
        return self.masks

    def __deepcopy__(self, memo):
        # A copied model (the harness times a twin) gets masks that point at its own weights.
        twin = Pruning.__new__(Pruning)
        memo[id(self)] = twin
        twin.masks = self.masks
        twin.params = {n: copy.deepcopy(p, memo) for n, p in self.params.items()}
        twin.handles = [p.register_hook(twin._grad_masker(n)) for n, p in twin.params.items()
                        if p.requires_grad and self.handles]
        return twin


def apply_masks(model: nn.Module, masks: dict) -> Pruning:
    """Zero the masked weights of ``model`` in place and keep them zero while it trains.

    masks: ``{parameter name: bool tensor of the weight's shape}`` (True = keep), as from
        :func:`magnitude_masks`. Returns the :class:`Pruning`; pass it to ``fit`` as a hook, and
        call ``.remove()`` to make the zeros permanent.
    """
    return Pruning(model, masks)


# ---------------------------------------------------------------- accounting
def sparsity_report(model: nn.Module, include=()):
    """A pandas DataFrame, one row per prunable weight and a last row ``overall``: ``zeros``,
    ``total``, ``sparsity`` (zeros / total), counted on the weights as they are now."""
    import pandas as pd

    rows = {n: {"zeros": int((w == 0).sum()), "total": w.numel()}
            for n, w in prunable_weights(model, include).items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.loc["overall"] = frame.sum()
    frame["sparsity"] = frame["zeros"] / frame["total"]
    return frame


def mask_sparsity(masks: dict) -> dict[str, float]:
    """``{name: fraction pruned}`` for every mask, plus ``"overall"`` (weighted by size)."""
    out = {n: 1 - m.float().mean().item() for n, m in masks.items()}
    pruned = sum(int((~m.bool()).sum()) for m in masks.values())
    out["overall"] = pruned / sum(m.numel() for m in masks.values())
    return out
