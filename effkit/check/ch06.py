"""Checkers for assignment 06: uniform affine quantization and blockwise NF4.

Each checker runs the student's function on small fixed tensors, compares with effkit.quant /
effkit.nf4, and when the answer is wrong tries the classic mistakes (an off-by-one integer
range, a missing clamp, the zero point with the wrong sign, one scale for the whole tensor,
NF4 levels left in standard deviations ...) to say which one it was.

Conventions (the assignment states them): ``q = clamp(round(w / scale) + zero, qmin, qmax)``,
``w_hat = (q - zero) * scale``; symmetric scale = max|w| / qmax with zero 0; asymmetric
scale = (max(w, 0) - min(w, 0)) / (qmax - qmin) with zero = qmin - round(min(w, 0) / scale).
"""
from __future__ import annotations

import torch

from ..quant import nf4 as _nf4
from ..quant import affine as _quant
from ._core import fail, passed

SCHEMES = ("symmetric", "asymmetric")


def _weights() -> torch.Tensor:
    """A small (6, 16) 'weight': rows of very different ranges, one row all positive."""
    g = torch.Generator().manual_seed(6)
    w = torch.randn(6, 16, generator=g) * torch.tensor([0.02, 0.1, 0.5, 1.0, 3.0, 0.3])[:, None]
    w[5] = w[5].abs() + 0.05                        # one-sided, like a ReLU output
    return w


def _as_tensor(value, fn_name: str, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value).detach().reshape(-1).double()
    except (TypeError, ValueError, RuntimeError):
        fail(f"{fn_name} returned {type(value).__name__} for {what}; expected a tensor (or number)",
             "return torch tensors, e.g. scale of shape (rows, 1)")


# ---------------------------------------------------------------- task 1: integer_range
def check_integer_range(integer_range) -> None:
    """``integer_range(bits, scheme) -> (qmin, qmax)``."""
    for bits in (2, 3, 4, 8):
        for scheme in SCHEMES:
            out = integer_range(bits, scheme)
            try:
                got = tuple(int(v) for v in out)
            except (TypeError, ValueError):
                fail(f"integer_range({bits}, {scheme!r}) returned {out!r}; expected two integers "
                     "(qmin, qmax)")
            want = _quant.integer_range(bits, scheme)
            if got == want:
                continue
            case = f"integer_range({bits}, {scheme!r}) = {got}, expected {want}"
            if len(got) != 2:
                fail(case, "return a pair (qmin, qmax)")
            if scheme == "symmetric" and got == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1):
                fail(f"off-by-one in the integer range: {case}",
                     f"symmetric absmax quantization leaves -2^(b-1) = {-(2 ** (bits - 1))} unused so "
                     "that +w and -w get codes of the same size: use -(2^(b-1) - 1)")
            if abs(got[0] - want[0]) == 1 or abs(got[1] - want[1]) == 1:
                fail(f"off-by-one in the integer range: {case}",
                     f"b bits give 2^b codes; for {scheme} the largest is "
                     + ("2^(b-1) - 1" if scheme == "symmetric" else "2^b - 1") + ", the smallest "
                     + ("-(2^(b-1) - 1)" if scheme == "symmetric" else "0"))
            fail(case, "symmetric: (-(2^(b-1) - 1), 2^(b-1) - 1); asymmetric: (0, 2^b - 1)")
    passed("integer_range: symmetric (-(2^(b-1)-1), 2^(b-1)-1) and asymmetric (0, 2^b-1) "
           "for 2, 3, 4 and 8 bits")


# ---------------------------------------------------------------- task 2: scale_and_zero
def check_scale_and_zero(scale_and_zero) -> None:
    """``scale_and_zero(w, bits, scheme, per_channel) -> (scale, zero)``, one per row or one in all."""
    w = _weights()
    for bits in (8, 4):
        for scheme in SCHEMES:
            for per_channel in (True, False):
                out = scale_and_zero(w.clone(), bits, scheme, per_channel)
                case = f"bits={bits}, {scheme}, per_channel={per_channel}"
                if not isinstance(out, (tuple, list)) or len(out) != 2:
                    fail(f"scale_and_zero returned {type(out).__name__} for {case}; expected "
                         "a pair (scale, zero)")
                scale = _as_tensor(out[0], "scale_and_zero", case)
                zero = _as_tensor(out[1], "scale_and_zero", case)
                _diagnose_scale_zero(w, bits, scheme, per_channel, scale, zero, case)
    passed("scale_and_zero: absmax and min/max scales, zero points, per tensor and per channel")


