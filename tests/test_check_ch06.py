"""The chapter-06 checkers pass right answers and name every classic mistake (mutation tests).

Each mutant below is a plausible wrong answer. The checker must reject it with a FAIL line that
names that very mistake, and a hint about it (not about some other mistake). Student code that
crashes must give a readable FAIL, not a traceback; an unfinished stub must raise
NotImplementedError unchanged.
"""
import re

import pytest
import torch
import torch.nn.functional as F

from effkit.check import ch06
from effkit.quant import int8_matmul_with_outliers


# ---------------------------------------------------------------- right answers
def int8_rows(a):
    scale = a.abs().amax(dim=1, keepdim=True) / 127
    return torch.round(a / scale), scale


def int8_matmul(x, w, threshold):
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    y = (xq @ wq.T) * x_scale * w_scale.T
    return y + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def _magnitudes(subnormal=lambda m: m * 2.0 ** -4, normal=lambda e, m: (1 + m / 2) * 2.0 ** e):
    return torch.tensor([subnormal(c & 1) if c >> 1 == 0 else normal(c >> 1, c & 1) for c in range(8)])


def fp4_levels():
    mags = _magnitudes()
    levels = torch.cat([mags, -mags])
    return levels / levels.abs().max()


def _blocks(w, blocksize):
    """(padded blocks (n_blocks, blocksize), n) of the flattened weight, zero padded."""
    flat = w.reshape(-1)
    return F.pad(flat, (0, -flat.numel() % blocksize)).reshape(-1, blocksize), flat.numel()


def _nearest(scaled, levels):
    return (scaled[:, None] - levels).abs().argmin(dim=1)


def quantize_fp4(w, levels, blocksize):
    blocks, n = _blocks(w, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks / absmax[:, None]).reshape(-1)[:n]
    return _nearest(scaled, levels), absmax


def dequantize_fp4(codes, absmax, levels, blocksize, shape):
    n = codes.numel()
    return (levels[codes] * absmax.repeat_interleave(blocksize)[:n]).reshape(shape)


def fp4_levels_bnb_order():
    mags = torch.tensor([0, 0.0625, 8, 12, 4, 6, 2, 3])
    return torch.cat([mags, -mags]) / 12


def quantize_fp4_sorted_search(w, levels, blocksize):    # a different, correct nearest-level search
    blocks, n = _blocks(w, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * (1 / absmax[:, None])).reshape(-1)[:n]
    sorted_levels, order = levels.sort()
    mids = (sorted_levels[1:] + sorted_levels[:-1]) / 2
    return order[torch.bucketize(scaled, mids)], absmax


def test_right_answers_pass(capsys):
    ch06.check_int8_rows(int8_rows)
    ch06.check_int8_matmul(int8_matmul)
    ch06.check_fp4_levels(fp4_levels)
    ch06.check_fp4_levels(fp4_levels_bnb_order)
    ch06.check_fp4_blockwise(quantize_fp4, dequantize_fp4)
    ch06.check_fp4_blockwise(quantize_fp4_sorted_search, dequantize_fp4)
    out = capsys.readouterr().out
    assert out.count("PASS") == 6
    assert "the same code order as bitsandbytes" in out and "a code order of your own" in out


def test_checkers_call_the_student_function_first():
    def stub(*args):
        raise NotImplementedError("Your code here")

    for check in (ch06.check_int8_rows, ch06.check_int8_matmul, ch06.check_fp4_levels):
        with pytest.raises(NotImplementedError, match="Your code here"):
            check(stub)
    with pytest.raises(NotImplementedError):
        ch06.check_fp4_blockwise(stub, dequantize_fp4)
    with pytest.raises(NotImplementedError):
        ch06.check_fp4_blockwise(quantize_fp4, stub)

    def matmul_with_stub_rows(x, w, threshold):     # the stub is inside the student's own helper
        return stub(x)

    with pytest.raises(NotImplementedError):
        ch06.check_int8_matmul(matmul_with_stub_rows)


