"""Assignment 06, FP4 half: bitsandbytes' 16 FP4 levels and blockwise FP4 quantization, checked
against bitsandbytes itself (``get_4bit_type("fp4")``, ``quantize_4bit`` / ``dequantize_4bit``)."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .._core import fail, passed
from .plumbing import as_float64, as_pair, close, run_student


# ---------------------------------------------------------------- FP4: the levels
@functools.lru_cache(maxsize=None)
def _bnb_fp4_table() -> torch.Tensor:
    import bitsandbytes.functional as bnbf      # imported here: it takes seconds and prints a note
    return bnbf.get_4bit_type("fp4", device="cpu").float().clone()


def check_fp4_levels(fp4_levels) -> None:
    """``fp4_levels() -> 16 values`` in [-1, 1], in the student's code order (any order)."""
    out = run_student("fp4_levels()", fp4_levels)
    levels = as_float64(out, "fp4_levels()").reshape(-1)
    table = _bnb_fp4_table().double()
    if levels.numel() != 16:
        hint = ("+0 and -0 are two codes of the same value: keep both (2 signs x 8 magnitudes)"
                if levels.numel() == 15 else
                "4 bits give 2^4 = 16 codes: 1 sign bit x 2 exponent bits x 1 mantissa bit")
        fail(f"fp4_levels returned {levels.numel()} values, FP4 has 16 codes", hint)
    if not torch.isfinite(levels).all():
        fail("fp4_levels contains inf or nan", "every code is a finite number")
    if (levels < 0).sum() == 0:
        fail("no negative levels: the sign bit is not used",
             "the sign bit makes codes 8..15 the negatives of codes 0..7: value = (-1)^s * magnitude")
    top = float(levels.abs().max())
    if abs(top - 1) > 1e-6:
        fail(f"the levels are not normalised: the largest magnitude is {top:.4g}, not 1",
             f"divide every level by the largest magnitude ({top:.4g}) so the table spans "
             "[-1, 1], like w / absmax")
    if not (levels == 0).any():
        fail("no zero level: exponent field 0 was treated like the others",
             "exponent field 0 is subnormal: no implicit leading 1, so its magnitude is m * 2^-4, "
             "which is exactly 0 for m = 0")
    magnitudes = levels.abs().sort().values
    if not torch.allclose(levels.sort().values, (-levels).sort().values, atol=1e-7):
        fail("the levels are not symmetric: some value v has no -v",
             "the sign bit only flips the sign: codes 8..15 are the negatives of codes 0..7")
    smallest = float(magnitudes[magnitudes > 0].min())
    want_smallest = float(table.abs()[table != 0].min())            # 0.0625 / 12 = 1/192
    if abs(smallest - want_smallest) > 1e-6:
        what = f"the smallest non-zero level is {smallest:.5f} = 1/{1 / smallest:.4g}, expected 1/192"
        if abs(smallest - 1 / 12) < 1e-6:
            what += " (that is the OCP/MX E2M1 subnormal, 0.5 out of 6)"
        fail(what, "bitsandbytes' subnormal (exponent field 0, m = 1) is 2^-4 = 0.0625 before "
                   "normalising by 12, i.e. 1/192 of the block's absmax")
    if not torch.allclose(levels.sort().values, table.sort().values, atol=1e-6):
        fail(f"the levels differ from bitsandbytes' FP4 table by up to "
             f"{float((levels.sort().values - table.sort().values).abs().max()):.3g}",
             "normal numbers (exponent field e = 1, 2, 3): (1 + m/2) * 2^e; subnormal (e = 0): "
             "m * 2^-4; then both signs, then divide by the largest magnitude")
    order = ("the same code order as bitsandbytes" if torch.allclose(levels, table, atol=1e-6)
             else "a code order of your own, which is fine: codes are only names for the values")
    passed(f"fp4_levels: the 16 values of bitsandbytes' FP4 (+-0, +-1/192, +-1/6 ... +-1), {order}")


# ---------------------------------------------------------------- FP4: blockwise
FP4_CASES = (((12, 48), 64, 4601),     # 576 = 9 x 64: whole blocks, numel != 64^2, not square
             ((7, 45), 32, 4602),      # 315 = 9 x 32 + 27: a short last block, odd sizes
             ((5, 101), 128, 4603),    # 505 = 3 x 128 + 121
             ((3, 10), 64, 4604))      # 30 < 64: a single, short block


