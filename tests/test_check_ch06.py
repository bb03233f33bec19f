"""The chapter-06 checkers pass the right answers and catch each classic mistake with its hint."""
import pytest
import torch

from effkit.check import ch06


# ---------------------------------------------------------------- right answers
def integer_range(bits, scheme):
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def scale_and_zero(w, bits, scheme, per_channel):
    qmin, qmax = integer_range(bits, scheme)
    rows = w if per_channel else w.reshape(1, -1)
    if scheme == "symmetric":
        scale = rows.abs().amax(dim=1, keepdim=True) / qmax
        return scale, torch.zeros_like(scale)
    lo = rows.amin(dim=1, keepdim=True).clamp(max=0)
    hi = rows.amax(dim=1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / (qmax - qmin)
    return scale, qmin - torch.round(lo / scale)


def quantize_affine(w, scale, zero, bits, scheme):
    qmin, qmax = integer_range(bits, scheme)
    return torch.clamp(torch.round(w / scale) + zero, qmin, qmax)


def dequantize_affine(codes, scale, zero):
    return (codes - zero) * scale


def nf4_levels():
    offset = 1 - (1 / 32 + 1 / 30) / 2
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).sort().values
    return (levels / levels.max()).float()


def quantize_nf4(w, levels, blocksize):
    blocks = w.reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax[:, None]).reshape(-1)
    return (scaled[:, None] - levels).abs().argmin(dim=1), absmax


def dequantize_nf4(codes, absmax, levels, blocksize):
    return (levels[codes].reshape(-1, blocksize) * absmax[:, None]).reshape(-1)


def test_right_answers_pass(capsys):
    ch06.check_integer_range(integer_range)
    ch06.check_scale_and_zero(scale_and_zero)
    ch06.check_quantize_affine(quantize_affine)
    ch06.check_dequantize_affine(dequantize_affine)
    ch06.check_nf4_levels(nf4_levels)
    ch06.check_nf4_blockwise(quantize_nf4, dequantize_nf4)
    assert capsys.readouterr().out.count("PASS") == 6


def test_checkers_call_the_student_function_first():
    def stub(*args):
        raise NotImplementedError("Your code here")

    for check in (ch06.check_integer_range, ch06.check_scale_and_zero, ch06.check_quantize_affine,
                  ch06.check_dequantize_affine, ch06.check_nf4_levels):
        with pytest.raises(NotImplementedError):
            check(stub)
    with pytest.raises(NotImplementedError):
        ch06.check_nf4_blockwise(stub, dequantize_nf4)


# ---------------------------------------------------------------- classic mistakes
def range_two_complement(bits, scheme):                   # -128..127 for symmetric 8 bits
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if scheme == "symmetric" else (0, 2 ** bits - 1)


def range_asym_too_wide(bits, scheme):                    # 0..256 for 8 bits
    return integer_range(bits, scheme) if scheme == "symmetric" else (0, 2 ** bits)


def scale_off_by_one(w, bits, scheme, per_channel):       # absmax / 128 for 8 bits
    rows = w if per_channel else w.reshape(1, -1)
    if scheme == "symmetric":
        scale = rows.abs().amax(dim=1, keepdim=True) / 2 ** (bits - 1)
        return scale, torch.zeros_like(scale)
    return scale_and_zero(w, bits, scheme, per_channel)


def scale_per_tensor_always(w, bits, scheme, per_channel):
    return scale_and_zero(w, bits, scheme, per_channel=False)


def scale_per_tensor_broadcast(w, bits, scheme, per_channel):
    scale, zero = scale_and_zero(w, bits, scheme, per_channel=False)
    return scale.expand(w.shape[0], 1), zero.expand(w.shape[0], 1)


def zero_wrong_sign(w, bits, scheme, per_channel):
    scale, zero = scale_and_zero(w, bits, scheme, per_channel)
    return scale, -zero


def quantize_no_clamp(w, scale, zero, bits, scheme):
    return torch.round(w / scale) + zero


def quantize_zero_wrong_sign(w, scale, zero, bits, scheme):
    qmin, qmax = integer_range(bits, scheme)
    return torch.clamp(torch.round(w / scale) - zero, qmin, qmax)


def quantize_clamp_off_by_one(w, scale, zero, bits, scheme):
    qmin, qmax = range_two_complement(bits, scheme)
    return torch.clamp(torch.round(w / scale) + zero, qmin, qmax)


def quantize_truncates(w, scale, zero, bits, scheme):
    qmin, qmax = integer_range(bits, scheme)
    return torch.clamp(torch.trunc(w / scale + zero), qmin, qmax)


