"""Assignment 06, int8 half: absmax int8 with one scale per row (the warm-up) and the LLM.int8()
outlier split, checked against ``effkit.quant.int8_vectorwise`` / ``int8_matmul_with_outliers``
(themselves checked against bitsandbytes' ``Linear8bitLt``) and the fp32 product."""
from __future__ import annotations

import functools

import torch

from ...quant import layers as _layers
from .._core import fail, passed
from .plumbing import as_float64, as_pair, close, run_student

MATMUL_SHAPE_HINT = ("a shape error: print the shapes of your intermediate tensors. Expected: "
                     "x (tokens, in), w (out, in), the outlier mask (in,), each scale (rows, 1), "
                     "y (tokens, out)")


# ---------------------------------------------------------------- int8, one scale per row
def _rows_int8(a: torch.Tensor):
    """Absmax int8 per row in float64: codes round(a / scale), scale (rows, 1); zero rows get 1."""
    scale = a.abs().amax(dim=1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(a / scale), scale


def _away_from_ties(a: torch.Tensor) -> torch.Tensor:
    """Move every value whose ``a / (row absmax / 127)`` lies within 0.01 of k + 1/2 to k + 0.52,
    so that every correct way of computing round(a / scale) (divide, multiply by 127 / absmax,
    float32 or float64) gives the same code. The row maxima (exactly +-127) never move."""
    a = a.double()
    scale = a.abs().amax(dim=1, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    r = a / scale
    near = (r - r.floor() - 0.5).abs() < 0.01
    return torch.where(near, (r.floor() + 0.52) * scale, a).float()


@functools.lru_cache(maxsize=None)
def _int8_weights():
    g = torch.Generator().manual_seed(806)
    square = torch.randn(7, 7, generator=g) * torch.tensor([0.01, 0.05, 0.3, 1.0, 2.0, 0.5, 0.1])[:, None]
    square[2, 4] = -1.5 * square[2].abs().max()         # a row whose largest magnitude is negative
    wide = torch.randn(5, 13, generator=g) * torch.tensor([0.2, 3.0, 0.04, 1.0, 0.6])[:, None]
    wide[1, 7] = -1.4 * wide[1].abs().max()
    tall = torch.randn(12, 3, generator=g) * torch.linspace(0.05, 2.0, 12)[:, None]
    return tuple((f"{tuple(w.shape)}", _away_from_ties(w)) for w in (square, wide, tall))


def check_int8_rows(int8_rows) -> None:
    """``int8_rows(a) -> (codes (rows, cols), scale (rows, 1))``: absmax int8, one scale per row."""
    for label, w in _int8_weights():
        out = run_student(f"int8_rows(a of shape {label})", int8_rows, w.clone())
        pair = as_pair(out, "int8_rows", "(codes, scale)")
        codes, scale = (as_float64(t, f"int8_rows(a {label})") for t in pair)
        q = _layers.int8_vectorwise(w)
        want_codes = q.int_codes().reshape(w.shape).double()
        want_scale = q.scale.double()[:, None]
        _diagnose_scale(w.double(), codes, scale, want_scale, label)
        _diagnose_codes(w.double(), codes, want_codes, want_scale, label)
    passed("int8_rows: one absmax / 127 scale per row, shape (rows, 1), codes round(a / scale), "
           "on square (7, 7), wide (5, 13) and tall (12, 3) tensors")


def _diagnose_scale(w, codes, scale, want, label) -> None:
    rows, cols = w.shape
    row_max = w.abs().amax(dim=1)
    col_max = w.abs().amax(dim=0)
    case = f"for a of shape {label}"
    if tuple(scale.shape) != (rows, 1):
        if scale.numel() == 1:
            fail(f"one scale for the whole tensor {case}: scale has shape {tuple(scale.shape)}",
                 "vector-wise int8 (LLM.int8()) gives every row its own scale: "
                 "a.abs().amax(dim=1, keepdim=True) / 127")
        if tuple(scale.shape) == (rows,) and rows == cols and close(scale, row_max / 127):
            extra = ""
            if codes.shape == w.shape and torch.equal(codes, torch.round(w / (row_max / 127)[None, :])):
                extra = (f"; your codes divide column j by row j's scale (a 1-D scale lines up "
                         "with the LAST dim), which goes unnoticed on a square tensor")
            fail(f"scale has shape ({rows},) {case}, expected ({rows}, 1){extra}",
                 "keep the reduced dim: a.abs().amax(dim=1, keepdim=True) / 127 has shape "
                 "(rows, 1) and broadcasts along each row, dividing row i by its own scale")
        if scale.numel() == cols and close(scale.reshape(-1), col_max / 127):
            fail(f"one scale per column {case}: scale has shape {tuple(scale.shape)}",
                 "reduce along each row, dim=1 (rows are output channels or tokens), not dim=0")
        if tuple(scale.shape) in ((rows,), (1, rows)):
            fail(f"scale has shape {tuple(scale.shape)} {case}, expected ({rows}, 1)",
                 "keep the reduced dim: a.abs().amax(dim=1, keepdim=True) / 127 has shape "
                 "(rows, 1) and broadcasts along each row")
        fail(f"scale has shape {tuple(scale.shape)} {case}, expected ({rows}, 1)",
             "one scale per row, as a column: a.abs().amax(dim=1, keepdim=True) / 127")
    if close(scale, want):
        return
    got = f"{case}: got {scale[:3, 0].tolist()}..., expected {want[:3, 0].tolist()}..."
    for candidate, what, hint in (
            (row_max[:, None] / 128, "off-by-one in the int8 range",
             "symmetric int8 uses codes -127..127 (it leaves -128 unused so that a and -a round "
             "alike): scale = absmax / 127"),
            (row_max[:, None] / 255, "scale spread over 255 steps",
             "255 steps is the unsigned (asymmetric) range; the symmetric range is -127..127, so "
             "scale = absmax / 127"),
            (row_max[:, None], "the scale is the absmax itself",
             "divide by 127: the largest |value| must land on code 127"),
            (w.amax(dim=1, keepdim=True) / 127, "the scale uses the largest value, not the largest |value|",
             "negative values count too: a.abs().amax(dim=1, keepdim=True)"),
            (w.abs().max().expand(rows, 1) / 127, "one scale for the whole tensor (repeated per row)",
             "every row gets its own absmax: a.abs().amax(dim=1, keepdim=True) / 127"),
            (col_max[:, None] / 127 if rows == cols else None, "one scale per column",
             "reduce along each row, dim=1 (rows are output channels or tokens), not dim=0")):
        if close(scale, candidate):
            fail(f"{what} {got}", hint)
    fail(f"scale is wrong {got}", "scale = a.abs().amax(dim=1, keepdim=True) / 127")


def _diagnose_codes(w, codes, want, scale, label) -> None:
    case = f"for a of shape {label}"
    if tuple(codes.shape) != tuple(w.shape):
        fail(f"codes have shape {tuple(codes.shape)} {case}, expected {tuple(w.shape)}",
             "one code per value, same shape as the input (no flattening)")
    if torch.equal(codes, want):
        return
    raw = w / scale
    if not torch.equal(codes, codes.round()):
        fail(f"codes are not integers {case}", "round to the nearest integer: torch.round(a / scale)")
    on_integer = (raw - raw.round()).abs() < 1e-3        # float32 or float64 may land either side
    if any(bool(((codes == cut) | on_integer).all()) for cut in (raw.trunc(), raw.floor())):
        fail(f"codes are truncated, not rounded {case}", "use torch.round, not floor, .int() or .long()")
    fail(f"{int((codes != want).sum())} of {codes.numel()} codes differ from round(a / scale) {case}",
         "codes = torch.round(a / scale) with the (rows, 1) scale")


# ---------------------------------------------------------------- LLM.int8() with outliers
def _int8_reference(x, w, threshold, *, compare=">=", select="column", outliers="float",
                    token_scale="regular", weight="int8", scales="both") -> torch.Tensor:
    """LLM.int8() in float64, with switches that reproduce the classic mistakes.

    compare: ">=" (bitsandbytes) or ">"; select: outliers are whole feature "column"s, single
    "element"s, or whole token "row"s; outliers: the outlier part in "float", quantized to
    "int8" with its own per-token scales, left in the int8 product ("none") or counted in
    "both" parts; token_scale: from the "regular" features, from "all" of them, or from x with
    only the "elements" at or above the threshold set to 0; weight: the
    outlier columns of W dequantized from "int8" or the original "fp32" ones; scales: "both",
    "no-token" or "no-weight" scale applied to the int32 product.
    """
    x, w = x.double(), w.double()
    big = x.abs() >= threshold if compare == ">=" else x.abs() > threshold
    if select == "column":
        mask = big.any(dim=0, keepdim=True).expand_as(x)
    elif select == "element":
        mask = big
    else:
        mask = big.any(dim=1, keepdim=True).expand_as(x)
    wq, sw = _rows_int8(w)
    x_reg, x_out = x.masked_fill(mask, 0.0), x.masked_fill(~mask, 0.0)
    if outliers in ("none", "both"):
        xq, sx = _rows_int8(x)
    elif token_scale in ("all", "elements"):
        sx = _rows_int8(x if token_scale == "all" else x.masked_fill(big, 0.0))[1]
        xq = torch.round(x_reg / sx)
    else:
        xq, sx = _rows_int8(x_reg)
    y = xq @ wq.T
    if scales != "no-token":
        y = y * sx
    if scales != "no-weight":
        y = y * sw.T
    w_out = w if weight == "fp32" else wq * sw
    if outliers in ("float", "both"):
        y = y + x_out @ w_out.T
    elif outliers == "int8":
        q, s = _rows_int8(x_out)
        y = y + (q @ wq.T) * s * sw.T
    return y


MATMUL_MISTAKES = (
    (dict(compare=">"), "the threshold was applied with > instead of >=",
     "a feature is an outlier when |x| >= threshold (bitsandbytes uses >=); one column here "
     "reaches exactly the threshold and nothing more"),
    (dict(select="element"), "outliers were picked value by value, not as whole feature columns",
     "if any token has |x| >= threshold in feature j, the whole column j goes to the float part, "
     "for every token: (x.abs() >= threshold).any(dim=0)"),
    (dict(select="row"), "outliers were picked per token (row), not per feature column",
     "LLM.int8() splits by input feature: (x.abs() >= threshold).any(dim=0), a mask over the "
     "columns, not .any(dim=1) over the tokens"),
    (dict(outliers="none"), "the outlier columns went through int8 with everything else",
     "split them off: set the outlier columns of x to 0 before quantizing it, and multiply "
     "them in floating point"),
    (dict(outliers="int8"), "the outlier part was computed in int8",
     "the outlier part stays in floating point: x[:, cols] @ (w_codes[:, cols] * w_scale).T, "
     "with no rounding of the outlier activations"),
    (dict(outliers="both"), "the outlier columns are counted twice (in the int8 part and the float part)",
     "zero the outlier columns of x before int8_rows, so the int8 product leaves them out"),
    (dict(token_scale="all"), "each token's scale was taken over all features, outliers included",
     "zero the outlier columns BEFORE computing the token scales: the point of the split is that "
     "an outlier no longer stretches its token's scale and rounds the small values away"),
    (dict(token_scale="elements"), "each token's scale still counts the small values of the outlier columns",
     "zero the whole outlier columns before int8_rows, not only the values at or above the "
     "threshold: the int8 part has no outlier columns at all, so they must not set any token's "
     "scale (bitsandbytes 0.50's default kernel computes its scales this way; the LLM.int8() "
     "paper and the chapter leave the whole columns out)"),
    (dict(weight="fp32"), "the outlier part used the original float weight",
     "only the int8 weight is kept (that is the memory saving): dequantize its outlier columns, "
     "w_codes[:, cols] * w_scale, as bitsandbytes does"),
    (dict(scales="no-weight"), "the weight scales are missing from the int8 product",
     "rescale the int32 product by both: (xq @ wq.T) * x_scale * w_scale.T"),
    (dict(scales="no-token"), "the token scales are missing from the int8 product",
     "rescale the int32 product by both: (xq @ wq.T) * x_scale * w_scale.T"),
)


def _with_ties_avoided(x: torch.Tensor, threshold: float) -> torch.Tensor:
    cols = (x.abs() >= threshold).any(dim=0, keepdim=True).expand_as(x)
    return torch.where(cols, x, _away_from_ties(x.masked_fill(cols, 0.0)))


@functools.lru_cache(maxsize=None)
def _matmul_cases():
    g = torch.Generator().manual_seed(8006)
    # Case 1: 9 tokens, 37 features, 23 outputs. Column 5 has two clear outliers, column 17 one
    # value of exactly -6.0 (the >= boundary), column 30 a value of 5.99 (not an outlier).
    # Token 0's largest value, 3.4, sits in outlier column 5 without being an outlier itself.
    x1 = (torch.randn(9, 37, generator=g) * 0.8).clamp(-3.0, 3.0)
    x1[2, 5], x1[6, 5], x1[7, 17], x1[4, 30], x1[0, 5] = 8.5, -11.0, -6.0, 5.99, 3.4
    w1 = torch.randn(23, 37, generator=g) * 0.1
    # Case 2: 16 tokens, 40 features, 11 outputs, threshold 3.5: a few columns from the tails.
    x2 = torch.randn(16, 40, generator=g)
    x2[3, 12], x2[11, 33] = 7.0, -9.0
    w2 = torch.randn(11, 40, generator=g) * torch.linspace(0.02, 0.3, 11)[:, None]
    # Case 3: no outliers at all (threshold 20): plain vector-wise int8.
    x3 = torch.randn(5, 29, generator=g)
    w3 = torch.randn(8, 29, generator=g) * 0.2
    cases = []
    for x, w, threshold in ((x1, w1, 6.0), (x2, w2, 3.5), (x3, w3, 20.0)):
        x, w = _with_ties_avoided(x, threshold), _away_from_ties(w)
        cases.append((x, w, threshold))
    return tuple(cases)


def check_int8_matmul(int8_matmul) -> None:
    """``int8_matmul(x (tokens, in), w (out, in), threshold) -> y (tokens, out)``, LLM.int8()."""
    for x, w, threshold in _matmul_cases():
        call = f"int8_matmul(x {tuple(x.shape)}, w {tuple(w.shape)}, threshold={threshold})"
        y = as_float64(run_student(call, int8_matmul, x.clone(), w.clone(), threshold,
                          hint=MATMUL_SHAPE_HINT), call)
        want = _layers.int8_matmul_with_outliers(x, w, threshold).double()
        if tuple(y.shape) != tuple(want.shape):
            hint = ("y = x @ w.T has shape (tokens, out)" if tuple(y.shape) == tuple(want.shape[::-1])
                    else "y has one row per token and one column per output feature: (tokens, out)")
            fail(f"{call} returned shape {tuple(y.shape)}, expected {tuple(want.shape)}", hint)
        if close(y, want):
            continue
        n_out = int((x.abs() >= threshold).any(dim=0).sum())
        for kwargs, what, hint in MATMUL_MISTAKES:
            mistake = _int8_reference(x, w, threshold, **kwargs)
            if not close(mistake, want) and close(y, mistake):
                fail(f"{what}: {call} ({n_out} outlier columns)", hint)
        exact = x.double() @ w.double().T
        fail(f"{call} differs from LLM.int8() by up to {float((y - want).abs().max()):.3g} "
             f"(|y| up to {float(want.abs().max()):.3g}; the int8 answer itself is within "
             f"{float((want - exact).abs().max()):.3g} of the fp32 product)",
             "outlier columns: (x.abs() >= threshold).any(dim=0); int8 part: int8_rows of x with "
             "those columns set to 0 and of w, (xq @ wq.T) * x_scale * w_scale.T; float part: "
             "x[:, cols] @ (wq[:, cols] * w_scale).T")
    passed("int8_matmul: outlier columns (|x| >= threshold, any token) in float, the rest in int8 "
           "with per-token and per-row scales; equal to ek.quant.int8_matmul_with_outliers on "
           "3 cases (one with a value exactly at the threshold, one with no outliers)")