def _diagnose_scale_zero(w, bits, scheme, per_channel, scale, zero, case) -> None:
    rows = w if per_channel else w.reshape(1, -1)
    want_s, want_z = (t.double() for t in _quant.scale_and_zero(rows, bits, scheme))
    tensor_s, _ = _quant.scale_and_zero(w.reshape(1, -1), bits, scheme)
    if per_channel and (scale.numel() == 1 or torch.allclose(scale, tensor_s.double().expand_as(scale))):
        fail(f"per-tensor where per-channel was asked ({case}): one scale for the whole weight",
             f"per_channel=True needs one scale per output channel: reduce over dim=1 "
             f"(keepdim=True) to get shape ({w.shape[0]}, 1), not over the whole tensor")
    if scale.numel() != want_s.numel():
        fail(f"scale has {scale.numel()} values for {case}, expected {want_s.numel()}",
             f"shape ({w.shape[0]}, 1) per channel, (1, 1) per tensor")
    if zero.numel() not in (1, want_z.numel()):
        fail(f"zero has {zero.numel()} values for {case}, expected {want_z.numel()}")
    zero = zero.expand(want_z.numel()) if zero.numel() == 1 else zero
    qmin, qmax = _quant.integer_range(bits, scheme)
    steps = qmax if scheme == "symmetric" else qmax - qmin
    ratio = (want_s / scale).mean().item()            # = steps_used / steps
    for used in (steps + 1, steps - 1, steps + 2):
        if abs(ratio * steps - used) < 1e-3:
            fail(f"off-by-one in the integer range ({case}): your scale spreads the range over "
                 f"{used} steps, it should be {steps}",
                 "scale = absmax / qmax (symmetric) or (max - min) / (qmax - qmin) (asymmetric), "
                 "with qmin, qmax from integer_range")
    if not torch.allclose(scale, want_s, rtol=1e-5, atol=1e-12):
        fail(f"scale is wrong for {case}: got {scale[:3].tolist()}..., expected {want_s[:3].tolist()}...",
             "symmetric: max|w| / qmax; asymmetric: (max(w, 0) - min(w, 0)) / (qmax - qmin)")
    if scheme == "symmetric" and (zero != 0).any():
        fail(f"symmetric zero point is not 0 ({case})", "absmax quantization has no zero point")
    if torch.equal(zero, -want_z) and (want_z != 0).any():
        fail(f"zero point with the wrong sign ({case}): got {zero[:3].tolist()}..., expected "
             f"{want_z[:3].tolist()}...",
             "zero = qmin - round(min / scale): min is negative, so zero is positive and maps "
             "w = min onto qmin")
    if not torch.equal(zero.round(), zero) or not torch.equal(zero, want_z):
        fail(f"zero point is wrong for {case}: got {zero[:3].tolist()}..., expected {want_z[:3].tolist()}...",
             "zero = qmin - round(min(w, 0) / scale), an integer (round it!) so that w = 0 is exact")


# ---------------------------------------------------------------- task 3: quantize_affine
def check_quantize_affine(quantize_affine) -> None:
    """``quantize_affine(w, scale, zero, bits, scheme) -> integer codes`` (round, add zero, clamp)."""
    w = _weights()
    for bits, scheme in ((8, "symmetric"), (4, "asymmetric"), (3, "symmetric"), (8, "asymmetric")):
        s, z = _quant.scale_and_zero(w, bits, scheme)
        # Fitted scales, then scales 40% too small: values beyond the range must clamp.
        for shrink, label in ((1.0, "fitted scale"), (0.6, "a scale too small for the row (clipping)")):
            scale, zero = (s * shrink)[:, None], z[:, None].float()
            out = quantize_affine(w.clone(), scale.clone(), zero.clone(), bits, scheme)
            case = f"bits={bits}, {scheme}, {label}"
            codes = _as_tensor(out, "quantize_affine", case)
            want = _quant.quantize_rows(w, s * shrink, z, bits, scheme).double().reshape(-1)
            if codes.numel() != want.numel():
                fail(f"quantize_affine returned {codes.numel()} codes for {case}, expected {want.numel()}")
            if torch.equal(codes, want):
                continue
            _diagnose_codes(w, scale, zero, bits, scheme, codes, case)
    passed("quantize_affine: round to nearest, add the zero point, clamp to [qmin, qmax]")


