"""Pruning and compression (chapter 05): magnitude masks, structured pruning, sparse storage,
weight sharing, and the sparsity explorer.

- ``effkit.prune.masks``: ``magnitude_masks`` (layer/global), ``apply_masks`` (kept applied while
  training, removable), ``sparsity_report``, ``torch_masks`` (torch.nn.utils.prune, the reference);
- ``effkit.prune.structured``: head importance (Michel et al.), FFN neuron scores, head and neuron
  removal that really shrinks the matrices;
- ``effkit.prune.storage``: dense, CSR and bitmask bytes, measured; the break-even sparsity;
- ``effkit.prune.sharing``: k-means weight sharing (Deep Compression);
- ``effkit.prune.techniques``: the techniques ``magnitude-prune``, ``gradual-prune`` and
  ``structured-prune`` for :mod:`effkit.compare`;
- ``effkit.prune.sweeps``: evaluation sweeps over sparsity, cached;
- ``effkit.prune.sparsity_explorer``: the sparsity slider, its pure update and the book's figure.

Importing this package registers its techniques with :mod:`effkit.compare`.
"""
import importlib

from . import masks, sharing, storage, structured, techniques  # noqa: F401  (registers the techniques)
from .masks import apply_masks, magnitude_masks, prunable_weights, sparsity_report, torch_masks  # noqa: F401


def __getattr__(name):
    # These need plotly / the data; they load on first use (ek.prune.sparsity_explorer).
    if name in ("sparsity_explorer", "sweeps"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
