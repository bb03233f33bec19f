"""Checks for the chapter 05 assignment: 2:4 semi-structured masks, and the bytes of a CSR tensor.

- ``check_two_four(fn)``: ``fn(weight) -> bool mask`` keeps, in every group of four consecutive
  weights of a row, the two with the largest ``|w|``. The oracle is the rule itself, checked per
  group (exactly two kept; every kept ``|w|`` at least every dropped one in its group), plus the
  reference ``topk`` on weights without ties, where the answer is unique. Weights with ties
  (small integers, zeros) come after, where a threshold keeps three or one.
- ``check_csr_bytes(fn)``: ``fn(weight) -> int`` equals the bytes of the three tensors of
  ``weight.to_sparse_csr()`` (values, column indices, row pointers), read off torch. Shapes are
  non-square (rows != columns) and dtypes are fp32 and fp16, so a pointer per column or a
  hard-coded 4-byte value is told apart.

When an answer is wrong the checker recomputes the classic mistakes and names the one that
matches; the student's code is always called first, and an error in it becomes a FAIL with a hint.
"""
from __future__ import annotations

import warnings

import torch

from ._core import call_student, fail, passed

SHAPE_HINT = ("the weight is (rows, columns) = (out, in); reshape each row into groups of four "
              "consecutive columns: weight.reshape(rows, columns // 4, 4)")
RULE = ("in every group of four consecutive weights along a row, keep the two with the largest "
        "|w| and drop the other two")


# ---------------------------------------------------------------- task 1: 2:4 masks
def reference_two_four(weight: torch.Tensor) -> torch.Tensor:
    """The reference: topk(2) of |w| in each group of four along the rows (ties: topk's pick)."""
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(rows, cols)


def _column_groups(weight: torch.Tensor) -> torch.Tensor:
    """The mistake: groups of four taken down the columns."""
    return reference_two_four(weight.T.contiguous()).T


def _smallest_kept(weight: torch.Tensor) -> torch.Tensor:
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1, largest=False).indices, True)
    return keep.reshape(rows, cols)


def _topk_by(scores: torch.Tensor) -> torch.Tensor:
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(rows, cols)