def _rejects(check, *fns, what, hint):
    """The checker FAILs, its first line names the mistake and its hint line matches `hint`."""
    with pytest.raises(AssertionError) as info:
        check(*fns)
    message = str(info.value)
    assert message.startswith("FAIL"), message
    first, _, rest = message.partition("\n")
    assert re.search(what, first), f"FAIL line does not name {what!r}:\n{message}"
    assert re.search(hint, rest), f"hint does not match {hint!r}:\n{message}"
    assert "Traceback" not in message


# ---------------------------------------------------------------- task 1: int8_rows mutants
def rows_scale_1d(a):                      # scale (rows,): a / scale divides COLUMN j by scale j
    scale = a.abs().amax(dim=1) / 127
    return torch.round(a / scale), scale


def rows_scale_1d_codes_right(a):          # right codes, but the scale handed back is 1-D
    scale = a.abs().amax(dim=1) / 127
    return torch.round(a / scale[:, None]), scale


def rows_per_tensor(a):
    scale = a.abs().max().reshape(1, 1) / 127
    return torch.round(a / scale), scale


def rows_per_tensor_repeated(a):
    scale = (a.abs().max() / 127).expand(a.shape[0], 1)
    return torch.round(a / scale), scale


def rows_per_column(a):                    # amax over dim=0, kept as (1, cols)
    scale = a.abs().amax(dim=0, keepdim=True) / 127
    return torch.round(a / scale), scale


def rows_per_column_transposed(a):         # (cols, 1): the right shape on a square tensor
    scale = a.abs().amax(dim=0, keepdim=True).T / 127
    return torch.round(a / scale), scale


def rows_over_128(a):
    scale = a.abs().amax(dim=1, keepdim=True) / 128
    return torch.round(a / scale), scale


def rows_over_255(a):
    scale = a.abs().amax(dim=1, keepdim=True) / 255
    return torch.round(a / scale), scale


def rows_signed_max(a):
    scale = a.amax(dim=1, keepdim=True) / 127
    return torch.round(a / scale), scale


def rows_truncated(a):
    scale = a.abs().amax(dim=1, keepdim=True) / 127
    return (a / scale).int(), scale


def rows_not_rounded(a):
    scale = a.abs().amax(dim=1, keepdim=True) / 127
    return a / scale, scale


def rows_flat_codes(a):
    codes, scale = int8_rows(a)
    return codes.reshape(-1), scale


@pytest.mark.parametrize("fn, what, hint", [
    (rows_scale_1d, r"scale has shape \(7,\).*expected \(7, 1\).*divide column j by row j's scale",
     r"keepdim=True"),
    (rows_scale_1d_codes_right, r"scale has shape \(7,\).*expected \(7, 1\)$", r"keepdim=True"),
    (rows_per_tensor, "one scale for the whole tensor", "its own scale"),
    (rows_per_tensor_repeated, "one scale for the whole tensor", "its own absmax"),
    (rows_per_column, "one scale per column", "dim=1"),
    (rows_per_column_transposed, "one scale per column", "dim=1"),
    (rows_over_128, "off-by-one in the int8 range", "-127..127"),
    (rows_over_255, "255 steps", "unsigned"),
    (rows_signed_max, r"largest value, not the largest \|value\|", "negative values count"),
    (rows_truncated, "truncated, not rounded", "torch.round"),
    (rows_not_rounded, "not integers", "torch.round"),
    (rows_flat_codes, r"codes have shape \(49,\)", "no flattening"),
])
def test_int8_rows_mistakes_are_named(fn, what, hint):
    _rejects(ch06.check_int8_rows, fn, what=what, hint=hint)


def test_int8_rows_1d_scale_crashes_readably_on_a_wide_tensor():
    _, wide = ch06.int8._int8_weights()[1]
    with pytest.raises(RuntimeError):
        rows_scale_1d(wide)                           # the raw error a student would see

    def square_ok_then_crash(a):                      # passes the square case, crashes on (5, 13)
        return int8_rows(a) if a.shape[0] == a.shape[1] else rows_scale_1d(a)

    _rejects(ch06.check_int8_rows, square_ok_then_crash,
             what=r"int8_rows\(a of shape \(5, 13\)\) raised RuntimeError", hint=r"\(rows, 1\)")


