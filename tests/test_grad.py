"""effkit.grad: hand-written cross-entropy gradients against autograd and numerical gradients."""
import pytest
import torch
import torch.nn.functional as F

from effkit import grad


def _batch(n, c, dtype=torch.float64, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=gen, dtype=dtype)
    targets = torch.randint(0, c, (n,), generator=gen)
    return logits, targets


SHAPES = [(1, 2), (2, 3), (7, 2), (32, 10), (5, 21), (64, 1000)]


@pytest.mark.parametrize("n, c", SHAPES)
def test_cross_entropy_grad_matches_autograd_float64(n, c):
    logits, targets = _batch(n, c, seed=n * 1000 + c)
    ours = grad.cross_entropy_grad(logits, targets)
    ref = grad.autograd_cross_entropy_grad(logits, targets)
    assert ours.shape == (n, c) and ours.dtype == torch.float64
    assert (ours - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("n, c", SHAPES)
def test_chain_rule_version_equals_one_line_version(n, c):
    logits, targets = _batch(n, c, seed=n + c)
    long = grad.cross_entropy_grad_chain_rule(logits, targets)
    short = grad.cross_entropy_grad(logits, targets)
    assert (long - short).abs().max().item() <= 1e-10


def test_rows_sum_to_zero_and_true_class_is_negative():
    logits, targets = _batch(16, 5)
    g = grad.cross_entropy_grad(logits, targets)
    assert torch.allclose(g.sum(dim=1), torch.zeros(16, dtype=g.dtype), atol=1e-15)
    assert (g[torch.arange(16), targets] < 0).all()
    off = torch.ones_like(g, dtype=torch.bool)
    off[torch.arange(16), targets] = False
    assert (g[off] > 0).all()


def test_float32_close_to_autograd_and_keeps_dtype():
    logits, targets = _batch(32, 7, dtype=torch.float32)
    ours = grad.cross_entropy_grad(logits, targets)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, grad.autograd_cross_entropy_grad(logits, targets), atol=1e-7)


def test_large_logits_stay_finite():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 800.0, 5.0]], dtype=torch.float64)
    targets = torch.tensor([2, 1])
    g = grad.cross_entropy_grad(logits, targets)
    assert torch.isfinite(g).all()
    assert torch.allclose(g, grad.autograd_cross_entropy_grad(logits, targets), atol=1e-12)


@pytest.mark.parametrize("n, c", [(3, 2), (4, 5)])
def test_cross_entropy_grad_matches_numerical_gradient(n, c):
    logits, targets = _batch(n, c, seed=7)
    numeric = grad.numerical_grad(lambda z: F.cross_entropy(z, targets), logits, eps=1e-6)
    assert torch.allclose(grad.cross_entropy_grad(logits, targets), numeric, atol=1e-8)


def test_cross_entropy_value_matches_torch():
    logits, targets = _batch(9, 4)
    assert abs(grad.cross_entropy(logits, targets).item() - F.cross_entropy(logits, targets).item()) < 1e-12


def test_binary_cross_entropy_grad_matches_autograd():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(11, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (11,), generator=gen).double()
    F.binary_cross_entropy_with_logits(z, y).backward()
    ours = grad.binary_cross_entropy_grad(z.detach(), y)
    assert (ours - z.grad).abs().max().item() <= 1e-12
    with pytest.raises(ValueError, match="0 or 1"):
        grad.binary_cross_entropy_grad(z.detach(), y * 2)
    with pytest.raises(ValueError, match="1-D"):
        grad.binary_cross_entropy_grad(z.detach()[None], y[None])


def test_two_class_softmax_is_binary_cross_entropy_on_the_logit_difference():
    # softmax over (0, z) is sigmoid(z): the softmax gradient for class 1 is the binary gradient
    z = torch.randn(8, dtype=torch.float64)
    y = torch.randint(0, 2, (8,))
    logits = torch.stack([torch.zeros_like(z), z], dim=1)
    soft = grad.cross_entropy_grad(logits, y)[:, 1]
    assert torch.allclose(soft, grad.binary_cross_entropy_grad(z, y), atol=1e-15)


@pytest.mark.parametrize("logits, targets, err, words", [
    (torch.zeros(3), torch.zeros(3, dtype=torch.long), ValueError, r"2-D.*got shape \(3,\)"),
    (torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long), ValueError, r"2-D.*\(2, 3, 4\)"),
    (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.long), ValueError, r"targets must be 1-D.*\(3, 1\)"),
    (torch.zeros(3, 2), torch.zeros(3), TypeError, "integer class indices.*float32"),
    (torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool), TypeError, "integer class indices"),
    (torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), ValueError, "N=3 rows.*4 entries"),
    (torch.zeros(3, 2), torch.tensor([0, 1, 2]), ValueError, r"\[0, 2\).*from 0 to 2"),
    (torch.zeros(3, 2), torch.tensor([0, -100, 1]), ValueError, r"\[0, 2\).*from -100"),
    (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), ValueError, "empty"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, dtype=torch.long), TypeError, "floating"),
    ([[0.0, 1.0]], torch.zeros(1, dtype=torch.long), TypeError, "torch.Tensor"),
])
def test_cross_entropy_grad_bad_input(logits, targets, err, words):
    with pytest.raises(err, match=words):
        grad.cross_entropy_grad(logits, targets)