def _as_mask(out, weight: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        fail(f"{what} returned {type(out).__name__}; expected a bool tensor", "return the mask as a tensor")
    if tuple(out.shape) != tuple(weight.shape):
        fail(f"{what} returned shape {tuple(out.shape)} for a weight of shape {tuple(weight.shape)}",
             "the mask has the weight's shape: one True/False per weight")
    if out.dtype != torch.bool:
        if not ((out == 0) | (out == 1)).all():
            fail(f"{what} returned values other than 0 and 1", "return a bool mask (True = keep)")
        out = out.bool()
    return out


def _tie_weights() -> torch.Tensor:
    """Small integers and zeros: many groups hold equal magnitudes."""
    g = torch.Generator().manual_seed(5)
    w = torch.randint(-2, 3, (12, 16), generator=g).float()
    w[0, :4] = torch.tensor([1.0, -1.0, 1.0, 1.0])        # four equal magnitudes
    w[1, :4] = torch.tensor([0.0, 0.0, 0.0, 3.0])          # three zeros
    w[2, :4] = 0.0                                         # all zero
    return w


def check_two_four(two_four) -> None:
    """``two_four(weight)`` keeps two of every four consecutive weights of a row, the largest |w|."""
    g = torch.Generator().manual_seed(0)
    cases = [("a square weight without ties", torch.randn(16, 16, generator=g)),
             ("a wide weight (8 rows, 24 columns)", torch.randn(8, 24, generator=g)),
             ("a tall weight (20 rows, 8 columns)", torch.randn(20, 8, generator=g))]
    for what, w in cases:
        got = _as_mask(call_student("two_four", two_four, w.clone(), shape_hint=SHAPE_HINT), w,
                       f"two_four on {what}")
        want = reference_two_four(w)
        if torch.equal(got, want):
            continue
        if torch.equal(got, _smallest_kept(w)):
            fail(f"on {what} the mask keeps the two smallest |w| of each group: it prunes the largest "
                 "weights instead of the smallest", "magnitude pruning drops the small weights: "
                 "topk(2) of |w| (largest=True) gives the ones to keep")
        if w.shape[0] % 4 == 0 and torch.equal(got, _column_groups(w)):
            fail(f"on {what} the groups of four are taken down the columns instead of along the rows",
                 "2:4 groups are four consecutive weights of one row (the input dimension, the last "
                 "one of a Linear weight): reshape(rows, columns // 4, 4), no transpose")
        if torch.equal(got, _topk_by(w)):
            fail(f"on {what} the mask keeps the two largest signed values, not the largest |w|",
                 "rank by magnitude: weight.abs()")
        _explain_counts(got, w, what)
        fail(f"two_four differs from the 2:4 rule on {what}", RULE)
    w = _tie_weights()
    got = _as_mask(call_student("two_four", two_four, w.clone(), shape_hint=SHAPE_HINT), w,
                   "two_four on a weight with ties")
    _explain_counts(got, w, "a weight with ties (small integers and zeros)")
    _check_dominance(got, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            two_four(torch.randn(4, 6, generator=g))
        except NotImplementedError:
            raise
        except ValueError:
            pass
        except Exception as err:  # noqa: BLE001
            fail(f"a row of 6 weights (not a multiple of 4) raised {type(err).__name__}, not ValueError",
                 "check weight.shape[1] % 4 == 0 first and raise ValueError saying why")
        else:
            fail("a row of 6 weights (not a multiple of 4) was accepted",
                 "2:4 needs rows whose length is a multiple of 4: raise ValueError otherwise")
    passed("two_four: two of every four consecutive weights kept, the largest |w|, ties included")


def _explain_counts(got: torch.Tensor, w: torch.Tensor, what: str) -> None:
    counts = got.reshape(w.shape[0], -1, 4).sum(-1)
    if (counts > 2).any():
        r, grp = (counts > 2).nonzero()[0].tolist()
        fail(f"on {what} a group keeps {int(counts[r, grp])} weights (row {r}, columns "
             f"{4 * grp}..{4 * grp + 3}: |w| = {w[r, 4 * grp:4 * grp + 4].abs().tolist()}): "
             "ties give more than two kept per group",
             "a threshold such as |w| >= the second largest keeps every tied weight; pick exactly "
             "two positions per group, e.g. with topk(2).indices")
    if (counts < 2).any():
        r, grp = (counts < 2).nonzero()[0].tolist()
        fail(f"on {what} a group keeps {int(counts[r, grp])} weight(s) (row {r}, columns "
             f"{4 * grp}..{4 * grp + 3}: |w| = {w[r, 4 * grp:4 * grp + 4].abs().tolist()}): "
             "ties give fewer than two kept per group",
             "a strict threshold (|w| > the third largest) drops tied weights; pick exactly two "
             "positions per group, e.g. with topk(2).indices")


def _check_dominance(got: torch.Tensor, w: torch.Tensor) -> None:
    groups, keep = w.abs().reshape(w.shape[0], -1, 4), got.reshape(w.shape[0], -1, 4)
    kept_min = torch.where(keep, groups, torch.full_like(groups, float("inf"))).amin(-1)
    dropped_max = torch.where(~keep, groups, torch.full_like(groups, -1.0)).amax(-1)
    if (kept_min < dropped_max).any():
        fail("on a weight with ties, a group keeps a smaller |w| than one it drops", RULE)


# ---------------------------------------------------------------- task 2: CSR bytes
def csr_tensors(weight: torch.Tensor) -> list[torch.Tensor]:
    """The oracle: the three tensors torch stores for ``weight`` in CSR."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = weight.to_sparse_csr()
    return [csr.values(), csr.col_indices(), csr.crow_indices()]


def _sparse(rows: int, cols: int, density: float, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[torch.rand(rows, cols, generator=g) > density] = 0
    return w.to(dtype)


def check_csr_bytes(csr_bytes) -> None:
    """``csr_bytes(weight)`` equals the bytes of the tensors of ``weight.to_sparse_csr()``."""
    cases = [(_sparse(12, 40, 0.3, torch.float32, 0), "a (12, 40) fp32 weight, 30% nonzero"),
             (_sparse(50, 9, 0.5, torch.float32, 1), "a (50, 9) fp32 weight, 50% nonzero"),
             (_sparse(30, 64, 0.1, torch.float16, 2), "a (30, 64) fp16 weight, 10% nonzero"),
             (torch.zeros(7, 5), "an all-zero (7, 5) weight")]
    for w, what in cases:
        got = call_student("csr_bytes", csr_bytes, w.clone(), shape_hint=SHAPE_HINT)
        try:
            got = int(got)
        except (TypeError, ValueError):
            fail(f"csr_bytes returned {type(got).__name__}; expected an int", "return a number of bytes")
        tensors = csr_tensors(w)
        want = sum(t.numel() * t.element_size() for t in tensors)
        if got == want:
            continue
        rows, cols = w.shape
        nnz, value = int((w != 0).sum()), w.element_size()
        mistakes = [
            (value * nnz + 4 * nnz + 4 * (rows + 1), "the indices are counted as 4-byte int32",
             "torch stores CSR column indices and row pointers as int64: 8 bytes each "
             "(csr.col_indices().dtype)"),
            (value * nnz + 8 * nnz + 8 * rows, "the row pointers are counted once per row",
             "there are rows + 1 row pointers: row i's values run from crow[i] to crow[i + 1]"),
            (value * nnz + 8 * nnz + 8 * (cols + 1), "the pointers are counted per column (CSC), not per row",
             "CSR keeps one pointer per row of the weight, plus one: weight.shape[0] + 1"),
            (4 * nnz + 8 * nnz + 8 * (rows + 1), "the values are counted as 4 bytes whatever the dtype",
             "a value takes weight.element_size() bytes: 2 for fp16"),
            (value * rows * cols + 8 * nnz + 8 * (rows + 1), "every value is counted, zeros included",
             "CSR stores only the nonzero values: nnz = (weight != 0).sum()"),
            (value * nnz + 8 * nnz, "the row pointers are left out", "add (rows + 1) int64 row pointers"),
            (value * nnz + 8 * (rows + 1), "the column indices are left out", "add one int64 column index per nonzero"),
        ]
        for value_, name, hint in mistakes:
            if got == value_:
                fail(f"csr_bytes = {got} on {what}, torch's tensors take {want}: {name}", hint)
        fail(f"csr_bytes = {got} on {what}, torch's three tensors take {want}",
             "values (nnz x element size) + column indices (nnz x 8) + row pointers ((rows + 1) x 8)")
    passed("csr_bytes: values, int64 column indices and rows + 1 int64 row pointers, as torch stores them")
