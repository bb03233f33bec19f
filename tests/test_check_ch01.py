"""The chapter-01 checkers pass right answers and reject each plausible mistake with ITS hint.

Every checker has a table of hints keyed by a phrase unique to it. For each mutant the test asserts
that the failure names its own phrase and none of the other phrases of that checker: a mutant must
never be told about a mistake it did not make.
"""
import pytest
import torch
import torch.nn.functional as F

from effkit.check import ch01


def _message(checker, fn) -> str:
    with pytest.raises(AssertionError) as info:
        checker(fn)
    msg = str(info.value)
    assert msg.startswith("FAIL"), msg
    assert "Traceback" not in msg
    return msg


def _assert_routed(msg: str, key: str | None, keys: dict) -> None:
    """``key`` (a name in ``keys``, or None for the neutral hint) is the only phrase named."""
    named = [k for k, phrase in keys.items() if phrase in msg]
    assert named == ([key] if key else []), f"expected {key!r}, the message names {named}:\n{msg}"


def _stub(*args):
    raise NotImplementedError("Your code here")


# ================================================================ task 1: softmax_head_backward
def _dz(X, W, b, y):
    n, k = X.shape[0], W.shape[0]
    return (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(y, k).to(X.dtype)) / n


def head_right(X, W, b, y):
    dZ = _dz(X, W, b, y)
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_sum_not_mean(X, W, b, y):  # the per-example losses summed: no 1/N
    dZ = _dz(X, W, b, y) * X.shape[0]
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_divided_twice(X, W, b, y):
    dZ = _dz(X, W, b, y)
    return dZ @ W / X.shape[0], dZ.T @ X / X.shape[0], dZ.mean(0)


def head_db_mean(X, W, b, y):  # dW, dX right; db averaged although dZ is already / N
    dZ = _dz(X, W, b, y)
    return dZ @ W, dZ.T @ X, dZ.mean(0)


def head_divide_by_classes(X, W, b, y):
    k = W.shape[0]
    dZ = (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(y, k).to(X.dtype)) / k
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_dW_transposed(X, W, b, y):  # chapter 01's layout: Xᵀ dZ is (d, K)
    dZ = _dz(X, W, b, y)
    return dZ @ W, X.T @ dZ, dZ.sum(0)


def head_db_wrong_axis(X, W, b, y):
    dZ = _dz(X, W, b, y)
    return dZ @ W, dZ.T @ X, dZ.sum(1)


def head_dX_with_WT(X, W, b, y):
    dZ = _dz(X, W, b, y)
    return dZ @ W.T, dZ.T @ X, dZ.sum(0)


def head_wrong_sign(X, W, b, y):
    dZ = -_dz(X, W, b, y)
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_softmax_over_batch(X, W, b, y):
    n, k = X.shape[0], W.shape[0]
    dZ = (torch.softmax(X @ W.T + b, dim=0) - F.one_hot(y, k).to(X.dtype)) / n
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_log_softmax(X, W, b, y):
    n, k = X.shape[0], W.shape[0]
    dZ = (torch.log_softmax(X @ W.T + b, dim=1) - F.one_hot(y, k).to(X.dtype)) / n
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_no_onehot(X, W, b, y):
    dZ = torch.softmax(X @ W.T + b, dim=1) / X.shape[0]
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_int_labels_as_onehot(X, W, b, y):  # integer targets used as if they were one-hot
    dZ = (torch.softmax(X @ W.T + b, dim=1) - y) / X.shape[0]
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_int_labels_column(X, W, b, y):
    dZ = (torch.softmax(X @ W.T + b, dim=1) - y[:, None]) / X.shape[0]
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_onehot_without_num_classes(X, W, b, y):  # crashes when the top class is absent
    dZ = (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(y).to(X.dtype)) / X.shape[0]
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_naive_exp(X, W, b, y):
    n, k = X.shape[0], W.shape[0]
    e = (X @ W.T + b).exp()
    dZ = (e / e.sum(1, keepdim=True) - F.one_hot(y, k).to(X.dtype)) / n
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_float64_onehot(X, W, b, y):  # promotes float32 inputs to float64
    n, k = X.shape[0], W.shape[0]
    dZ = (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(y, k).double()) / n
    return dZ @ W.double(), dZ.T @ X.double(), dZ.sum(0)


def head_autograd(X, W, b, y):
    Xr, Wr, br = (t.clone().requires_grad_(True) for t in (X, W, b))
    F.cross_entropy(Xr @ Wr.T + br, y).backward()
    return Xr.grad, Wr.grad, br.grad


