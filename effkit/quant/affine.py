"""Uniform affine quantization from scratch: integer codes, scales, zero points, real packing.

A float weight ``w`` becomes small integers ``q`` plus a float ``scale`` (and, for the asymmetric
scheme, an integer ``zero`` point)::

    q = clamp(round(w / scale) + zero, qmin, qmax)        w_hat = (q - zero) * scale

- ``symmetric``  (absmax): zero = 0, scale = max|w| / qmax, codes in [-(2^(b-1)-1), 2^(b-1)-1].
  The range is symmetric on purpose: -2^(b-1) is left unused so +w and -w round alike.
- ``asymmetric`` (zero point): the range [min(w, 0), max(w, 0)] maps onto [0, 2^b - 1], so a
  one-sided tensor (say after a ReLU) uses every code. Zero stays exactly representable.

One scale per ``tensor``, per output ``channel`` (row of a Linear weight, shape ``(out, in)``)
or per ``group`` of ``group_size`` consecutive values along a row. Every granularity is the same
computation on a 2-D view whose rows share a scale: ``(1, N)``, ``(out, N/out)`` or
``(N/group_size, group_size)``.

The codes are really packed: 8-bit codes in int8 (symmetric) or uint8 (asymmetric), and fewer
bits densely into uint8 (two 4-bit codes per byte, four 2-bit codes, 3 bits across byte borders).
``QuantizedTensor.stored_bytes()`` adds up the bytes of the tensors it holds, nothing else.

Bit packing itself (``pack_bits`` / ``unpack_bits``) is core code in ``effkit.bitpack``; the NF4
data type lives in ``effkit.quant.nf4``, quantized layers and LLM.int8() in ``effkit.quant.layers``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..bitpack import check_bits, pack_bits, unpack_bits  # noqa: F401  (re-exported: ek.quant.pack_bits)

SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("tensor", "channel", "group")


# ---------------------------------------------------------------- checking inputs
def check_float_tensor(w, what: str = "w") -> torch.Tensor:
    """Quantizers take floating-point tensors (fp32, fp16, bf16 ...), nothing else."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor (float32, float16, bfloat16), "
                        f"got dtype {w.dtype}: it is already quantized or holds integers")
    if w.numel() == 0:
        raise ValueError(f"{what} is empty: there is nothing to quantize")
    return w


def integer_range(bits: int, scheme: str = "symmetric") -> tuple[int, int]:
    """``(qmin, qmax)`` of the integer codes: symmetric ``(-(2^(b-1)-1), 2^(b-1)-1)``,
    asymmetric ``(0, 2^b - 1)``. For 8 bits: (-127, 127) and (0, 255)."""
    check_bits(bits)
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    if scheme == "asymmetric":
        return 0, 2 ** bits - 1
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


# ---------------------------------------------------------------- the arithmetic
def rows_view(w: torch.Tensor, granularity: str, group_size: int | None) -> torch.Tensor:
    """A float32 2-D view of ``w`` whose rows each get one scale (see the module docstring)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if granularity != "group" and group_size is not None:
        raise ValueError(f"group_size is only used with granularity='group', got "
                         f"group_size={group_size} with granularity={granularity!r}")
    w = w.detach().float()
    if granularity == "tensor":
        return w.reshape(1, -1)
    if granularity == "channel":
        if w.dim() < 2:
            raise ValueError(f"granularity='channel' needs a weight with output channels as its "
                             f"first dim (at least 2-D), got shape {tuple(w.shape)}")
        return w.reshape(w.shape[0], -1)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"granularity='group' needs group_size, a positive int, got {group_size!r}")
    row = w.shape[-1]
    if row % group_size:
        raise ValueError(f"group_size={group_size} does not divide the row length {row} "
                         f"(shape {tuple(w.shape)}); use a divisor of {row}")
    return w.reshape(-1, group_size)


def scale_and_zero(rows: torch.Tensor, bits: int, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``scale`` (float32) and integer ``zero`` (int32) per row of ``rows`` (shape ``(R, C)``).

    Returns two tensors of shape ``(R,)``. An all-zero row gets scale 1 so it quantizes to zero
    instead of dividing by zero.
    """
    qmin, qmax = integer_range(bits, scheme)
    if scheme == "symmetric":
        absmax = rows.abs().amax(dim=1)
        scale = absmax / qmax
        zero = torch.zeros_like(scale, dtype=torch.int32)
    else:
        # Stretch the range to include 0, so that w = 0 (padding, ReLU zeros) stays exact.
        lo = rows.amin(dim=1).clamp(max=0)
        hi = rows.amax(dim=1).clamp(min=0)
        scale = (hi - lo) / (qmax - qmin)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, zero


