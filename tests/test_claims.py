"""effkit.claims: a sentence of the prose checked against the run's numbers."""
import math

import pytest

import effkit as ek
from effkit.claims import Claim, ClaimError


@pytest.fixture
def full(monkeypatch):
    monkeypatch.setenv("EFFKIT_PROFILE", "full")


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setenv("EFFKIT_PROFILE", "fast")


@pytest.mark.parametrize("profile", ["fast", "full"])
def test_a_claim_that_holds_prints_pass_with_the_numbers(monkeypatch, capsys, profile):
    monkeypatch.setenv("EFFKIT_PROFILE", profile)
    result = ek.claim("the head beats the majority class", True, "0.77 vs 0.58")
    out = capsys.readouterr().out
    assert out.startswith("[PASS] the head beats the majority class (0.77 vs 0.58)")
    assert isinstance(result, Claim) and result and result.holds


def test_a_contradicted_claim_fails_the_build_in_the_full_profile(full, capsys):
    with pytest.raises(ClaimError, match="the run disagrees.*activations more than double.*1.4"):
        ek.claim("activations more than double", False, "ratio 1.4")
    # the reader still sees the verdict and the numbers before the error
    assert "[the run disagrees] activations more than double (ratio 1.4)" in capsys.readouterr().out


def test_a_contradicted_claim_only_warns_in_the_fast_profile(fast, capsys):
    result = ek.claim("activations more than double", False, "ratio 1.4")
    out = capsys.readouterr().out
    assert "[the run disagrees] activations more than double (ratio 1.4)" in out
    assert "warning" in out and "'fast' profile" in out
    assert not result


def test_claim_error_is_an_assertion_error(full):
    # pytest and nbmake report it as a failed check, not as a crash of the helper
    with pytest.raises(AssertionError):
        ek.claim("x", False)


def test_strict_true_raises_in_fast_and_strict_false_warns_in_full(monkeypatch, capsys):
    monkeypatch.setenv("EFFKIT_PROFILE", "fast")
    with pytest.raises(ClaimError):
        ek.claim("packed bytes equal the floor", False, strict=True)
    monkeypatch.setenv("EFFKIT_PROFILE", "full")
    assert not ek.claim("an accuracy claim", False, strict=False)
    out = capsys.readouterr().out
    assert "warning" in out and "strict=False" in out and "fast" not in out


def test_empty_statement_is_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        ek.claim("  ", True)


@pytest.mark.parametrize("value, bound, holds", [(0.8, 0.75, True), (0.75, 0.75, True),
                                                 (0.7, 0.75, False), (math.nan, 0.0, False)])
def test_claim_at_least(fast, capsys, value, bound, holds):
    assert bool(ek.claim_at_least("acc high enough", value, bound, "fraction")) is holds
    out = capsys.readouterr().out
    assert "fraction, needs at least" in out and f"at least {bound:.4g}" in out
    assert ("[PASS]" in out) is holds


@pytest.mark.parametrize("value, bound, holds", [(1.2, 1.5, True), (1.5, 1.5, True), (2.0, 1.5, False),
                                                 (math.nan, 1.5, False)])
def test_claim_at_most(fast, value, bound, holds):
    assert bool(ek.claim_at_most("gap within 1.5 points", value, bound, "points")) is holds


def test_claim_at_most_raises_in_full_with_the_measured_value(full):
    with pytest.raises(ClaimError, match="measured 2.3 points, needs at most 1.5"):
        ek.claim_at_most("LoRA within 1.5 points of full", 2.3, 1.5, "points")


@pytest.mark.parametrize("num, den, lo, hi, holds", [
    (260, 100, 2, None, True), (190, 100, 2, None, False), (90, 100, None, 1.0, True),
    (110, 100, None, 1.0, False), (150, 100, 1.2, 1.8, True), (190, 100, 1.2, 1.8, False),
    (5, 0, 1, None, False)])
def test_claim_ratio(fast, capsys, num, den, lo, hi, holds):
    assert bool(ek.claim_ratio("ratio claim", num, den, at_least=lo, at_most=hi)) is holds
    out = capsys.readouterr().out
    assert "ratio" in out and f"/ {den:,}" in out


def test_claim_ratio_needs_a_bound():
    with pytest.raises(ValueError, match="at_least, at_most"):
        ek.claim_ratio("no bound", 1, 2)


def test_typed_forms_reject_non_numbers(fast):
    with pytest.raises(TypeError, match="value must be a number"):
        ek.claim_at_least("x", "high", 1)


def test_numpy_and_torch_scalars_are_numbers(fast):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert ek.claim_at_least("numpy", np.float32(0.9), 0.5)
    assert ek.claim_ratio("torch", torch.tensor(4.0), torch.tensor(2.0), at_least=2)
