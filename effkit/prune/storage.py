"""How many bytes a sparse weight really takes: dense, CSR and bitmask, measured off the tensors.

- **dense**: every value, zeros included: ``n`` values.
- **CSR** (compressed sparse row, ``torch.Tensor.to_sparse_csr``): the nonzero values, one column
  index per value, and one row pointer per row plus one. torch stores the indices as int64;
  ``"csr-int32"`` is the same layout with int32 indices (what most sparse kernels use).
- **bitmask**: one bit per position (1 = kept, ``numpy.packbits``) plus the nonzero values.

Every count here is read off real tensors (``nbytes``); :func:`break_even_sparsity` is the
formula the chapter derives, checked against :func:`measured_break_even`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

FORMATS = ("dense", "csr", "csr-int32", "bitmask")


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def csr_tensors(weight: torch.Tensor, index_dtype=torch.int64) -> dict[str, torch.Tensor]:
    """``{"crow_indices", "col_indices", "values"}`` of ``weight`` in CSR (from torch), with the
    indices cast to ``index_dtype``."""
    with warnings.catch_warnings():   # torch calls its sparse CSR support beta; it is what we measure
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = weight.detach().to_sparse_csr()
    return {"crow_indices": csr.crow_indices().to(index_dtype),
            "col_indices": csr.col_indices().to(index_dtype), "values": csr.values()}


def bitmask_tensors(weight: torch.Tensor) -> dict:
    """``{"bits": packed uint8 array, one bit per position, "values": the nonzeros}``."""
    w = weight.detach()
    keep = (w != 0).reshape(-1).cpu().numpy()
    return {"bits": torch.from_numpy(np.packbits(keep)), "values": w.reshape(-1)[w.reshape(-1) != 0]}


def stored_bytes(weight: torch.Tensor, fmt: str) -> int:
    """Bytes ``weight`` takes in ``fmt`` (one of :data:`FORMATS`), measured on the stored tensors."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if weight.ndim != 2:
        raise ValueError(f"storage formats here are for 2-D weights (out, in), got shape {tuple(weight.shape)}")
    if fmt == "dense":
        return _nbytes(weight)
    if fmt == "bitmask":
        return _nbytes(*bitmask_tensors(weight).values())
    index = torch.int32 if fmt == "csr-int32" else torch.int64
    return _nbytes(*csr_tensors(weight, index).values())


def all_bytes(weight: torch.Tensor) -> dict[str, int]:
    """``{format: bytes}`` for every format of :data:`FORMATS`, from one CSR conversion (the same
    tensors :func:`stored_bytes` measures, computed once)."""
    csr = csr_tensors(weight)
    bits = np.packbits((weight.detach() != 0).reshape(-1).cpu().numpy())
    index64 = _nbytes(csr["crow_indices"], csr["col_indices"])
    return {"dense": _nbytes(weight), "csr": index64 + _nbytes(csr["values"]),
            "csr-int32": index64 // 2 + _nbytes(csr["values"]),   # the same indices as int32
            "bitmask": bits.nbytes + _nbytes(csr["values"])}


def model_bytes(weights, formats=FORMATS) -> dict[str, int]:
    """``{format: total bytes}`` of several weights (a dict of them, or a list)."""
    weights = list(weights.values()) if isinstance(weights, dict) else list(weights)
    totals = {fmt: 0 for fmt in formats}
    for w in weights:
        sizes = all_bytes(w)
        for fmt in formats:
            totals[fmt] += sizes[fmt]
    return totals


def break_even_sparsity(fmt: str, value_bytes: int = 4, index_bytes: int = 8) -> float:
    """The sparsity above which ``fmt`` takes fewer bytes than dense, for a large matrix.

    CSR: ``(value + index) (1 - s) n`` against ``value n``, so ``s* = index / (value + index)``
    (the ``rows + 1`` row pointers add ``index (rows + 1) / ((value + index) n)``, which vanishes
    for wide rows). Bitmask: ``n / 8 + value (1 - s) n`` against ``value n``, so
    ``s* = 1 / (8 value)``.
    """
    if fmt == "bitmask":
        return 1 / (8 * value_bytes)
    if fmt in ("csr", "csr-int32"):
        return index_bytes / (value_bytes + index_bytes)
    raise ValueError(f"fmt must be 'csr', 'csr-int32' or 'bitmask', got {fmt!r}")


def measured_break_even(weight: torch.Tensor, fmt: str, sparsities) -> float | None:
    """The smallest of ``sparsities`` at which ``weight``, magnitude-pruned to it, takes fewer
    bytes in ``fmt`` than dense (None if none does)."""
    dense = stored_bytes(weight, "dense")
    w = weight.detach()
    order = w.abs().reshape(-1).argsort()
    for s in sorted(sparsities):
        pruned = w.clone().reshape(-1)
        pruned[order[: round(s * w.numel())]] = 0
        if stored_bytes(pruned.reshape(w.shape), fmt) < dense:
            return float(s)
    return None
