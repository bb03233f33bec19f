"""Pruning as registered techniques of the harness (:mod:`effkit.compare`), so a pruned and
fine-tuned model is one more comparison row, cached under a key named by the technique.

- ``"magnitude-prune"``: one-shot magnitude pruning, then training with the masks kept applied;
- ``"gradual-prune"``: the sparsity grows in stages while training (Zhu & Gupta's cubic schedule);
- ``"structured-prune"``: heads and FFN neurons removed by a plan, then ordinary training.

Each takes ``start``, a name for the model being pruned (for instance the cache key of chapter
02's baseline): the harness's cache key holds the technique's options, and the same options on
another starting model must not load this run.
"""
from __future__ import annotations

from torch import nn

from ..compare import register
from ..train import Hook
from .masks import Pruning, apply_masks, check_scope, check_sparsity, magnitude_masks
from .structured import remove_heads, remove_neurons

HOOK_ATTRIBUTE = "effkit_pruning"   # where a prepared model keeps its mask hook for fit


def _check_start(start) -> None:
    if not isinstance(start, str) or not start:
        raise ValueError("start must name the model being pruned (e.g. the baseline's cache key), "
                         f"so that its runs are cached apart from other models'; got {start!r}")


def pruning_hooks(model: nn.Module, **options) -> list[Hook]:
    """The mask hook a pruning technique's ``prepare`` left on ``model``."""
    return [getattr(model, HOOK_ATTRIBUTE)]


@register("magnitude-prune", hooks=pruning_hooks)
def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "global", start: str = "") -> nn.Module:
    """Prune ``model`` once to ``sparsity`` (magnitude, ``scope``); every weight trains, the masks
    stay applied (:class:`~effkit.prune.masks.Pruning` is passed to ``fit``)."""
    _check_start(start)
    model.requires_grad_(True)
    setattr(model, HOOK_ATTRIBUTE, apply_masks(model, magnitude_masks(model, sparsity, scope)))
    return model


def cubic_schedule(final: float, stages: int) -> list[float]:
    """Zhu & Gupta (2017): ``s_k = final * (1 - (1 - k / stages)^3)``, k = 1 .. stages: most of
    the pruning early, while the network can still recover, the last few percent late."""
    if not isinstance(stages, int) or stages < 1:
        raise ValueError(f"stages must be an int >= 1, got {stages!r}")
    return [final * (1 - (1 - k / stages) ** 3) for k in range(1, stages + 1)]


class GradualPruning(Hook):
    """Raises the sparsity in ``stages`` equal steps of training: stage ``k`` starts at step
    ``k * steps // stages`` and prunes the current weights by magnitude to ``schedule[k]``."""

    def __init__(self, model: nn.Module, sparsity: float, scope: str, stages: int, steps: int):
        if not isinstance(steps, int) or steps < stages:
            raise ValueError(f"steps must be an int >= stages ({stages}), got {steps!r}")
        self.model, self.scope = model, check_scope(scope)
        self.schedule = cubic_schedule(check_sparsity(sparsity), stages)
        self.starts = [k * steps // stages for k in range(stages)]
        self.step = 0
        self.pruning = apply_masks(model, magnitude_masks(model, self.schedule[0], scope))

    def after_backward(self, model: nn.Module) -> None:
        self.pruning.after_backward(model)

    def after_step(self, model: nn.Module) -> None:
        self.step += 1
        if self.step in self.starts:
            stage = self.starts.index(self.step)
            self.pruning.masks = magnitude_masks(model, self.schedule[stage], self.scope)
        self.pruning.apply()


@register("gradual-prune", hooks=pruning_hooks)
def gradual_prune(model: nn.Module, sparsity: float, scope: str = "global", stages: int = 4,
                  steps: int = 100, start: str = "") -> nn.Module:
    """Prune while training: ``stages`` magnitude prunings on the cubic schedule to ``sparsity``,
    spread evenly over ``steps`` (the recipe's ``max_steps``); the last stage leaves
    ``steps / stages`` steps to recover."""
    _check_start(start)
    model.requires_grad_(True)
    setattr(model, HOOK_ATTRIBUTE, GradualPruning(model, sparsity, scope, stages, steps))
    return model


def _per_layer(plan) -> dict[int, list[int]]:
    if not isinstance(plan, (list, tuple)):
        raise TypeError(f"a removal plan is a list with one list of indices per layer, got {type(plan).__name__}")
    return {i: list(idx) for i, idx in enumerate(plan) if len(idx)}


def structured_hooks(model: nn.Module, **options) -> list[Hook]:
    return []


@register("structured-prune", hooks=structured_hooks)
def structured_prune(model: nn.Module, heads=(), neurons=(), start: str = "") -> nn.Module:
    """Remove ``heads`` and FFN ``neurons`` (one list of indices per layer, e.g. from
    :func:`~effkit.prune.structured.prune_structured`), then train every remaining weight."""
    _check_start(start)
    remove_heads(model, _per_layer(heads))
    remove_neurons(model, _per_layer(neurons))
    return model.requires_grad_(True)


__all__ = ["GradualPruning", "Pruning", "cubic_schedule", "gradual_prune", "magnitude_prune",
           "structured_prune"]