def head_autograd_grad(X, W, b, y):
    with torch.enable_grad():
        Wr = W.clone()
        Wr.requires_grad = True
        loss = F.cross_entropy(X @ Wr.T + b, y)
        (dW,) = torch.autograd.grad(loss, Wr)
    dZ = _dz(X, W, b, y)
    return dZ @ W, dW, dZ.sum(0)


def head_torch_func(X, W, b, y):
    dX, dW, db = torch.func.grad(lambda x, w, bb: F.cross_entropy(x @ w.T + bb, y),
                                 argnums=(0, 1, 2))(X, W, b)
    return dX, dW, db


def head_missing_dX(X, W, b, y):
    dZ = _dz(X, W, b, y)
    return dZ.T @ X, dZ.sum(0)


def head_crash(X, W, b, y):  # an IndexError on the very first batch
    n, k = X.shape[0], W.shape[0]
    onehot = torch.eye(k, dtype=X.dtype)[y + 1]
    dZ = (torch.softmax(X @ W.T + b, dim=1) - onehot) / n
    return dZ @ W, dZ.T @ X, dZ.sum(0)


def head_forward_without_transpose(X, W, b, y):  # Z = X·W + b: not a listed mistake
    n, k = X.shape[0], W.shape[0]
    dZ = (torch.softmax(X @ W + b, dim=1) - F.one_hot(y, k).to(X.dtype)) / n
    return dZ @ W.T, X.T @ dZ, dZ.sum(0)


HEAD_KEYS = {
    "no_mean": "N times too large", "twice": "N times too small",
    "by_k": "number of classes", "sign": "sign is flipped", "softmax_dim": "normalised over dim=0",
    "log_softmax": "log-softmax was used", "no_onehot": "one-hot of the targets is not subtracted",
    "int_labels": "class indices themselves", "dW_T": "dW is transposed",
    "db_axis": "summed over the classes", "dX_WT": "dX multiplies dZ by Wᵀ",
    "overflow": "non-finite values", "dtype": "has another dtype",
    "top_class": "largest class index",
    "autograd": "written by hand", "return": "end with `return",
}