def test_int8_rows_wrong_return_type():
    _rejects(ch06.check_int8_rows, lambda a: a, what="expected a pair", hint="tuple")
    _rejects(ch06.check_int8_rows, lambda a: (a.tolist(), 1.0), what="expected a torch.Tensor",
             hint="tensors")


# ---------------------------------------------------------------- task 2: int8_matmul mutants
def _split(x, w, outliers):
    """The right computation, for a given boolean column mask."""
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_strict_threshold(x, w, threshold):
    return _split(x, w, (x.abs() > threshold).any(dim=0))


def matmul_per_element(x, w, threshold):             # each big value alone goes to float
    big = x.abs() >= threshold
    xq, x_scale = int8_rows(x.masked_fill(big, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T + (x * big) @ (wq * w_scale).T


def matmul_per_row(x, w, threshold):                 # tokens with an outlier go to float whole
    rows = (x.abs() >= threshold).any(dim=1)
    xq, x_scale = int8_rows(x)
    wq, w_scale = int8_rows(w)
    y = (xq @ wq.T) * x_scale * w_scale.T
    y[rows] = x[rows] @ (wq * w_scale).T
    return y


def matmul_per_row_crash(x, w, threshold):           # .any(dim=1) used as a column mask
    return _split(x, w, (x.abs() >= threshold).any(dim=1))


def matmul_no_split(x, w, threshold):
    xq, x_scale = int8_rows(x)
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T


def matmul_outliers_in_int8(x, w, threshold):        # the outlier part quantized as well
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    y = (xq @ wq.T) * x_scale * w_scale.T
    if outliers.any():
        oq, o_scale = int8_rows(x[:, outliers])
        y = y + (oq @ wq[:, outliers].T) * o_scale * w_scale.T
    return y


def matmul_outliers_twice(x, w, threshold):          # forgot to zero them in the int8 part
    outliers = (x.abs() >= threshold).any(dim=0)
    wq, w_scale = int8_rows(w)
    return matmul_no_split(x, w, threshold) + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_token_scale_with_outliers(x, w, threshold):
    outliers = (x.abs() >= threshold).any(dim=0)
    _, x_scale = int8_rows(x)                        # scale stretched by the outliers
    xq = torch.round(x.masked_fill(outliers, 0.0) / x_scale)
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_token_scale_outlier_values_only(x, w, threshold):   # bitsandbytes' CPU shortcut
    big = x.abs() >= threshold
    outliers = big.any(dim=0)
    _, x_scale = int8_rows(x.masked_fill(big, 0.0))          # only the big values removed
    xq = torch.round(x.masked_fill(outliers, 0.0) / x_scale)
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_fp32_outlier_weight(x, w, threshold):
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale.T + x[:, outliers] @ w[:, outliers].T


def matmul_no_weight_scale(x, w, threshold):
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_no_token_scale(x, w, threshold):
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, _ = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * w_scale.T + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_weight_scale_not_transposed(x, w, threshold):   # (tokens, out) * (out, 1): crashes
    outliers = (x.abs() >= threshold).any(dim=0)
    xq, x_scale = int8_rows(x.masked_fill(outliers, 0.0))
    wq, w_scale = int8_rows(w)
    return (xq @ wq.T) * x_scale * w_scale + x[:, outliers] @ (wq[:, outliers] * w_scale).T


def matmul_transposed_output(x, w, threshold):
    return int8_matmul(x, w, threshold).T


@pytest.mark.parametrize("fn, what, hint", [
    (matmul_strict_threshold, "with > instead of >=", r"\|x\| >= threshold \(bitsandbytes uses >=\)"),
    (matmul_per_element, "value by value, not as whole feature columns", r"any\(dim=0\)"),
    (matmul_per_row, r"per token \(row\), not per feature column", r"not \.any\(dim=1\)"),
    (matmul_no_split, "went through int8 with everything else", "split them off"),
    (matmul_outliers_in_int8, "outlier part was computed in int8", "stays in floating point"),
    (matmul_outliers_twice, "counted twice", "zero the outlier columns"),
    (matmul_token_scale_with_outliers, "scale was taken over all features, outliers included",
     "BEFORE computing the token scales"),
    (matmul_token_scale_outlier_values_only, "still counts the small values of the outlier columns",
     "zero the whole outlier columns before int8_rows"),
    (matmul_fp32_outlier_weight, "used the original float weight", "only the int8 weight is kept"),
    (matmul_no_weight_scale, "weight scales are missing", "rescale the int32 product by both"),
    (matmul_no_token_scale, "token scales are missing", "rescale the int32 product by both"),
    (matmul_transposed_output, r"returned shape \(23, 9\), expected \(9, 23\)", r"\(tokens, out\)"),
])
def test_int8_matmul_mistakes_are_named(fn, what, hint):
    _rejects(ch06.check_int8_matmul, fn, what=what, hint=hint)


@pytest.mark.parametrize("fn", [matmul_weight_scale_not_transposed, matmul_per_row_crash])
def test_int8_matmul_crash_is_a_readable_fail(fn):
    x, w, threshold = ch06.int8._matmul_cases()[0]
    with pytest.raises(RuntimeError):
        fn(x, w, threshold)                                  # the raw error a student would see
    _rejects(ch06.check_int8_matmul, fn, what=r"int8_matmul\(x \(9, 37\).*raised RuntimeError",
             hint=r"a shape error: print the shapes.*outlier mask \(in,\)")


def test_int8_reference_matches_the_oracle_and_mistakes_are_distinct():
    """The checker's switchable reference is the chapter's function when no switch is set, and
    on the first case every mistake gives a different answer (so each routes to its own hint)."""
    for x, w, threshold in ch06.int8._matmul_cases():
        want = int8_matmul_with_outliers(x, w, threshold).double()
        assert ch06.plumbing.close(ch06.int8._int8_reference(x, w, threshold), want)
    x, w, threshold = ch06.int8._matmul_cases()[0]
    answers = [int8_matmul_with_outliers(x, w, threshold).double()]
    for kwargs, _, _ in ch06.MATMUL_MISTAKES:
        y = ch06.int8._int8_reference(x, w, threshold, **kwargs)
        assert not any(ch06.plumbing.close(y, other) for other in answers), kwargs
        answers.append(y)
    assert (x.abs() == threshold).any(), "case 1 must hold a value exactly at the threshold"


# ---------------------------------------------------------------- task 3: fp4_levels mutants
def levels_not_normalised():
    mags = _magnitudes()
    return torch.cat([mags, -mags])


def levels_no_subnormal():                 # exponent field 0 given an implicit leading 1
    mags = _magnitudes(subnormal=lambda m: 1 + m / 2)
    levels = torch.cat([mags, -mags])
    return levels / levels.abs().max()


def levels_ocp_e2m1():                     # 0, 0.5, 1, 1.5, 2, 3, 4, 6
    mags = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    return torch.cat([mags, -mags]) / 6


def levels_subnormal_bias_two():           # m * 0.5 * 2^-2 = 0.125 for m = 1
    mags = _magnitudes(subnormal=lambda m: m * 0.5 * 2.0 ** -2)
    levels = torch.cat([mags, -mags])
    return levels / levels.abs().max()


def levels_sign_ignored():
    mags = _magnitudes()
    return torch.cat([mags, mags]) / 12


def levels_sign_as_factor():               # (1 - s) instead of (-1)^s: negatives become 0
    mags = _magnitudes()
    return torch.cat([mags, 0 * mags]) / 12


def levels_one_zero():
    mags = _magnitudes()
    return torch.cat([mags, -mags[1:]]) / 12


def levels_typed_by_hand():                # one negative value mistyped: -0.2 for -0.25
    levels = fp4_levels()
    levels[(levels + 0.25).abs() < 1e-6] = -0.2
    return levels


@pytest.mark.parametrize("fn, what, hint", [
    (levels_not_normalised, "not normalised: the largest magnitude is 12", "divide every level by"),
    (levels_no_subnormal, "no zero level", "subnormal: no implicit leading 1"),
    (levels_ocp_e2m1, r"1/12.*OCP/MX E2M1", r"2\^-4 = 0\.0625"),
    (levels_subnormal_bias_two, "smallest non-zero level is 0.01042", r"2\^-4 = 0\.0625"),
    (levels_sign_ignored, "no negative levels", "sign bit"),
    (levels_sign_as_factor, "no negative levels", "sign bit"),
    (levels_one_zero, "FP4 has 16 codes", r"\+0 and -0"),
    (levels_typed_by_hand, "not symmetric", "sign bit only flips the sign"),
])
def test_fp4_levels_mistakes_are_named(fn, what, hint):
    _rejects(ch06.check_fp4_levels, fn, what=what, hint=hint)


# ---------------------------------------------------------------- task 4: blockwise FP4 mutants
def _quantize_with(absmax_fn=None, pick=None):
    """A quantizer with the right tail handling, and an absmax or level choice swapped in."""
    def quantize(w, levels, blocksize):
        blocks, n = _blocks(w, blocksize)
        absmax = blocks.abs().amax(dim=1) if absmax_fn is None else absmax_fn(w, blocks, n, blocksize)
        scaled = (blocks / absmax.expand(blocks.shape[0]).reshape(-1, 1)).reshape(-1)[:n]
        return (pick or _nearest)(scaled, levels), absmax
    return quantize


def q_reshape_blocksize_first(w, levels, blocksize):    # reshape(blocksize, -1), absmax per row
    blocks = w.reshape(blocksize, -1)
    absmax = blocks.abs().amax(dim=1)
    return _nearest((blocks / absmax[:, None]).reshape(-1), levels), absmax


def q_reshape_blocksize_first_dim0(w, levels, blocksize):   # same, reduced over dim 0
    blocks = w.reshape(blocksize, -1)
    absmax = blocks.abs().amax(dim=0)
    return _nearest((blocks / absmax[None, :]).reshape(-1), levels), absmax


def q_per_row(w, levels, blocksize):                    # one absmax per row of the weight
    absmax = w.abs().amax(dim=1)
    return _nearest((w / absmax[:, None]).reshape(-1), levels), absmax


def q_row_blocks(w, levels, blocksize):                 # each row padded and blocked on its own
    rows = F.pad(w, (0, -w.shape[1] % blocksize)).reshape(w.shape[0], -1, blocksize)
    absmax = rows.abs().amax(dim=-1)
    scaled = (rows / absmax[..., None]).reshape(w.shape[0], -1)[:, :w.shape[1]]
    return _nearest(scaled.reshape(-1), levels), absmax.reshape(-1)


q_per_tensor = _quantize_with(lambda w, b, n, bs: w.abs().max().expand(b.shape[0]))
q_per_tensor_scalar = _quantize_with(lambda w, b, n, bs: w.abs().max().reshape(1))
q_signed_max = _quantize_with(
    lambda w, b, n, bs: F.pad(w.reshape(-1), (0, -n % bs), value=-1e30).reshape(-1, bs).amax(dim=1))


def _tail_global(w, blocks, n, blocksize):
    absmax = blocks.abs().amax(dim=1)
    if n % blocksize:
        absmax[-1] = w.abs().max()
    return absmax


q_tail_global = _quantize_with(_tail_global)


def q_tail_dropped(w, levels, blocksize):
    flat = w.reshape(-1)
    full = flat.numel() - flat.numel() % blocksize
    blocks = flat[:full].reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    return _nearest((blocks / absmax[:, None]).reshape(-1), levels), absmax


def q_tail_merged(w, levels, blocksize):                # leftovers join the last full block
    flat = w.reshape(-1)
    n = flat.numel()
    n_full = max(n // blocksize, 1)
    block = (torch.arange(n) // blocksize).clamp(max=n_full - 1)
    absmax = torch.zeros(n_full).scatter_reduce(0, block, flat.abs(), "amax")
    return _nearest(flat / absmax[block], levels), absmax


def q_front_padding(w, levels, blocksize):
    flat = w.reshape(-1)
    pad = -flat.numel() % blocksize
    blocks = F.pad(flat, (pad, 0)).reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    return _nearest((blocks / absmax[:, None]).reshape(-1)[pad:], levels), absmax


def q_padding_not_cropped(w, levels, blocksize):
    blocks, n = _blocks(w, blocksize)
    absmax = blocks.abs().amax(dim=1)
    return _nearest((blocks / absmax[:, None]).reshape(-1), levels), absmax


def q_no_tail_handling(w, levels, blocksize):           # crashes when blocksize does not divide numel
    blocks = w.reshape(-1, blocksize)
    absmax = blocks.abs().amax(dim=1)
    return _nearest((blocks / absmax[:, None]).reshape(-1), levels), absmax


def _by_index_sorted(scaled, levels):                   # index into the sorted table by rounding
    _, order = levels.sort()
    return order[torch.round((scaled + 1) * 7.5).long()]


def _by_index_table(scaled, levels):                    # the same, into the table as given
    return torch.round((scaled + 1) * 7.5).long()


def _sign_dropped(scaled, levels):
    return _nearest(scaled.abs(), levels)


def _sign_flipped(scaled, levels):
    return _nearest(-scaled, levels)


def _floor_level(scaled, levels):
    sorted_levels, order = levels.sort()
    return order[(torch.searchsorted(sorted_levels, scaled, right=True) - 1).clamp(0, 15)]


def _toward_zero(scaled, levels):
    candidates = torch.where(levels[None, :] * torch.sign(scaled)[:, None] >= 0, levels, 9.0)
    fits = candidates.abs() <= scaled.abs()[:, None] + 1e-7
    distance = torch.where(fits, (scaled[:, None] - candidates).abs(), 9.0)
    return distance.argmin(dim=1)


def _no_zero_level(scaled, levels):
    return _nearest(scaled, torch.where(levels == 0, torch.tensor(9.0), levels))


def _no_subnormal_levels(scaled, levels):
    return _nearest(scaled, torch.where(levels.abs() < 0.01, torch.tensor(9.0), levels))


def _bucketize_unsorted(scaled, levels):                # assumes the table is sorted: it is not
    return torch.bucketize(scaled, (levels[1:] + levels[:-1]) / 2).clamp(0, 15)


def dq_no_absmax(codes, absmax, levels, blocksize, shape):
    return levels[codes].reshape(shape)


def dq_divides(codes, absmax, levels, blocksize, shape):
    n = codes.numel()
    return (levels[codes] / absmax.repeat_interleave(blocksize)[:n]).reshape(shape)


def dq_flat(codes, absmax, levels, blocksize, shape):
    return dequantize_fp4(codes, absmax, levels, blocksize, shape).reshape(-1)


def dq_reshape_blocksize_first(codes, absmax, levels, blocksize, shape):
    return (levels[codes].reshape(blocksize, -1) * absmax[None, :]).reshape(shape)


def dq_one_absmax(codes, absmax, levels, blocksize, shape):
    return (levels[codes] * absmax.max()).reshape(shape)


def dq_no_tail_handling(codes, absmax, levels, blocksize, shape):
    return (levels[codes].reshape(-1, blocksize) * absmax[:, None]).reshape(shape)


RESHAPE = ("blocks taken with reshape\\(blocksize, -1\\)", r"CONSECUTIVE values")


@pytest.mark.parametrize("quant, dequant, what, hint", [
    (q_reshape_blocksize_first, dequantize_fp4, *RESHAPE),
    (q_reshape_blocksize_first_dim0, dequantize_fp4, *RESHAPE),
    (quantize_fp4, dq_reshape_blocksize_first, *RESHAPE),
    (q_per_tensor, dequantize_fp4, "one absmax for the whole tensor", "its own absmax"),
    (q_per_tensor_scalar, dequantize_fp4, "one absmax for the whole tensor", "its own absmax"),
    (q_per_row, dequantize_fp4, "one absmax per row of the weight", "cross row boundaries"),
    (q_row_blocks, dequantize_fp4, "one absmax per row of the weight", "cross row boundaries"),
    (q_signed_max, dequantize_fp4, r"largest value, not the largest \|value\|", "negative weights count"),
    (q_tail_dropped, dequantize_fp4, "the last, shorter block is missing", r"315 = 9 x 32 \+ 27"),
    (q_tail_merged, dequantize_fp4, "merged into the previous block", "a block of their own"),
    (q_tail_global, dequantize_fp4, "the last block got the absmax of the whole tensor",
     "among its 27 values only"),
    (q_front_padding, dequantize_fp4, "the padding went at the front", r"pad at the end"),
    (q_padding_not_cropped, dequantize_fp4, "returned 320 codes, expected one per weight: 315",
     "codes for the padding too"),
    (_quantize_with(pick=_by_index_sorted), dequantize_fp4, "rounding to an index", "nearest in VALUE"),
    (_quantize_with(pick=_by_index_table), dequantize_fp4, "rounding to an index", "nearest in VALUE"),
    (_quantize_with(pick=_sign_dropped), dequantize_fp4, "the sign was dropped", "negative ones included"),
    (_quantize_with(pick=_sign_flipped), dequantize_fp4, "every sign is flipped",
     "sign bit is set for w < 0"),
    (_quantize_with(pick=_floor_level), dequantize_fp4, "the level below it", "nearest, not floor"),
    (_quantize_with(pick=_toward_zero), dequantize_fp4, "rounded toward zero", "nearest, not truncated"),
    (_quantize_with(pick=_no_zero_level), dequantize_fp4, "zero level was left out", "zero code"),
    (_quantize_with(pick=_no_subnormal_levels), dequantize_fp4, r"subnormal levels \(0 and \+-1/192\)",
     "keep all 16 levels"),
    (_quantize_with(pick=_bucketize_unsorted), dequantize_fp4, "not the nearest FP4 level", "not sorted"),
    (quantize_fp4, dq_no_absmax, "the absmax is missing", r"levels\[code\] \* absmax"),
    (quantize_fp4, dq_divides, "divided by the absmax", "dequantizing multiplies"),
    (quantize_fp4, dq_flat, r"returned shape \(576,\), expected \(12, 48\)", "reshape the result"),
    (quantize_fp4, dq_one_absmax, "one absmax for every block", "its own block"),
])
def test_fp4_blockwise_mistakes_are_named(quant, dequant, what, hint):
    _rejects(ch06.check_fp4_blockwise, quant, dequant, what=what, hint=hint)


@pytest.mark.parametrize("quant, dequant, what", [
    (q_no_tail_handling, dequantize_fp4, r"quantize_fp4\(w of shape \(7, 45\).*raised RuntimeError"),
    (quantize_fp4, dq_no_tail_handling, r"dequantize_fp4\(.*shape=\(7, 45\)\) raised RuntimeError"),
])
def test_fp4_without_a_short_last_block_is_a_readable_fail(quant, dequant, what):
    _rejects(ch06.check_fp4_blockwise, quant, dequant, what=what,
             hint=r"numel = 315 is not a multiple of blocksize = 32: the last block holds the 27")


def test_fp4_oracle_is_bitsandbytes_and_cases_defeat_shortcuts():
    """The cases: several block sizes, numel never blocksize^2, short last blocks; the checker's
    own blocks agree with bitsandbytes' absmax, and values stay clear of level midpoints."""
    sizes = set()
    for w, blocksize, absmax, w_hat in ch06.fp4._fp4_cases():
        n = w.numel()
        sizes.add(blocksize)
        assert n != blocksize ** 2 and w.shape[0] != w.shape[1]
        assert absmax.numel() == -(-n // blocksize)
        assert torch.allclose(ch06.fp4._block_absmax(w.reshape(-1).double(), blocksize), absmax)
        codes, student_absmax = quantize_fp4(w, ch06.fp4._bnb_fp4_table(), blocksize)
        assert torch.allclose(dequantize_fp4(codes, student_absmax, ch06.fp4._bnb_fp4_table(),
                                             blocksize, w.shape).double(), w_hat, atol=1e-7)
    assert sizes == {32, 64, 128}
    assert [c[0].numel() % c[1] for c in ch06.fp4._fp4_cases()][0] == 0     # whole blocks first