def _diagnose_codes(w, scale, zero, bits, scheme, codes, case) -> None:
    qmin, qmax = _quant.integer_range(bits, scheme)
    raw = torch.round(w / scale).double()
    if not torch.equal(codes.round(), codes):
        fail(f"codes are not integers ({case})", "round to the nearest integer: torch.round")
    if (zero != 0).any() and (torch.equal(codes, (raw - zero).clamp(qmin, qmax).reshape(-1)) or
                              torch.equal(codes, (raw - zero).reshape(-1))):
        fail(f"zero point applied with the wrong sign ({case})",
             "q = round(w / scale) + zero: the zero point is ADDED when quantizing "
             "(and subtracted when dequantizing)")
    if codes.max() > qmax or codes.min() < qmin:
        if codes.max() == qmax + 1 or codes.min() == qmin - 1:
            fail(f"off-by-one in the integer range ({case}): codes reach "
                 f"[{int(codes.min())}, {int(codes.max())}], allowed [{qmin}, {qmax}]",
                 "clamp to integer_range(bits, scheme)")
        fail(f"missing clamp ({case}): codes reach [{int(codes.min())}, {int(codes.max())}], "
             f"allowed [{qmin}, {qmax}]",
             "when the scale does not cover every value (clipping, a scale from other data), "
             "round(w / scale) + zero falls outside the range: clamp(q, qmin, qmax)")
    if torch.equal(codes, torch.floor(w / scale + zero).clamp(qmin, qmax).double().reshape(-1)) or \
            torch.equal(codes, torch.trunc(w / scale + zero).clamp(qmin, qmax).double().reshape(-1)):
        fail(f"codes are truncated, not rounded ({case})", "use torch.round, not floor/int()")
    fail(f"codes differ from clamp(round(w / scale) + zero, qmin, qmax) ({case}) at "
         f"{int((codes != (raw + zero).clamp(qmin, qmax).reshape(-1)).sum())} places")


# ---------------------------------------------------------------- task 4: dequantize_affine
def check_dequantize_affine(dequantize_affine) -> None:
    """``dequantize_affine(codes, scale, zero) -> (codes - zero) * scale``."""
    w = _weights()
    for bits, scheme in ((8, "asymmetric"), (4, "asymmetric"), (4, "symmetric")):
        s, z = _quant.scale_and_zero(w, bits, scheme)
        codes = _quant.quantize_rows(w, s, z, bits, scheme).float()
        scale, zero = s[:, None], z[:, None].float()
        out = dequantize_affine(codes.clone(), scale.clone(), zero.clone())
        case = f"bits={bits}, {scheme}"
        got = _as_tensor(out, "dequantize_affine", case)
        want = ((codes - zero) * scale).double().reshape(-1)
        if got.numel() != want.numel():
            fail(f"dequantize_affine returned {got.numel()} values for {case}, expected {want.numel()}")
        if torch.allclose(got, want, rtol=1e-5, atol=1e-7):
            continue
        if torch.allclose(got, ((codes + zero) * scale).double().reshape(-1), rtol=1e-5, atol=1e-7):
            fail(f"zero point applied with the wrong sign ({case})",
                 "w_hat = (q - zero) * scale: subtract the zero point that quantizing added")
        if torch.allclose(got, (codes * scale).double().reshape(-1), rtol=1e-5, atol=1e-7):
            fail(f"the zero point is missing ({case})", "w_hat = (q - zero) * scale")
        if torch.allclose(got, ((codes - zero) / scale).double().reshape(-1), rtol=1e-5, atol=1e-7):
            fail(f"divided by the scale ({case})", "dequantizing multiplies by the scale")
        fail(f"dequantize_affine differs from (q - zero) * scale ({case}), max difference "
             f"{(got - want).abs().max().item():.3g}")
    if not (dequantize_affine(codes, scale, zero) - w).abs().le(scale / 2 + 1e-6).all():
        fail("round trip error above half a step", "check the scale and the zero point")
    passed("dequantize_affine: (q - zero) * scale, error at most half a step")


