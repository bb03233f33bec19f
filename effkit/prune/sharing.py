"""Weight sharing in the style of Deep Compression (Han et al., 2016): each layer's weights are
clustered by k-means into ``2^b`` centroids; the layer is stored as a codebook of ``2^b`` floats
plus one ``b``-bit index per weight.

With pruning first ("prune + share"), the zeros stay zero: only the kept weights are clustered,
and the layer is stored as a bitmask of the kept positions, the codebook and one index per kept
weight (Deep Compression stores relative positions and Huffman-codes them; the bitmask is the
simpler choice measured in this chapter).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..bitpack import check_bits, pack_bits


def kmeans_1d(values: torch.Tensor, k: int, iterations: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on a 1-D tensor: ``(centroids (k,) sorted, codes (n,) int64)``.

    Centroids start evenly spaced between the minimum and the maximum (Deep Compression's
    "linear" initialisation, which keeps centroids for the rare large weights). In 1-D the nearest
    centroid is found by ``bucketize`` on the midpoints between sorted centroids. An empty
    cluster keeps its old centroid. Stops after ``iterations`` or when no centroid moves.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    x = values.detach().reshape(-1).float()
    if x.numel() == 0:
        raise ValueError("cannot cluster an empty tensor")
    centroids = torch.linspace(float(x.min()), float(x.max()), k)
    still = 1e-6 * float(x.max() - x.min())      # a move this small changes no assignment that matters
    for _ in range(iterations):
        codes = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros(k).index_add_(0, codes, x)
        counts = torch.bincount(codes, minlength=k).float()
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        moved, _ = moved.sort()
        done = float((moved - centroids).abs().max()) <= still
        centroids = moved
        if done:
            break
    codes = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
    return centroids, codes


def share_weight(weight: torch.Tensor, bits: int, keep_zeros: bool = False) -> dict:
    """Cluster ``weight`` into ``2^bits`` shared values.

    keep_zeros: cluster only the nonzero weights and leave the zeros at zero (for a pruned layer).
    Returns ``{"weight": the shared weight (same shape), "codebook": (2^bits,) float32,
    "codes": int64 codes of the clustered weights, "mask": bool mask of the clustered positions
    or None, "bytes": measured bytes of codebook + packed codes (+ bitmask when keep_zeros)}``.
    """
    check_bits(bits)
    w = weight.detach().float()
    mask = (w != 0) if keep_zeros else None
    values = w[mask] if keep_zeros else w.reshape(-1)
    codebook, codes = kmeans_1d(values, 2 ** bits)
    shared = torch.zeros_like(w)
    if keep_zeros:
        shared[mask] = codebook[codes]
    else:
        shared = codebook[codes].reshape(w.shape)
    stored = [codebook, pack_bits(codes, bits)]
    if keep_zeros:
        stored.append(torch.from_numpy(np.packbits(mask.reshape(-1).cpu().numpy())))
    return {"weight": shared.to(weight.dtype), "codebook": codebook, "codes": codes, "mask": mask,
            "bytes": sum(t.numel() * t.element_size() for t in stored)}


@torch.no_grad()
def share_weights(model, names, bits: int, keep_zeros: bool = False) -> dict:
    """Replace each named weight of ``model`` by its shared version, in place.

    Returns ``{"bytes": stored bytes of those weights, "fp32_bytes": their dense fp32 bytes,
    "distinct": the most distinct values in any one of them}``.
    """
    params = dict(model.named_parameters())
    total, dense, distinct = 0, 0, 0
    for name in names:
        p = params[name]
        out = share_weight(p, bits, keep_zeros)
        p.copy_(out["weight"])
        total += out["bytes"]
        dense += 4 * p.numel()
        distinct = max(distinct, int(torch.unique(p).numel()))
    return {"bytes": total, "fp32_bytes": dense, "distinct": distinct}


def index_bits_needed(distinct: int) -> int:
    """Bits an index needs to tell ``distinct`` shared values apart."""
    return max(1, math.ceil(math.log2(max(distinct, 2))))