def dequantize_zero_wrong_sign(codes, scale, zero):
    return (codes + zero) * scale


def dequantize_no_zero(codes, scale, zero):
    return codes * scale


def nf4_not_normalised():
    offset = 1 - (1 / 32 + 1 / 30) / 2
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    return torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).sort().values.float()


def nf4_wrong_offset():                                   # quantiles pushed too far into the tails
    offset = 0.99
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).sort().values
    return (levels / levels.max()).float()


def nf4_symmetric():                                       # 8 + 8, no exact zero
    offset = 1 - (1 / 32 + 1 / 30) / 2
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    levels = torch.cat([-pos, pos]).sort().values
    return (levels / levels.max()).float()


def nf4_unsorted():
    return nf4_levels().flip(0)


def quantize_nf4_per_tensor(w, levels, blocksize):
    absmax = w.abs().max()
    codes = ((w.reshape(-1) / absmax)[:, None] - levels).abs().argmin(dim=1)
    return codes, absmax.expand(w.numel() // blocksize)


def quantize_nf4_signed_max(w, levels, blocksize):
    blocks = w.reshape(-1, blocksize)
    absmax = blocks.amax(dim=1)
    return ((blocks / absmax[:, None]).reshape(-1)[:, None] - levels).abs().argmin(dim=1), absmax


def quantize_nf4_floor_level(w, levels, blocksize):       # the level below, not the nearest
    blocks = w.reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax[:, None]).reshape(-1)
    return (torch.searchsorted(levels, scaled, right=True) - 1).clamp(0, 15), absmax


def dequantize_nf4_no_scale(codes, absmax, levels, blocksize):
    return levels[codes]


@pytest.mark.parametrize("check, fn, words", [
    (ch06.check_integer_range, range_two_complement, "off-by-one in the integer range"),
    (ch06.check_integer_range, range_asym_too_wide, "off-by-one in the integer range"),
    (ch06.check_scale_and_zero, scale_off_by_one, "off-by-one in the integer range"),
    (ch06.check_scale_and_zero, scale_per_tensor_always, "per-tensor where per-channel was asked"),
    (ch06.check_scale_and_zero, scale_per_tensor_broadcast, "per-tensor where per-channel was asked"),
    (ch06.check_scale_and_zero, zero_wrong_sign, "zero point with the wrong sign"),
    (ch06.check_quantize_affine, quantize_no_clamp, "missing clamp"),
    (ch06.check_quantize_affine, quantize_zero_wrong_sign, "zero point applied with the wrong sign"),
    (ch06.check_quantize_affine, quantize_clamp_off_by_one, "off-by-one in the integer range"),
    (ch06.check_quantize_affine, quantize_truncates, "truncated, not rounded"),
    (ch06.check_dequantize_affine, dequantize_zero_wrong_sign, "zero point applied with the wrong sign"),
    (ch06.check_dequantize_affine, dequantize_no_zero, "zero point is missing"),
    (ch06.check_nf4_levels, nf4_not_normalised, r"not normalised to \[-1, 1\]"),
    (ch06.check_nf4_levels, nf4_wrong_offset, "differ from QLoRA's NF4 table"),
    (ch06.check_nf4_levels, nf4_symmetric, "no exact 0"),
    (ch06.check_nf4_levels, nf4_unsorted, "not sorted"),
])
def test_classic_mistakes_are_named(check, fn, words):
    with pytest.raises(AssertionError, match=words):
        check(fn)


@pytest.mark.parametrize("quant, dequant, words", [
    (quantize_nf4_per_tensor, dequantize_nf4, "one absmax for the whole tensor"),
    (quantize_nf4_signed_max, dequantize_nf4, r"largest value, not the largest \|value\|"),
    (quantize_nf4_floor_level, dequantize_nf4, "not the nearest level"),
    (quantize_nf4, dequantize_nf4_no_scale, "dequantize_nf4 differs"),
])
def test_nf4_blockwise_mistakes_are_named(quant, dequant, words):
    with pytest.raises(AssertionError, match=words):
        ch06.check_nf4_blockwise(quant, dequant)


def test_wrong_return_types_fail_clearly():
    with pytest.raises(AssertionError, match="expected a pair"):
        ch06.check_scale_and_zero(lambda w, b, s, p: w)
    with pytest.raises(AssertionError, match="expected two integers"):
        ch06.check_integer_range(lambda b, s: 7)
    with pytest.raises(AssertionError, match="NF4 has 2\\^4 = 16"):
        ch06.check_nf4_levels(lambda: torch.linspace(-1, 1, 15))
