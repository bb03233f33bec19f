"""The chapter 05 checkers pass correct 2:4 masks and CSR byte counts, and reject each plausible
mistake with a hint that names it."""
import pytest
import torch

from effkit.check import ch05


# ---------------------------------------------------------------- right answers
def two_four(weight):
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError(f"2:4 needs rows whose length is a multiple of 4, got {cols}")
    groups = weight.abs().reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(rows, cols)


def two_four_by_sorting(weight):
    """Another right answer: argsort, stable, ties broken by position."""
    rows, cols = weight.shape
    if cols % 4:
        raise ValueError("not a multiple of 4")
    groups = weight.abs().reshape(rows, cols // 4, 4)
    order = groups.argsort(dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., :2], True)
    return keep.reshape(rows, cols)


def csr_bytes(weight):
    nnz = int((weight != 0).sum())
    return nnz * weight.element_size() + nnz * 8 + (weight.shape[0] + 1) * 8


def test_right_answers_pass(capsys):
    ch05.check_two_four(two_four)
    ch05.check_two_four(two_four_by_sorting)
    ch05.check_csr_bytes(csr_bytes)
    assert capsys.readouterr().out.count("PASS") == 3


def test_the_oracle_is_torch():
    w = torch.randn(6, 10)
    w[w.abs() < 0.7] = 0
    csr = w.to_sparse_csr()
    assert csr_bytes(w) == sum(t.numel() * t.element_size()
                               for t in (csr.values(), csr.col_indices(), csr.crow_indices()))


def test_unfinished_stub_stops_with_not_implemented():
    def stub(weight):
        raise NotImplementedError("Your code here")
    with pytest.raises(NotImplementedError):
        ch05.check_two_four(stub)
    with pytest.raises(NotImplementedError):
        ch05.check_csr_bytes(stub)


# ---------------------------------------------------------------- 2:4 mutants
def largest_pruned(weight):
    rows, cols = weight.shape
    groups = weight.abs().reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1, largest=False).indices, True)
    return keep.reshape(rows, cols)


def down_columns(weight):
    return two_four(weight.T.contiguous()).T


def threshold_ge(weight):
    rows, cols = weight.shape
    groups = weight.abs().reshape(rows, cols // 4, 4)
    second = groups.sort(dim=-1, descending=True).values[..., 1:2]
    return (groups >= second).reshape(rows, cols)


def threshold_gt(weight):
    rows, cols = weight.shape
    groups = weight.abs().reshape(rows, cols // 4, 4)
    third = groups.sort(dim=-1, descending=True).values[..., 2:3]
    return (groups > third).reshape(rows, cols)


def signed(weight):
    rows, cols = weight.shape
    groups = weight.reshape(rows, cols // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(rows, cols)


def no_length_check(weight):
    rows, cols = weight.shape
    groups = weight.abs().reshape(rows, -1, 2)     # silently groups of two for a row of 6
    if cols % 4 == 0:
        return two_four(weight)
    return torch.ones_like(weight, dtype=torch.bool)


def crashes(weight):
    return weight.reshape(3, -1, 4)


@pytest.mark.parametrize("mutant, words", [
    (largest_pruned, "prunes the largest weights instead of the smallest"),
    (down_columns, "taken down the columns instead of along the rows"),
    (threshold_ge, "ties give more than two kept per group"),
    (threshold_gt, "ties give fewer than two kept per group"),
    (signed, "largest signed values, not the largest |w|"),
    (no_length_check, "was accepted"),
    (crashes, "raised RuntimeError"),
])
def test_two_four_mutants_are_named(mutant, words):
    with pytest.raises(AssertionError) as info:
        ch05.check_two_four(mutant)
    assert words in str(info.value), str(info.value)
    assert "hint:" in str(info.value)


# ---------------------------------------------------------------- CSR mutants
@pytest.mark.parametrize("mutant, words", [
    (lambda w: int((w != 0).sum()) * (w.element_size() + 4) + (w.shape[0] + 1) * 4,
     "indices are counted as 4-byte int32"),
    (lambda w: int((w != 0).sum()) * (w.element_size() + 8) + w.shape[0] * 8,
     "row pointers are counted once per row"),
    (lambda w: int((w != 0).sum()) * (w.element_size() + 8) + (w.shape[1] + 1) * 8,
     "counted per column (CSC)"),
    (lambda w: int((w != 0).sum()) * 12 + (w.shape[0] + 1) * 8, "4 bytes whatever the dtype"),
    (lambda w: w.numel() * w.element_size() + int((w != 0).sum()) * 8 + (w.shape[0] + 1) * 8,
     "zeros included"),
    (lambda w: int((w != 0).sum()) * (w.element_size() + 8), "row pointers are left out"),
    (lambda w: "many", "expected an int"),
])
def test_csr_mutants_are_named(mutant, words):
    with pytest.raises(AssertionError) as info:
        ch05.check_csr_bytes(mutant)
    assert words in str(info.value), str(info.value)