def test_numerical_grad_of_a_known_function():
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    g = grad.numerical_grad(lambda t: (t ** 3).sum(), x)
    assert torch.allclose(g, 3 * x ** 2, atol=1e-6)
    with pytest.raises(ValueError, match="eps must be > 0"):
        grad.numerical_grad(lambda t: t.sum(), x, eps=0)
    with pytest.raises(TypeError, match="floating"):
        grad.numerical_grad(lambda t: t.sum(), torch.tensor([1, 2]))


def test_compare_reports_exact_approx_and_max_diff(capsys):
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    same = grad.compare("same", a, a.clone())
    assert same.exact and same.approx and same.max_diff == 0.0
    near = grad.compare("near", a, a + 1e-12)
    assert not near.exact and near.approx and 0 < near.max_diff < 1e-11
    far = grad.compare("far", a, a + 1.0)
    assert not far.approx and far.max_diff == pytest.approx(1.0)
    assert "max diff" in capsys.readouterr().out
    with pytest.raises(ValueError, match="shapes differ"):
        grad.compare("bad", a, a[:1])


def test_weight_decay_step_matches_torch_sgd():
    gen = torch.Generator().manual_seed(0)
    theta, g = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    p = torch.nn.Parameter(theta.clone())
    p.grad = g.clone()
    torch.optim.SGD([p], lr=0.1, weight_decay=0.01).step()
    ours = grad.weight_decay_step(theta, g, 0.1, 0.01)
    assert torch.allclose(ours, p.detach(), atol=1e-7)
    assert not torch.equal(ours, theta)  # a new tensor; the input is left alone
    with pytest.raises(ValueError, match="same shape"):
        grad.weight_decay_step(theta, g[:2], 0.1, 0.01)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        grad.weight_decay_step(theta, g, 0.1, -1.0)


def test_decay_rules_coincide_for_sgd_and_differ_for_adam():
    sgd = grad.decay_rules_demo("sgd")
    assert (sgd["L2 in the loss"] - sgd["decoupled"]).abs().max() < 1e-12
    assert (sgd["optimizer weight_decay"] - sgd["decoupled"]).abs().max() < 1e-12
    adam = grad.decay_rules_demo("adam")
    assert (adam["L2 in the loss"] - adam["optimizer weight_decay"]).abs().max() < 1e-12
    assert (adam["L2 in the loss"] - adam["decoupled"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="'sgd' or 'adam'"):
        grad.decay_rules_demo("rmsprop")


def _blobs(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    centers = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    return centers[y] + 0.5 * torch.randn(n, 2, generator=gen), y


def test_train_softmax_head_learns_separable_blobs_without_autograd():
    X, y = _blobs(300, 0)
    Xd, yd = _blobs(100, 1)
    head = grad.train_softmax_head(X, y, Xd, yd, lr=0.1, weight_decay=1e-3, epochs=5, batch_size=32)
    assert head.accuracy(Xd, yd) > 0.97
    assert not head.W.requires_grad and head.W.grad_fn is None
    h = head.history
    assert h["epoch"] == list(range(6)) and h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    again = grad.train_softmax_head(X, y, Xd, yd, lr=0.1, weight_decay=1e-3, epochs=5, batch_size=32)
    assert torch.equal(head.W, again.W)  # seeded: the same run twice gives the same weights


def test_weight_decay_shrinks_the_head():
    X, y = _blobs(200, 0)
    small = grad.train_softmax_head(X, y, X, y, lr=0.1, weight_decay=0.0, epochs=5)
    decayed = grad.train_softmax_head(X, y, X, y, lr=0.1, weight_decay=0.5, epochs=5)
    assert decayed.W.norm() < 0.8 * small.W.norm()


@pytest.mark.parametrize("kwargs, words", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"batch_size": 2.5}, "batch_size must be a positive int"),
    ({"lr": 0.0}, "lr > 0"),
    ({"X_dev": torch.zeros(4, 3)}, "D=2 features but dev has 3"),
    ({"y": torch.zeros(5, dtype=torch.long)}, "train: 10 feature rows but 5 labels"),
    ({"y": torch.zeros(10)}, "integer"),
])
def test_train_softmax_head_bad_input(kwargs, words):
    args = {"X": torch.zeros(10, 2), "y": torch.zeros(10, dtype=torch.long),
            "X_dev": torch.zeros(4, 2), "y_dev": torch.zeros(4, dtype=torch.long)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        grad.train_softmax_head(**args)


def test_majority_baseline_uses_train_majority():
    majority, acc = grad.majority_baseline([1, 1, 0], [0, 0, 0, 1])
    assert majority == 1 and acc == 0.25
    with pytest.raises(ValueError, match="non-empty"):
        grad.majority_baseline([], [1])


@pytest.mark.gpu
def test_cross_entropy_grad_on_cuda_matches_autograd():
    logits, targets = _batch(64, 21)
    logits, targets = logits.cuda(), targets.cuda()  # CUDA path
    ours = grad.cross_entropy_grad(logits, targets)
    assert ours.is_cuda
    assert (ours - grad.autograd_cross_entropy_grad(logits, targets)).abs().max().item() <= 1e-10