# ---------------------------------------------------------------- task 5: nf4_levels
def check_nf4_levels(nf4_levels) -> None:
    """``nf4_levels() -> 16 sorted levels in [-1, 1]`` (QLoRA's NF4 table)."""
    out = nf4_levels()
    levels = _as_tensor(out, "nf4_levels", "the table")
    want = _nf4.nf4_levels().double()
    if levels.numel() != 16:
        fail(f"nf4_levels returned {levels.numel()} values; NF4 has 2^4 = 16",
             "8 positive quantiles + 7 negative + an exact zero")
    if not torch.all(levels[1:] > levels[:-1]):
        fail("the levels are not sorted in increasing order", "sort them: torch.sort(...).values")
    if abs(levels.max().item() - 1) > 1e-6 or abs(levels.min().item() + 1) > 1e-6:
        fail(f"NF4 levels not normalised to [-1, 1]: they span [{levels.min():.4f}, {levels.max():.4f}]",
             "the quantiles of N(0, 1) are in standard deviations (up to about 1.85): divide all "
             "levels by the largest one so the table spans exactly [-1, 1], like w / absmax")
    if (levels == 0).sum() != 1:
        fail("the table has no exact 0 (or more than one)",
             "NF4 keeps an exact zero so that zeros (padding, pruned weights) stay zero")
    if (levels > 0).sum() != 8 or (levels < 0).sum() != 7:
        fail(f"NF4 has 8 positive and 7 negative levels, got {(levels > 0).sum()} and {(levels < 0).sum()}",
             "positive side: 9 points from 0.5 to offset, drop the last (0.5); negative side: "
             "8 points, drop the last, negate")
    diff = (levels - want).abs().max().item()
    if diff > 1e-6:
        fail(f"the levels differ from QLoRA's NF4 table by up to {diff:.2e}",
             "offset = 1 - (1/32 + 1/30) / 2 ≈ 0.9677; use torch.special.ndtri (the normal "
             "quantile) in float64 and divide by the largest level")
    passed("nf4_levels: 16 levels, 8 positive / 7 negative / exact 0, equal to QLoRA's table")


# ---------------------------------------------------------------- task 6: blockwise NF4
def check_nf4_blockwise(quantize_nf4, dequantize_nf4) -> None:
    """``quantize_nf4(w, levels, blocksize) -> (codes, absmax)`` and
    ``dequantize_nf4(codes, absmax, levels, blocksize) -> w_hat`` (flat, numel values)."""
    g = torch.Generator().manual_seed(64)
    w = torch.randn(8, 32, generator=g) * 0.05
    w[3, :16] *= 10                                  # one block with much larger weights
    levels = _nf4.nf4_levels()
    blocksize = 16
    out = quantize_nf4(w.clone(), levels.clone(), blocksize)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail(f"quantize_nf4 returned {type(out).__name__}; expected a pair (codes, absmax)")
    codes, absmax = (_as_tensor(t, "quantize_nf4", "w (8, 32)") for t in out)
    blocks = w.reshape(-1, blocksize).double()
    want_absmax = blocks.abs().amax(dim=1)
    want_codes = _nf4.nearest_level((blocks / want_absmax[:, None]).float().reshape(-1),
                                    levels).double()
    if absmax.numel() == 1 or (absmax.numel() == want_absmax.numel() and
                               torch.allclose(absmax, w.abs().max().double().expand_as(absmax))):
        fail("one absmax for the whole tensor: NF4 is blockwise",
             f"reshape the flat weight to (-1, blocksize) and take abs().amax(dim=1): "
             f"{want_absmax.numel()} blocks here")
    if absmax.numel() != want_absmax.numel():
        fail(f"absmax has {absmax.numel()} values, expected one per block: {want_absmax.numel()}")
    if torch.allclose(absmax, blocks.amax(dim=1)) and not torch.allclose(absmax, want_absmax):
        fail("absmax is the largest value, not the largest |value|",
             "negative weights count too: w.abs().amax(...)")
    if not torch.allclose(absmax, want_absmax, rtol=1e-6):
        fail("absmax per block is wrong", "the largest |w| in each block of blocksize values")
    if codes.numel() != want_codes.numel():
        fail(f"quantize_nf4 returned {codes.numel()} codes, expected one per weight: {w.numel()}")
    if codes.min() < 0 or codes.max() > 15:
        fail(f"codes must index the 16 levels (0..15), got [{int(codes.min())}, {int(codes.max())}]")
    wrong = int((codes != want_codes).sum())
    if wrong:
        fail(f"{wrong} of {codes.numel()} codes are not the nearest level",
             "code = argmin_j |w / absmax_block - levels[j]|, e.g. "
             "(scaled[:, None] - levels).abs().argmin(dim=1)")
    w_hat = _as_tensor(dequantize_nf4(want_codes.long(), want_absmax.float(), levels, blocksize),
                       "dequantize_nf4", "w (8, 32)")
    want_hat = (levels.double()[want_codes.long()].reshape(-1, blocksize) * want_absmax[:, None]).reshape(-1)
    if w_hat.numel() != want_hat.numel() or not torch.allclose(w_hat, want_hat, rtol=1e-5, atol=1e-7):
        fail("dequantize_nf4 differs from levels[codes] * absmax of the code's block",
             "look the codes up in the table, reshape to (-1, blocksize), multiply by absmax[:, None]")
    passed("quantize_nf4 / dequantize_nf4: blockwise absmax, nearest NF4 level, exact round trip")
