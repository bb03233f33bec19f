"""Parameter-efficient fine-tuning (chapter 04): LoRA from scratch, BitFit, bottleneck adapters,
head-only probes, QLoRA, and the rank explorer.

- ``effkit.peft.lora``: ``LoRALinear``, ``add_lora``, merge, save/load (techniques ``lora``, ``peft-lora``);
- ``effkit.peft.methods``: ``head_only``, ``bitfit``, ``add_adapters`` (techniques of the same names);
- ``effkit.peft.qlora``: LoRA on a frozen NF4 base (technique ``qlora``);
- ``effkit.peft.rank_explorer``: the rank slider, its sweep and its figures.

Importing this package registers its techniques with :mod:`effkit.compare`.
"""
import importlib

from . import lora, methods, qlora  # noqa: F401  (registers lora, peft-lora, head-only, bitfit, adapters, qlora)


def __getattr__(name):
    # The explorer needs plotly and the data; it loads on first use (ek.peft.rank_explorer).
    if name == "rank_explorer":
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