def quantize_rows(rows, scale, zero, bits: int, scheme: str) -> torch.Tensor:
    """Integer codes (int32, same shape as ``rows``): round to nearest, shift by zero, clamp.

    The clamp matters whenever the scale was not fitted to these very values (a scale chosen
    from other data, clipping, or a rounded zero point pushing an edge value one step out).
    """
    qmin, qmax = integer_range(bits, scheme)
    q = torch.round(rows / scale[:, None]) + zero[:, None]
    return q.clamp(qmin, qmax).to(torch.int32)


def dequantize_rows(codes, scale, zero) -> torch.Tensor:
    """``(q - zero) * scale`` in float32, row by row."""
    return (codes.float() - zero[:, None].float()) * scale[:, None]


# ---------------------------------------------------------------- the quantized tensor
class StoredTensors:
    """What every quantized format shares: its bytes are measured from the tensors it holds.

    Subclasses name the tensor attributes in ``tensor_fields`` and keep the original ``shape``.
    """
    tensor_fields: tuple = ()
    shape: tuple

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors that hold the data (what is stored, moved between devices, saved)."""
        return {k: getattr(self, k) for k in self.tensor_fields if getattr(self, k) is not None}

    def stored_bytes(self) -> int:
        """Bytes of codes and constants, measured from the tensors themselves."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def bits_per_parameter(self) -> float:
        return 8 * self.stored_bytes() / self.numel


@dataclass
class QuantizedTensor(StoredTensors):
    """A weight stored as packed integer codes plus one scale (and zero point) per row of its view.

    codes: int8 (8-bit symmetric), uint8 (8-bit asymmetric) or packed uint8 bytes (fewer bits).
    scale: float32, shape ``(R,)``; zero_point: uint8 ``(R,)`` for asymmetric, None for symmetric.
    shape / dtype: of the original tensor, restored by :func:`dequantize`.
    """
    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bits: int
    scheme: str
    granularity: str
    group_size: int | None
    shape: tuple
    dtype: torch.dtype

    tensor_fields = ("codes", "scale", "zero_point")

    def int_codes(self) -> torch.Tensor:
        """The unpacked integer codes, int32, shape ``(R, C)`` of the row view."""
        rows = self.scale.numel()
        if self.bits == 8:
            q = self.codes.to(torch.int32)
        else:
            qmin, _ = integer_range(self.bits, self.scheme)
            q = unpack_bits(self.codes, self.bits, self.numel) + qmin   # stored shifted to >= 0
        return q.reshape(rows, -1)

    def zero(self) -> torch.Tensor:
        if self.zero_point is None:
            return torch.zeros_like(self.scale, dtype=torch.int32)
        return self.zero_point.to(torch.int32)

    def dequantize(self) -> torch.Tensor:
        return dequantize(self)


def quantize(w: torch.Tensor, bits: int, scheme: str = "symmetric", granularity: str = "tensor",
             group_size: int | None = None) -> QuantizedTensor:
    """Quantize a float tensor to ``bits`` in [2, 8]; returns a :class:`QuantizedTensor`.

    w: any floating-point tensor; for ``channel`` its first dim is the output channel (a Linear
    weight ``(out, in)``); for ``group`` the last dim must be divisible by ``group_size``.
    """
    check_float_tensor(w)
    check_bits(bits)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    rows = rows_view(w, granularity, group_size)
    scale, zero = scale_and_zero(rows, bits, scheme)
    q = quantize_rows(rows, scale, zero, bits, scheme)
    qmin, _ = integer_range(bits, scheme)
    if bits == 8:
        codes = q.to(torch.int8 if scheme == "symmetric" else torch.uint8).reshape(-1)
    else:
        codes = pack_bits(q - qmin, bits)      # shift to [0, 2^b - 1] so codes are unsigned
    zero_point = zero.to(torch.uint8) if scheme == "asymmetric" else None
    return QuantizedTensor(codes, scale, zero_point, bits, scheme, granularity, group_size,
                           tuple(w.shape), w.dtype)


def dequantize(q: QuantizedTensor) -> torch.Tensor:
    """The float tensor ``(codes - zero) * scale``, in the original shape and dtype."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"dequantize takes a QuantizedTensor (from quantize), got {type(q).__name__}")
    w = dequantize_rows(q.int_codes(), q.scale, q.zero())
    return w.reshape(q.shape).to(q.dtype)


def fake_quantize(w: torch.Tensor, bits: int, scheme: str = "symmetric",
                  granularity: str = "tensor", group_size: int | None = None) -> torch.Tensor:
    """``dequantize(quantize(w, ...))``: what the model computes with after quantization."""
    return dequantize(quantize(w, bits, scheme, granularity, group_size))


def analytic_bytes(numel: int, bits: int, n_scales: int, scale_bytes: int = 4,
                   zero_bytes: int = 0) -> float:
    """The floor a packing can reach: ``numel * bits / 8`` plus per-scale overhead."""
    return numel * bits / 8 + n_scales * (scale_bytes + zero_bytes)