def test_head_right_answer_passes(capsys):
    ch01.check_softmax_head_backward(head_right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("mutant, key", [
    (head_sum_not_mean, "no_mean"),
    (head_divided_twice, "twice"),
    (head_db_mean, "twice"),
    (head_divide_by_classes, "by_k"),
    (head_dW_transposed, "dW_T"),
    (head_db_wrong_axis, "db_axis"),
    (head_dX_with_WT, "dX_WT"),
    (head_wrong_sign, "sign"),
    (head_softmax_over_batch, "softmax_dim"),
    (head_log_softmax, "log_softmax"),
    (head_no_onehot, "no_onehot"),
    (head_int_labels_as_onehot, "int_labels"),
    (head_int_labels_column, "int_labels"),
    (head_onehot_without_num_classes, "top_class"),
    (head_naive_exp, "overflow"),
    (head_float64_onehot, "dtype"),
    (head_autograd, "autograd"),
    (head_autograd_grad, "autograd"),
    (head_torch_func, "autograd"),
    (head_missing_dX, "return"),
    (head_crash, None),
    (head_forward_without_transpose, None),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_head_mutants_get_their_own_hint(mutant, key):
    _assert_routed(_message(ch01.check_softmax_head_backward, mutant), key, HEAD_KEYS)


def test_head_square_case_catches_transposes_by_value():
    """On the square batch a transposed dW / a wrong-axis db has the right shape: values decide."""
    assert ch01.HEAD_CASES[0].n == ch01.HEAD_CASES[0].k == ch01.HEAD_CASES[0].d
    msg = _message(ch01.check_softmax_head_backward, head_dW_transposed)
    assert "does not match autograd" in msg and "(4, 4)" in msg


def test_head_crash_is_a_readable_fail():
    msg = _message(ch01.check_softmax_head_backward, head_crash)
    assert "raised IndexError" in msg and "hint:" in msg


def test_head_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        ch01.check_softmax_head_backward(_stub)


def test_head_checker_leaves_grad_mode_alone():
    before = torch.is_grad_enabled()
    ch01.check_softmax_head_backward(head_right)
    assert torch.is_grad_enabled() == before


# ================================================================ task 2a: smooth_targets
def smooth_right(y, k, eps, dtype=torch.float64):
    return (1 - eps) * F.one_hot(y, k).to(dtype) + eps / k


def smooth_k_minus_1(y, k, eps, dtype=torch.float64):
    oh = F.one_hot(y, k).to(dtype)
    return (1 - eps) * oh + eps / (k - 1) * (1 - oh)


def smooth_no_scale(y, k, eps, dtype=torch.float64):
    return F.one_hot(y, k).to(dtype) + eps / k


def smooth_eps_whole(y, k, eps, dtype=torch.float64):
    return (1 - eps) * F.one_hot(y, k).to(dtype) + eps


def smooth_no_uniform(y, k, eps, dtype=torch.float64):
    return (1 - eps) * F.one_hot(y, k).to(dtype)


def smooth_true_class_no_share(y, k, eps, dtype=torch.float64):
    oh = F.one_hot(y, k).to(dtype)
    return (1 - eps) * oh + eps / k * (1 - oh)


def smooth_int_labels(y, k, eps, dtype=torch.float64):  # the indices used as if one-hot
    return ((1 - eps) * y + eps / k).to(dtype)


def smooth_onehot_without_num_classes(y, k, eps, dtype=torch.float64):
    return (1 - eps) * F.one_hot(y).to(dtype) + eps / k


def smooth_default_dtype(y, k, eps, dtype=torch.float64):
    return (1 - eps) * F.one_hot(y, k).float() + eps / k


def smooth_other(y, k, eps, dtype=torch.float64):  # not a listed mistake
    return torch.full((len(y), k), 1.0 / k, dtype=dtype)


SMOOTH_KEYS = {
    "km1": "K−1 other classes", "no_scale": "scaled by (1 − ε)",
    "eps_whole": "received the whole ε",
    "no_uniform": "uniform part is missing", "no_share": "did not get its share",
    "per_example": "one number per example", "num_classes": "give F.one_hot num_classes",
    "dtype": "has another dtype",
}


def test_smooth_right_answer_passes(capsys):
    ch01.check_smooth_targets(smooth_right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("mutant, key", [
    (smooth_k_minus_1, "km1"),
    (smooth_no_scale, "no_scale"),
    (smooth_eps_whole, "eps_whole"),
    (smooth_no_uniform, "no_uniform"),
    (smooth_true_class_no_share, "no_share"),
    (smooth_int_labels, "per_example"),
    (smooth_onehot_without_num_classes, "num_classes"),
    (smooth_default_dtype, "dtype"),
    (smooth_other, None),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_smooth_mutants_get_their_own_hint(mutant, key):
    _assert_routed(_message(ch01.check_smooth_targets, mutant), key, SMOOTH_KEYS)


def test_smooth_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        ch01.check_smooth_targets(_stub)


# ================================================================ task 2b: label_smoothing_ce
def _q(y, k, eps, dtype):
    return (1 - eps) * F.one_hot(y, k).to(dtype) + eps / k


def _plain_loss(z, y):
    return -torch.log_softmax(z, 1).gather(1, y[:, None]).mean()


def ls_right(z, y, eps):
    n, k = z.shape
    q, logp = _q(y, k, eps, z.dtype), torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_grad_unsmoothed(z, y, eps):  # smoothing in the loss, not in the gradient
    n, k = z.shape
    loss, _ = ls_right(z, y, eps)
    return loss, (torch.softmax(z, 1) - F.one_hot(y, k).to(z.dtype)) / n


def ls_loss_unsmoothed(z, y, eps):  # smoothing in the gradient, not in the loss
    _, grad = ls_right(z, y, eps)
    return _plain_loss(z, y), grad


def ls_ignores_eps(z, y, eps):
    n, k = z.shape
    return _plain_loss(z, y), (torch.softmax(z, 1) - F.one_hot(y, k).to(z.dtype)) / n


def ls_grad_unsmoothed_loss_summed(z, y, eps):
    n, k = z.shape
    loss, _ = ls_right(z, y, eps)
    return loss * n, (torch.softmax(z, 1) - F.one_hot(y, k).to(z.dtype)) / n


def ls_k_minus_1(z, y, eps):
    n, k = z.shape
    oh = F.one_hot(y, k).to(z.dtype)
    q, logp = (1 - eps) * oh + eps / (k - 1) * (1 - oh), torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_k_minus_1_loss_only(z, y, eps):
    n, k = z.shape
    oh = F.one_hot(y, k).to(z.dtype)
    q1 = (1 - eps) * oh + eps / (k - 1) * (1 - oh)
    _, grad = ls_right(z, y, eps)
    return -(q1 * torch.log_softmax(z, 1)).sum(1).mean(), grad


def ls_log_softmax_in_grad(z, y, eps):
    n, k = z.shape
    q, logp = _q(y, k, eps, z.dtype), torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp - q) / n


def ls_grad_no_mean(z, y, eps):
    loss, grad = ls_right(z, y, eps)
    return loss, grad * z.shape[0]


def ls_loss_sum(z, y, eps):
    loss, grad = ls_right(z, y, eps)
    return loss * z.shape[0], grad


def ls_grad_sign(z, y, eps):
    loss, grad = ls_right(z, y, eps)
    return loss, -grad


def ls_loss_sign(z, y, eps):
    loss, grad = ls_right(z, y, eps)
    return -loss, grad


def ls_ce_part_only(z, y, eps):  # d/dz of (1−ε)·CE only; the uniform part forgotten
    n, k = z.shape
    loss, _ = ls_right(z, y, eps)
    return loss, (1 - eps) * (torch.softmax(z, 1) - F.one_hot(y, k).to(z.dtype)) / n


def ls_no_scale(z, y, eps):
    n, k = z.shape
    q, logp = F.one_hot(y, k).to(z.dtype) + eps / k, torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_eps_whole(z, y, eps):
    n, k = z.shape
    q, logp = (1 - eps) * F.one_hot(y, k).to(z.dtype) + eps, torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_int_labels(z, y, eps):
    loss, _ = ls_right(z, y, eps)
    return loss, (torch.softmax(z, 1) - y[:, None]) / z.shape[0]


def ls_log_of_softmax(z, y, eps):  # log(softmax) is −inf where a probability underflows
    n, k = z.shape
    q, p = _q(y, k, eps, z.dtype), torch.softmax(z, 1)
    return -(q * p.log()).sum(1).mean(), (p - q) / n


def ls_naive_exp(z, y, eps):
    n, k = z.shape
    q, e = _q(y, k, eps, z.dtype), z.exp()
    p = e / e.sum(1, keepdim=True)
    return -(q * p.log()).sum(1).mean(), (p - q) / n


def ls_loss_per_example(z, y, eps):
    n, k = z.shape
    q, logp = _q(y, k, eps, z.dtype), torch.log_softmax(z, 1)
    return -(q * logp).sum(1), (logp.exp() - q) / n


def ls_onehot_without_num_classes(z, y, eps):
    n, k = z.shape
    q = (1 - eps) * F.one_hot(y).to(z.dtype) + eps / k
    logp = torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_calls_cross_entropy(z, y, eps):
    _, grad = ls_right(z, y, eps)
    return F.cross_entropy(z, y, label_smoothing=eps), grad


def ls_autograd(z, y, eps):
    zr = z.clone().requires_grad_(True)
    n, k = z.shape
    loss = -(_q(y, k, eps, z.dtype) * torch.log_softmax(zr, 1)).sum(1).mean()
    loss.backward()
    return loss.detach(), zr.grad


def ls_float64_targets(z, y, eps):
    n, k = z.shape
    q, logp = _q(y, k, eps, torch.float64), torch.log_softmax(z, 1)
    return -(q * logp).sum(1).mean(), (logp.exp() - q) / n


def ls_other_grad(z, y, eps):  # not a listed mistake
    loss, grad = ls_right(z, y, eps)
    return loss, grad * 0.5


def ls_other_loss(z, y, eps):  # not a listed mistake
    loss, grad = ls_right(z, y, eps)
    return loss + 1.0, grad


LS_KEYS = {
    "loss_not_grad": "reached the loss but not the gradient",
    "grad_not_loss": "reached the gradient but not the loss",
    "ignored": "eps was ignored", "grad_plain": "gradient ignores eps",
    "km1": "K−1 other classes", "grad_times_n": "gradient is N times too large",
    "loss_times_n": "loss is N times too large", "grad_sign": "sign of the gradient is flipped",
    "loss_sign": "loss has the wrong sign", "log_softmax": "log-softmax was used",
    "ce_part": "only the (1 − ε)·cross-entropy part", "no_scale": "scaled by (1 − ε)",
    "eps_whole": "received the whole ε", "int_labels": "class indices themselves",
    "nonfinite": "non-finite values", "per_example": "one loss per example",
    "forbidden": "the reference this check", "autograd": "written by hand",
    "top_class": "largest class index", "dtype": "has another dtype",
}


def test_ls_right_answer_passes(capsys):
    ch01.check_label_smoothing_ce(ls_right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("mutant, key", [
    (ls_grad_unsmoothed, "loss_not_grad"),
    (ls_loss_unsmoothed, "grad_not_loss"),
    (ls_ignores_eps, "ignored"),
    (ls_grad_unsmoothed_loss_summed, "grad_plain"),
    (ls_k_minus_1, "km1"),
    (ls_k_minus_1_loss_only, "km1"),
    (ls_log_softmax_in_grad, "log_softmax"),
    (ls_grad_no_mean, "grad_times_n"),
    (ls_loss_sum, "loss_times_n"),
    (ls_grad_sign, "grad_sign"),
    (ls_loss_sign, "loss_sign"),
    (ls_ce_part_only, "ce_part"),
    (ls_no_scale, "no_scale"),
    (ls_eps_whole, "eps_whole"),
    (ls_int_labels, "int_labels"),
    (ls_log_of_softmax, "nonfinite"),
    (ls_naive_exp, "nonfinite"),
    (ls_loss_per_example, "per_example"),
    (ls_onehot_without_num_classes, "top_class"),
    (ls_calls_cross_entropy, "forbidden"),
    (ls_autograd, "autograd"),
    (ls_float64_targets, "dtype"),
    (ls_other_grad, None),
    (ls_other_loss, None),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_ls_mutants_get_their_own_hint(mutant, key):
    _assert_routed(_message(ch01.check_label_smoothing_ce, mutant), key, LS_KEYS)


def test_ls_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        ch01.check_label_smoothing_ce(_stub)


# ================================================================ the hint tables themselves
@pytest.mark.parametrize("keys, prefix", [(HEAD_KEYS, "H_"), (SMOOTH_KEYS, "S_"), (LS_KEYS, "L_")],
                         ids=["head", "smooth", "ls"])
def test_key_phrases_are_unique_to_their_hint(keys, prefix):
    """No key phrase occurs inside another hint of the same checker, so routing tests are exact."""
    hints = {name: value for name, value in vars(ch01).items()
             if isinstance(value, str) and name.startswith(prefix)}
    for key, phrase in keys.items():
        owners = {name for name, text in hints.items() if phrase in text}
        texts = {hints[name] for name in owners}
        assert len(texts) <= 1, f"phrase {phrase!r} ({key}) occurs in several hints: {owners}"


# ================================================================ the cases tell the mistakes apart
def _assert_distinguishable(candidates, ref, dtype, where):
    """Every listed mistake differs from the right answer, and two mistakes with different hints
    never give the same output on this case (else one would be told the other's hint)."""
    for i, (a, hint_a) in enumerate(candidates):
        assert not ch01.plumbing.close_enough(a, ref, dtype), f"{where}: a mistake passes: {hint_a}"
        for b, hint_b in candidates[i + 1:]:
            if hint_a != hint_b:
                assert not (ch01.plumbing.close_enough(a, b, dtype) or ch01.plumbing.close_enough(b, a, dtype)), (
                    f"{where}: indistinguishable mistakes:\n  {hint_a}\n  {hint_b}")


@pytest.mark.parametrize("i", range(len(ch01.HEAD_CASES)))
def test_head_cases_tell_the_mistakes_apart(i):
    c = ch01.HEAD_CASES[i]
    X, W, b, y = ch01.head._head_data(i, c)
    refs = dict(zip(("dX", "dW", "db"), ch01.head._head_reference(X, W, b, y)))
    for name, candidates in ch01.head._head_mistakes(X, W, b, y).items():
        _assert_distinguishable(candidates, refs[name], c.dtype, f"{c.text}, {name}")


@pytest.mark.parametrize("i", range(len(ch01.LS_CASES)))
def test_ls_cases_tell_the_mistakes_apart(i):
    c = ch01.LS_CASES[i]
    z, y = ch01.smoothing._ls_data(i, c)
    ref_loss, ref_grad = ch01.smoothing._ls_reference(z, y, c.eps)
    plain_grad, plain_loss, grads, losses = ch01.smoothing._ls_mistakes(z, y, c.eps)
    _assert_distinguishable([(plain_grad, "plain")] + grads, ref_grad, c.dtype, f"{c.text}, grad")
    _assert_distinguishable([(plain_loss, "plain")] + losses, ref_loss, c.dtype, f"{c.text}, loss")


def test_smooth_cases_tell_the_mistakes_apart():
    for i, c in enumerate(ch01.SMOOTH_CASES):
        gen = torch.Generator().manual_seed(2000 + i)
        y = ch01.plumbing.random_targets(gen, c.n, c.k, c.all_classes)
        ref = ch01.smoothing._torch_smoothed_targets(y, c.k, c.eps, gen)
        _assert_distinguishable(ch01.smoothing._smooth_mistakes(y, c.k, c.eps), ref, c.dtype, c.text)
