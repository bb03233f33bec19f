"""NF4 (4-bit NormalFloat, QLoRA) from scratch, with double quantization of the block constants.

Pretrained weights look roughly normal. NF4 puts its 16 levels at quantiles of N(0, 1), so each
level is used about equally often, then scales every block of ``blocksize`` weights by its
absolute maximum (absmax) so the block fits in [-1, 1]::

    code_i = argmin_j |w_i / absmax_block - level_j|        w_hat_i = level[code_i] * absmax_block

Storage: 4 bits per weight (two codes per byte) plus one fp32 absmax per block, 32/64 = 0.5 extra
bits per weight at blocksize 64. Double quantization stores those absmax values themselves in
8 bits (blocks of 256, minus their mean), about 8/64 + 32/(64*256) = 0.127 extra bits.

Checked against ``bitsandbytes.functional.quantize_4bit(quant_type="nf4")`` in
tests/test_quant_libs.py: same levels, same codes, same packing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .affine import (QuantizedTensor, StoredTensors, check_float_tensor, dequantize, pack_bits,
                    quantize, unpack_bits)

NF4_BITS = 4
ABSMAX_BLOCKSIZE = 256          # QLoRA's block size for the second quantization
# QLoRA stops the quantiles short of 0 and 1 (where the normal quantile is infinite): halfway
# between the outermost bin centres of a 16-bin and a 15-bin grid, 1 - (1/32 + 1/30) / 2.
NF4_OFFSET = 1 - (1 / (2 * 16) + 1 / (2 * 15)) / 2          # 0.9677083...


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels, sorted, float32, from -1.0 through 0.0 to 1.0.

    Asymmetric on purpose: 8 positive levels (quantiles of 9 points from 0.5 to ``offset``),
    7 negative ones (8 points), and an exact zero, so that 0 is representable and all 16 codes
    are used. Divided by the largest level, so the table spans exactly [-1, 1].
    """
    if not 0.5 < offset < 1:
        raise ValueError(f"offset is a probability in (0.5, 1), got {offset}")
    # float64: the quantile function is steep near the tails, and we compare to 1e-6 later.
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.max()).float()


def nearest_level(scaled: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Index (int32) of the nearest level for every value of ``scaled`` (already in [-1, 1]).

    The nearest level is the interval between consecutive midpoints the value falls in; a value
    exactly on a midpoint goes to the lower level, as in bitsandbytes.
    """
    midpoints = (levels[:-1] + levels[1:]) / 2
    return torch.bucketize(scaled, midpoints.to(scaled.device), out_int32=True)


@dataclass
class NF4Tensor(StoredTensors):
    """A weight stored as packed NF4 codes plus its block constants.

    codes: uint8, two 4-bit codes per byte (first code in the high nibble).
    absmax: float32 ``(n_blocks,)``, or None with double quantization, where the constants are
    ``absmax_codes`` (int8), ``absmax_scale`` (float32, one per 256 constants) and
    ``absmax_offset`` (float32 scalar, their mean).
    """
    codes: torch.Tensor
    absmax: torch.Tensor | None
    absmax_codes: torch.Tensor | None
    absmax_scale: torch.Tensor | None
    absmax_offset: torch.Tensor | None
    blocksize: int
    shape: tuple
    dtype: torch.dtype

    tensor_fields = ("codes", "absmax", "absmax_codes", "absmax_scale", "absmax_offset")

    @property
    def n_blocks(self) -> int:
        return self.numel // self.blocksize

    @property
    def double_quant(self) -> bool:
        return self.absmax is None

    def constant_bits_per_parameter(self) -> float:
        """Bits per weight spent on block constants (0.5 for fp32 absmax at blocksize 64)."""
        code_bytes = self.codes.numel() * self.codes.element_size()
        return 8 * (self.stored_bytes() - code_bytes) / self.numel

    def block_absmax(self) -> torch.Tensor:
        """The per-block absmax as float32 ``(n_blocks,)``, dequantized if double-quantized."""
        if self.absmax is not None:
            return self.absmax
        q = QuantizedTensor(self.absmax_codes, self.absmax_scale, None, 8, "symmetric", "group",
                            ABSMAX_BLOCKSIZE, (self.absmax_codes.numel(),), torch.float32)
        return dequantize(q)[: self.n_blocks] + self.absmax_offset

    def int_codes(self) -> torch.Tensor:
        """Level indices in [0, 15], int32, shape ``(n_blocks, blocksize)``."""
        return unpack_bits(self.codes, NF4_BITS, self.numel).reshape(-1, self.blocksize)

    def dequantize(self) -> torch.Tensor:
        return dequantize_nf4(self)


def check_blocksize(w: torch.Tensor, blocksize) -> int:
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 2 or blocksize % 2:
        raise ValueError(f"blocksize must be an even positive int (QLoRA uses 64), got {blocksize!r}")
    if w.numel() % blocksize:
        raise ValueError(f"NF4 needs the tensor size to be a multiple of blocksize={blocksize}: "
                         f"shape {tuple(w.shape)} has {w.numel()} values "
                         f"({w.numel() % blocksize} left over); choose a blocksize that divides it")
    return blocksize


def double_quantize(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize the fp32 block constants to 8 bits in blocks of 256, as QLoRA does.

    Returns ``(codes int8, scale float32 per 256, offset float32 scalar)``. The mean is removed
    first because absmax values are all positive: centred, they use both halves of int8. It is
    the symmetric per-group quantizer of ``effkit.quant`` applied to the constants (bitsandbytes
    uses its 8-bit dynamic map here instead, see tests/test_quant_libs.py).
    """
    offset = absmax.mean()
    centred = absmax - offset
    centred = torch.nn.functional.pad(centred, (0, (-centred.numel()) % ABSMAX_BLOCKSIZE))
    q = quantize(centred, 8, "symmetric", "group", ABSMAX_BLOCKSIZE)
    return q.codes, q.scale, offset


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = False) -> NF4Tensor:
    """Blockwise NF4: absmax per ``blocksize`` consecutive values (flattened), nearest NF4 level,
    two codes per byte. ``w.numel()`` must be a multiple of ``blocksize``."""
    check_float_tensor(w)
    check_blocksize(w, blocksize)
    blocks = w.detach().float().reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    # Multiply by the reciprocal (as bitsandbytes does) so codes agree bit for bit; clamp guards
    # the rounding of x * (1/x) a hair above 1. An all-zero block maps to level 0.
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1)
    idx = nearest_level(scaled.reshape(-1), nf4_levels().to(w.device))
    codes = pack_bits(idx, NF4_BITS)
    if double_quant:
        a_codes, a_scale, a_offset = double_quantize(absmax)
        return NF4Tensor(codes, None, a_codes, a_scale, a_offset, blocksize, tuple(w.shape), w.dtype)
    return NF4Tensor(codes, absmax, None, None, None, blocksize, tuple(w.shape), w.dtype)


def dequantize_nf4(t: NF4Tensor) -> torch.Tensor:
    """``level[code] * absmax`` block by block, in the original shape and dtype."""
    if not isinstance(t, NF4Tensor):
        raise TypeError(f"dequantize_nf4 takes an NF4Tensor (from quantize_nf4), got {type(t).__name__}")
    levels = nf4_levels().to(t.codes.device)
    w = levels[t.int_codes()] * t.block_absmax()[:, None]
    return w.reshape(t.shape).to(t.dtype)
