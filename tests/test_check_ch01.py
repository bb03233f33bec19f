"""The chapter-01 checkers pass the right answers and catch each classic mistake with its hint."""
import pytest
import torch
import torch.nn.functional as F

from effkit.check import ch01


# ---------------------------------------------------------------- ce_grad
def ce_right(logits, targets):
    n, c = logits.shape
    return (torch.softmax(logits, dim=1) - F.one_hot(targets, c).to(logits.dtype)) / n


def ce_no_division(logits, targets):
    return ce_right(logits, targets) * logits.shape[0]


def ce_wrong_sign(logits, targets):
    return -ce_right(logits, targets)


def ce_wrong_sign_no_division(logits, targets):
    return -ce_right(logits, targets) * logits.shape[0]


def ce_softmax_over_batch(logits, targets):
    n, c = logits.shape
    return (torch.softmax(logits, dim=0) - F.one_hot(targets, c).to(logits.dtype)) / n


def ce_no_onehot(logits, targets):
    return torch.softmax(logits, dim=1) / logits.shape[0]


def ce_naive_exp(logits, targets):
    n, c = logits.shape
    e = logits.exp()  # overflows for large logits
    return (e / e.sum(1, keepdim=True) - F.one_hot(targets, c).to(logits.dtype)) / n


def ce_int64_onehot(logits, targets):  # float32 - float64 one-hot promotes the dtype
    n, c = logits.shape
    return (torch.softmax(logits, dim=1) - F.one_hot(targets, c).double()) / n


def ce_per_example(logits, targets):
    return ce_right(logits, targets).sum(dim=1)


def ce_no_return(logits, targets):
    ce_right(logits, targets)


def test_ce_grad_right_answer_passes(capsys):
    ch01.check_ce_grad(ce_right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("wrong, hint", [
    (ce_no_division, "divide by N"),
    (ce_wrong_sign, "sign is flipped"),
    (ce_wrong_sign_no_division, "sign is flipped AND the 1/N"),
    (ce_softmax_over_batch, "wrong dimension"),
    (ce_no_onehot, "one-hot of the targets is not subtracted"),
    (ce_naive_exp, "overflows"),
    (ce_int64_onehot, "dtype=logits.dtype"),
    (ce_per_example, "one entry per logit"),
    (ce_no_return, "return"),
])
def test_ce_grad_mistakes_are_caught_with_their_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch01.check_ce_grad(wrong)


def test_ce_grad_stub_raises_not_implemented():
    def stub(logits, targets):
        raise NotImplementedError("Your code here")
    with pytest.raises(NotImplementedError):
        ch01.check_ce_grad(stub)


# ---------------------------------------------------------------- sgd_step_with_decay
def step_right(theta, grad, lr, wd):
    return theta - lr * grad - lr * wd * theta


def step_decay_on_grad_factor(theta, grad, lr, wd):
    return theta - lr * (grad * (1 - wd))


def step_decay_on_grad_term(theta, grad, lr, wd):
    return theta - lr * grad - lr * wd * grad


def step_decay_wrong_sign(theta, grad, lr, wd):
    return theta - lr * grad + lr * wd * theta


def step_decay_without_lr(theta, grad, lr, wd):
    return theta - lr * grad - wd * theta


def step_no_decay(theta, grad, lr, wd):
    return theta - lr * grad


def step_in_place(theta, grad, lr, wd):
    theta -= lr * grad + lr * wd * theta
    return theta


def step_other(theta, grad, lr, wd):
    return 0.5 * theta


def test_decay_step_right_answer_passes(capsys):
    ch01.check_sgd_step_with_decay(step_right)
    assert capsys.readouterr().out.startswith("PASS")


@pytest.mark.parametrize("wrong, hint", [
    (step_decay_on_grad_factor, "applied to the GRADIENT"),
    (step_decay_on_grad_term, "uses the gradient"),
    (step_decay_wrong_sign, "wrong sign"),
    (step_decay_without_lr, "missing the learning rate"),
    (step_no_decay, "no weight decay at all"),
    (step_in_place, "in place"),
    (step_other, "expected θ − lr·grad − lr·λ·θ"),
])
def test_decay_step_mistakes_are_caught_with_their_hint(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        ch01.check_sgd_step_with_decay(wrong)
