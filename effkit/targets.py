"""Which modules a technique touches, and how it swaps one in: one rule for the whole kit.

LoRA, adapters, quantized layers, the PTQ grid and QLoRA all name modules the way the peft
library's ``target_modules`` does (``check_target_module_exists``):

- an exact name: ``"classifier"``;
- a dotted suffix: ``"query"`` matches ``bert.encoder.layer.0.attention.self.query``, and
  ``"attention.output.dense"`` matches that projection in every layer;
- a regular expression matching the *whole* name: ``r".*layer\\.[0-2]\\..*query"``.

``replace_module(model, name, new)`` is the one place a submodule is swapped for another.
"""
from __future__ import annotations

import re

from torch import nn


def name_matches(name: str, pattern: str) -> bool:
    """True when ``pattern`` is ``name``, a dotted suffix of it, or a regex matching all of it."""
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def matches_any(name: str, patterns) -> bool:
    """True when any of ``patterns`` (see :func:`as_patterns`) matches ``name``."""
    return any(name_matches(name, p) for p in as_patterns(patterns))


def inside_any(name: str, patterns) -> bool:
    """True when ``name`` or a module that contains it matches any of ``patterns``: a pattern
    naming a container (``"attention"``, ``"classifier"``) covers every layer inside it."""
    parts = name.split(".")
    return any(matches_any(".".join(parts[:k]), patterns) for k in range(1, len(parts) + 1))


def as_patterns(patterns, what: str = "target") -> list[str]:
    """A string or a list of strings, as a list; a TypeError names ``what`` otherwise."""
    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = list(patterns)
    if not all(isinstance(p, str) and p for p in patterns):
        raise TypeError(f"{what} must be a module-name string or a list of them, got {patterns!r}")
    return patterns


def linear_name_summary(model: nn.Module) -> list[str]:
    """The ``nn.Linear`` module names, layer numbers folded into ``*`` (``...layer.*.attention.self.query``)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return sorted(dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names))


def find_modules(model: nn.Module, patterns, what: str = "target") -> list[str]:
    """Names of the modules matched by ``patterns``, in model order, each once.

    Raises ValueError when a pattern matches nothing, listing the Linear names that do exist
    (``what`` names the argument in that message).
    """
    patterns = as_patterns(patterns, what)
    names = [n for n, _ in model.named_modules() if n]
    found = []
    for pattern in patterns:
        hits = [n for n in names if name_matches(n, pattern)]
        if not hits:
            raise ValueError(f"{what} {pattern!r} matches no module of {type(model).__name__}. "
                             f"Its nn.Linear modules are: {', '.join(linear_name_summary(model))}")
        found += [h for h in hits if h not in found]
    return found


def find_linears(model: nn.Module, patterns, what: str = "target") -> list[str]:
    """Like :func:`find_modules`, but every match must be an ``nn.Linear`` (TypeError naming the
    Linear layers inside a matched container otherwise)."""
    names = find_modules(model, patterns, what)
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            inside = [f"{name}.{n}" for n, m in module.named_modules() if n and isinstance(m, nn.Linear)]
            raise TypeError(f"{what} {name} is a {type(module).__name__}, not an nn.Linear. "
                            f"Linear layers inside it: {inside or 'none'}")
    return names


def set_trainable(model: nn.Module, trainable=()) -> list[str]:
    """Freeze every parameter, then unfreeze those of the modules named by ``trainable``.

    Returns the names of the unfrozen modules.
    """
    names = find_modules(model, trainable, "trainable") if as_patterns(trainable, "trainable") else []
    model.requires_grad_(False)
    for name in names:
        model.get_submodule(name).requires_grad_(True)
    return names


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where the submodule ``name`` is; returns the module it replaced."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old
