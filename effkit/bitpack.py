"""Integers of a few bits, packed densely into bytes: what "4-bit" means in storage.

``pack_bits(values, bits)`` writes unsigned codes in [0, 2^bits) most significant bits first;
``n`` codes take ``ceil(n * bits / 8)`` bytes. Chapter 00 uses it to measure int4 model sizes,
chapter 06's quantizers to store their codes.
"""
from __future__ import annotations

import torch

MIN_BITS, MAX_BITS = 2, 8


def check_bits(bits) -> int:
    """``bits`` must be a Python int in [2, 8]; anything else is a clear ValueError/TypeError."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r} "
                        f"({type(bits).__name__})")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits}")
    return bits


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned integers in [0, 2^bits) densely, most significant bits first, into uint8.

    ``n`` values take ``ceil(n * bits / 8)`` bytes. 2 and 4 bits fill whole bytes (four or two
    codes, the first in the high bits: the layout bitsandbytes uses for 4 bits); 3, 5, 6 and 7
    bits are written as one bit stream, so a code may straddle two bytes.
    """
    check_bits(bits)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"pack_bits needs an integer tensor of codes, got dtype {values.dtype}")
    v = values.reshape(-1).to(torch.int32)
    if v.numel() and (v.min() < 0 or v.max() >= 2 ** bits):
        raise ValueError(f"pack_bits needs values in [0, {2 ** bits - 1}] for {bits} bits, "
                         f"got range [{int(v.min())}, {int(v.max())}]")
    if bits == 8:
        return v.to(torch.uint8)
    if 8 % bits:                                   # 3, 5, 6, 7: expand to bits, regroup by 8
        v = ((v[:, None] >> _msb_first(bits, v.device)) & 1).reshape(-1)
        bits = 1
    per_byte = 8 // bits
    v = torch.nn.functional.pad(v, (0, (-v.numel()) % per_byte)).reshape(-1, per_byte)
    return (v << _msb_first(8, v.device)[bits - 1::bits]).sum(dim=1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` codes as int32 values in [0, 2^bits)."""
    check_bits(bits)
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed codes must be uint8, got {packed.dtype}")
    if not 0 <= count <= packed.numel() * 8 // bits:
        raise ValueError(f"count must be in [0, {packed.numel() * 8 // bits}] for {packed.numel()} bytes "
                         f"of {bits}-bit codes, got {count}")
    p = packed.reshape(-1).to(torch.int32)
    if bits == 8:
        return p[:count]
    if 8 % bits:
        stream = ((p[:, None] >> _msb_first(8, p.device)) & 1).reshape(-1)[: count * bits]
        return (stream.reshape(count, bits) << _msb_first(bits, p.device)).sum(dim=1)
    shifts = _msb_first(8, p.device)[bits - 1::bits]        # 4 bits: [4, 0]; 2 bits: [6, 4, 2, 0]
    return ((p[:, None] >> shifts) & (2 ** bits - 1)).reshape(-1)[:count]


def _msb_first(bits: int, device) -> torch.Tensor:
    """Bit positions ``[bits-1, ..., 1, 0]``: the order codes are written in."""
    return torch.arange(bits - 1, -1, -1, device=device, dtype=torch.int32)