def _fp4_midpoints() -> torch.Tensor:
    levels = _bnb_fp4_table().double().unique()                       # sorted, one zero
    return (levels[:-1] + levels[1:]) / 2


def _per_element(absmax: torch.Tensor, n: int, blocksize: int) -> torch.Tensor:
    return absmax.reshape(-1).double().repeat_interleave(blocksize)[:n]


def _block_absmax(flat: torch.Tensor, blocksize: int) -> torch.Tensor:
    return F.pad(flat, (0, -flat.numel() % blocksize)).reshape(-1, blocksize).abs().amax(dim=1)


def _fp4_weight(shape, blocksize: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = shape[0] * shape[1]
    n_blocks, rem = -(-n // blocksize), n % blocksize
    # Blocks of very different ranges (x1 ... x81, block 0 the largest), so one absmax per tensor
    # or per row is visibly wrong.
    factors = 0.02 * 3.0 ** ((torch.arange(n_blocks) + 4) % 5).double()
    flat = torch.randn(n, generator=g, dtype=torch.float64) * factors.repeat_interleave(blocksize)[:n]
    absmax = _block_absmax(flat, blocksize)
    flat[min(blocksize, n) // 2] = -1.37 * absmax[0]     # block 0's largest magnitude is negative
    if rem and n_blocks > 1:
        # A short last block larger than the block before it and smaller than the largest one,
        # so that merging it into its neighbour, dropping it, or giving it the tensor's absmax
        # all change some absmax.
        absmax = _block_absmax(flat, blocksize)
        tail = flat[n - rem:]
        flat[n - rem:] = tail / tail.abs().max() * (absmax[-2] * absmax[:-1].max()).sqrt()
    absmax = _block_absmax(flat, blocksize)
    flat[3] = 0.0                             # a pruned weight: exactly 0
    flat[5] = 0.001 * absmax[0]               # rounds to 0
    flat[7] = -0.005 * absmax[0]              # rounds to -1/192, the subnormal level
    flat[9] = 0.03 * absmax[0]                # still the subnormal 1/192, not 1/6
    # Keep every scaled value at least 1e-3 away from a decision boundary (a midpoint between two
    # levels) and from a level other than 0 and +-1, so that w / absmax and w * (1 / absmax),
    # float32 or float64, agree on the nearest level and on the level below.
    am = _per_element(absmax, n, blocksize)
    s = flat / am
    levels = _bnb_fp4_table().double().unique()
    points = torch.cat([_fp4_midpoints(), levels[(levels != 0) & (levels.abs() != 1)]])
    d = s[:, None] - points
    i = d.abs().argmin(dim=1)
    near = d.gather(1, i[:, None])[:, 0]
    s = torch.where(near.abs() < 1e-3, points[i] + torch.where(near < 0, -2e-3, 2e-3), s)
    return (s * am).float().reshape(shape)


@functools.lru_cache(maxsize=None)
def _fp4_cases():
    """(w, blocksize, absmax, w_hat) per case, with absmax and w_hat from bitsandbytes."""
    import bitsandbytes.functional as bnbf
    cases = []
    for shape, blocksize, seed in FP4_CASES:
        w = _fp4_weight(shape, blocksize, seed)
        n = w.numel()
        # bitsandbytes blocks the flattened tensor. We hand it the flat weight plus one zero when
        # numel is odd: a zero never changes a block's absmax, and this keeps bitsandbytes 0.50's
        # CPU dequantize on its C++ kernel (its torch.compile fallback for odd sizes takes
        # seconds, and its 2-D kernel restarts blocks at every row when blocksize does not
        # divide the row length).
        flat = F.pad(w.reshape(-1), (0, n % 2))
        packed, state = bnbf.quantize_4bit(flat, blocksize=blocksize, quant_type="fp4")
        w_hat = bnbf.dequantize_4bit(packed, state).reshape(-1)[:n].reshape(shape)
        cases.append((w, blocksize, state.absmax.clone().double(), w_hat.double()))
    return tuple(cases)


def _absmax_mistakes(w: torch.Tensor, blocksize: int):
    """(what the mistake gives, what, hint) for the absmax of one case."""
    flat = w.reshape(-1).double()
    n, rows, cols = flat.numel(), *w.shape
    rem, full = n % blocksize, n - n % blocksize
    right = _block_absmax(flat, blocksize)
    out = []
    if rem == 0:
        strided = flat.reshape(blocksize, -1)
        hint = (f"blocks are {blocksize} CONSECUTIVE values of the flattened weight: "
                "reshape(-1, blocksize) makes one block per row. reshape(blocksize, -1) has the "
                f"same values in the wrong places: every {n // blocksize}th value ends up in the "
                "same block (it only looks right when numel = blocksize^2)")
        out += [(strided.abs().amax(dim=1), "blocks taken with reshape(blocksize, -1)", hint),
                (strided.abs().amax(dim=0), "blocks taken with reshape(blocksize, -1)", hint)]
    whole = flat.abs().max()
    per_tensor = ("one absmax for the whole tensor",
                  f"FP4, like NF4, gives each block of {blocksize} consecutive values its own absmax "
                  f"({right.numel()} blocks here)")
    out += [(whole.reshape(1), *per_tensor), (whole.expand(right.numel()), *per_tensor)]
    out.append((w.double().abs().amax(dim=1), "one absmax per row of the weight",
                "blocks run over the FLATTENED weight, blocksize values each, and cross row "
                "boundaries; only the very last block may be shorter"))
    if cols % blocksize:
        per_row = F.pad(w.double(), (0, -cols % blocksize)).reshape(rows, -1, blocksize)
        out.append((per_row.abs().amax(dim=-1).reshape(-1), "blocks restart at every row",
                    f"flatten the whole weight first: the rows have {cols} values, not a multiple "
                    f"of {blocksize}, and bitsandbytes' blocks cross row boundaries"))
    signed = F.pad(flat, (0, -n % blocksize), value=-float("inf")).reshape(-1, blocksize).amax(dim=1)
    out.append((signed, "absmax is the largest value, not the largest |value|",
                "negative weights count too: .abs().amax(dim=1)"))
    if rem:
        split = f"{n} = {full // blocksize} x {blocksize} + {rem}"
        out.append((right[:-1], "the last, shorter block is missing",
                    f"{split}: bitsandbytes keeps the {rem} leftover values as a last block "
                    "with its own absmax (pad with zeros to whole blocks, or treat the tail apart)"))
        if full:
            merged = right[:-1].clone()
            merged[-1] = flat[full - blocksize:].abs().max()
            out.append((merged, "the leftover values were merged into the previous block",
                        f"{split}: the {rem} leftover values form a block of their own, with "
                        "their own absmax"))
            out.append((torch.cat([right[:-1], whole.reshape(1)]),
                        "the last block got the absmax of the whole tensor",
                        f"{split}: the last block's absmax is the largest |value| among its {rem} "
                        "values only"))
        front = F.pad(flat, (blocksize - rem, 0)).reshape(-1, blocksize).abs().amax(dim=1)
        out.append((front, "the padding went at the front",
                    "blocks start at element 0 and only the last block is short: pad at the "
                    "end, F.pad(flat, (0, pad))"))
    return right, out


def _check_absmax(absmax: torch.Tensor, w: torch.Tensor, blocksize: int, want: torch.Tensor,
                  call: str) -> None:
    got = absmax.reshape(-1)
    right, mistakes = _absmax_mistakes(w, blocksize)
    if not torch.allclose(right, want, rtol=1e-6):
        raise RuntimeError("the checker's own blocks differ from bitsandbytes': a checker bug")
    if got.numel() == want.numel() and torch.allclose(got, want, rtol=1e-5, atol=0):
        return
    for candidate, what, hint in mistakes:
        if candidate.numel() == got.numel() and torch.allclose(got, candidate, rtol=1e-5, atol=0):
            fail(f"{what}: {call}", hint)
    n = w.numel()
    if got.numel() != want.numel():
        fail(f"{call} returned {got.numel()} absmax values, expected one per block: "
             f"ceil({n} / {blocksize}) = {want.numel()}",
             "one absmax per block of blocksize consecutive values of the flattened weight; "
             "the last block may be shorter")
    wrong = (~torch.isclose(got, want, rtol=1e-5, atol=0)).nonzero()[:, 0].tolist()
    if n % blocksize and wrong == [want.numel() - 1]:
        fail(f"the last block's absmax is wrong ({float(got[-1]):.4g}, expected "
             f"{float(want[-1]):.4g}) while the others are right: {call}",
             f"the last block holds the {n % blocksize} leftover values only: zeros added as "
             "padding never change an absmax, copied or wrapped values do")
    fail(f"{len(wrong)} of {want.numel()} block absmax values are wrong: {call}",
         "absmax of a block = the largest |value| among its blocksize consecutive values")


def _code_mistakes(s: torch.Tensor, table: torch.Tensor):
    """(levels a mistake picks for the scaled values s, what, hint)."""
    sorted_levels, order = table.sort()
    by_index = torch.round((s + 1) / 2 * 15).clamp(0, 15).long()
    index_hint = ("the levels are not evenly spaced: rounding (w / absmax + 1) * 7.5 picks a "
                  "level by its POSITION in the table; pick the one nearest in VALUE: "
                  "argmin_j |w / absmax - levels[j]|")

    def nearest(among: torch.Tensor) -> torch.Tensor:
        return among[(s[:, None] - among).abs().argmin(dim=1)]

    below = torch.where(sorted_levels[None, :] <= s[:, None] + 1e-9, sorted_levels, -2.0).amax(dim=1)
    mags = sorted_levels[sorted_levels >= 0]
    toward_zero = torch.sign(s) * torch.where(mags[None, :] <= s.abs()[:, None] + 1e-9, mags, 0.0).amax(dim=1)
    return (
        (sorted_levels[by_index], "levels picked by rounding to an index", index_hint),
        (table[by_index], "levels picked by rounding to an index", index_hint),
        (nearest(table).abs(), "negative weights came back positive: the sign was dropped",
         "take the nearest of all 16 levels to w / absmax, negative ones included (or put "
         "the sign of w back on the level you found for |w|)"),
        (-nearest(table), "every sign is flipped",
         "a negative weight needs a negative level: the sign bit is set for w < 0"),
        (below, "each value got the level below it, not the nearest one",
         "nearest, not floor: argmin_j |w / absmax - levels[j]|"),
        (toward_zero, "each value was rounded toward zero, not to the nearest level",
         "nearest, not truncated: argmin_j |w / absmax - levels[j]|"),
        (nearest(table[table != 0]), "no value came back as exactly 0: the zero level was left out",
         "weights below 1/384 of their block's absmax, and exact zeros such as pruned weights, "
         "must get a zero code; keep 0 among the candidate levels"),
        (nearest(table[table.abs() > 0.01]), "the subnormal levels (0 and +-1/192) were left out",
         "weights below about 1/12 of their block's absmax need the subnormal levels 0 and "
         "+-1/192; keep all 16 levels among the candidates"),
    )


def _check_codes(codes: torch.Tensor, w: torch.Tensor, blocksize: int, absmax: torch.Tensor,
                 want_hat: torch.Tensor, call: str) -> None:
    n = w.numel()
    n_blocks = absmax.numel()
    if codes.numel() != n:
        if codes.numel() == n_blocks * blocksize:
            fail(f"{call} returned {codes.numel()} codes, expected one per weight: {n}",
                 "you returned codes for the padding too: crop the flat codes to numel")
        fail(f"{call} returned {codes.numel()} codes, expected one per weight: {n}",
             "one code per value of the flattened weight, the short last block included")
    flat_codes = codes.reshape(-1)
    if not torch.equal(flat_codes, flat_codes.round()) or flat_codes.min() < 0 or flat_codes.max() > 15:
        fail(f"codes must be integers 0..15 (indices into the 16 levels), got values in "
             f"[{float(flat_codes.min()):.3g}, {float(flat_codes.max()):.3g}]: {call}",
             "code = argmin_j |w / absmax - levels[j]|, an index")
    table = _bnb_fp4_table().double()
    am = _per_element(absmax, n, blocksize)
    got = table[flat_codes.long()]
    want = want_hat.reshape(-1) / am
    if torch.allclose(got, want, atol=1e-6):
        return
    s = w.reshape(-1).double() / am
    for candidate, what, hint in _code_mistakes(s, table):
        if not torch.allclose(candidate, want, atol=1e-6) and torch.allclose(got, candidate, atol=1e-6):
            fail(f"{what}: {call}", hint)
    wrong = ~torch.isclose(got, want, atol=1e-6)
    fail(f"{int(wrong.sum())} of {n} codes are not the nearest FP4 level: {call}",
         "code = argmin_j |w / absmax_block - levels[j]| over all 16 levels. The table comes in "
         "bitsandbytes' code order, which is not sorted: argmin works for any order, "
         "searchsorted and bucketize need a sorted table")


def _check_dequantized(w_hat: torch.Tensor, codes: torch.Tensor, absmax: torch.Tensor,
                       w: torch.Tensor, blocksize: int, want: torch.Tensor, call: str) -> None:
    n = w.numel()
    if tuple(w_hat.shape) != tuple(w.shape):
        if w_hat.numel() == n:
            fail(f"{call} returned shape {tuple(w_hat.shape)}, expected {tuple(w.shape)}",
                 "reshape the result to the `shape` argument")
        if w_hat.numel() == absmax.numel() * blocksize:
            fail(f"{call} returned {w_hat.numel()} values, expected {n}",
                 "you returned the padding too: crop to numel before reshaping")
        fail(f"{call} returned shape {tuple(w_hat.shape)}, expected {tuple(w.shape)}",
             "one value per code, in the `shape` argument")
    if close(w_hat, want):
        return
    table = _bnb_fp4_table().double()
    level = table[codes.reshape(-1).long()]
    am = _per_element(absmax, n, blocksize)
    candidates = [
        (level, "the absmax is missing", "w_hat = levels[code] * absmax of the code's block"),
        (level / am, "the levels were divided by the absmax",
         "quantizing divides by absmax, dequantizing multiplies: levels[code] * absmax"),
        (level * absmax.reshape(-1).double().max(), "one absmax for every block",
         "each code is multiplied by the absmax of its own block"),
    ]
    if n % blocksize == 0:
        strided = (level.reshape(blocksize, -1) * absmax.reshape(1, -1).double()).reshape(-1)
        candidates.append((strided, "blocks taken with reshape(blocksize, -1)",
                           "the codes of one block are blocksize CONSECUTIVE values: "
                           "levels[codes].reshape(-1, blocksize) * absmax[:, None]"))
    for candidate, what, hint in candidates:
        if close(w_hat, candidate.reshape(w.shape)):
            fail(f"{what}: {call}", hint)
    fail(f"{call} differs from levels[codes] * absmax of each code's block by up to "
         f"{float((w_hat - want).abs().max()):.3g}",
         "w_hat[i] = levels[codes[i]] * absmax[i // blocksize], then reshape to `shape`")


def check_fp4_blockwise(quantize_fp4, dequantize_fp4) -> None:
    """``quantize_fp4(w, levels, blocksize) -> (codes, absmax)`` and
    ``dequantize_fp4(codes, absmax, levels, blocksize, shape) -> w_hat`` of shape ``shape``.

    ``levels`` is bitsandbytes' FP4 table in its code order; the result must equal bitsandbytes'
    ``dequantize_4bit(quantize_4bit(w, blocksize=..., quant_type="fp4"))``.
    """
    for w, blocksize, want_absmax, want_hat in _fp4_cases():
        n = w.numel()
        rem = n % blocksize
        tail = (f"numel = {n} is not a multiple of blocksize = {blocksize}: the last block holds "
                f"the {rem} leftover values and has its own absmax") if rem else None
        q_tail = tail and tail + " (pad the flat weight with zeros to whole blocks, then crop back to numel)"
        dq_tail = tail and tail + (" (give each code the absmax of its block, "
                                   "absmax.repeat_interleave(blocksize), cropped to numel)")
        call = f"quantize_fp4(w of shape {tuple(w.shape)}, levels, blocksize={blocksize})"
        out = run_student(call, quantize_fp4, w.clone(), _bnb_fp4_table().clone(), blocksize, hint=q_tail)
        codes, absmax = as_pair(out, "quantize_fp4", "(codes, absmax)")
        codes, absmax = as_float64(codes, call), as_float64(absmax, call)
        _check_absmax(absmax, w, blocksize, want_absmax, call)
        _check_codes(codes, w, blocksize, absmax, want_hat, call)
        dcall = f"dequantize_fp4(codes, absmax, levels, blocksize={blocksize}, shape={tuple(w.shape)})"
        student_codes, student_absmax = out
        w_hat = run_student(dcall, dequantize_fp4, student_codes.clone(), student_absmax.clone(),
                      _bnb_fp4_table().clone(), blocksize, tuple(w.shape), hint=dq_tail)
        w_hat = as_float64(w_hat, dcall)
        _check_dequantized(w_hat, codes, absmax, w, blocksize, want_hat, dcall)
    passed("quantize_fp4 / dequantize_fp4: blockwise absmax over the flattened weight, a short "
           "last block, the nearest of bitsandbytes' 16 FP4 levels; equal to bitsandbytes' "
           "quantize_4bit / dequantize_4bit at block sizes 32, 64 and 128")
