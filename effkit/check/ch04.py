"""Checks for the chapter 04 assignment: rsLoRA scaling and a DoRA layer, against peft.

The oracle is the ``peft`` library itself: for every case a checker builds peft's LoRA layer with
``LoraConfig(use_dora=True, use_rslora=...)`` on a copy of the same base ``nn.Linear``, copies the
student's ``A``, ``B`` and ``magnitude`` into it, and compares outputs, gradients and merged
weights. When the answer differs, the checker recomputes the classic mistakes (wrong scaling, the
norm over the wrong dimension or not detached, a transposed product, a scaled bias ...) and names
the one that matches; if none matches, the hint only restates the rule.

The student's class is built as ``cls(base, r, alpha, rslora=...)`` and has the attributes
``base``, ``A`` ``(r, in)``, ``B`` ``(out, r)``, ``magnitude`` ``(out,)``, ``scaling`` and the
methods ``reset_parameters``, ``forward`` and ``merge``. Layers are tested square first (where a
transposed product or a norm over the wrong dimension has the right shape but wrong values),
then non-square with both ``in > out`` and ``in < out``.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ._core import call_student, fail, passed

# (in, out, r, alpha). The scalings alpha/r and alpha/sqrt(r) are never 1 and never equal,
# so a forgotten scaling and plain LoRA's scaling under rslora are told apart.
SHAPES = ((8, 8, 2, 4.0), (12, 5, 3, 6.0), (6, 10, 4, 3.0))
INIT_SHAPES = ((16, 16, 4, 8.0), (64, 48, 8, 16.0), (24, 40, 2, 4.0))
SCALING_CASES = ((1, 8), (4, 8), (3, 6), (8, 16), (64, 16), (16, 2))

SHAPE_HINT = ("check the shapes: x is (..., in), A is (r, in), B is (out, r), magnitude is (out,), "
              "base.weight is (out, in) and base.bias is (out,)")
CUT_HINT = ("something in forward cuts the graph between A, B and the output (.detach(), .data, or "
            "the LoRA term computed under torch.no_grad()); only the norm ||W + scaling·B A|| "
            "is detached")


# ---------------------------------------------------------------- plumbing
def _call(what: str, fn, *args, **kwargs):
    """Run student code (see ``call_student``): shape errors get the LoRA shapes as a hint."""
    return call_student(what, fn, *args, shape_hint=SHAPE_HINT, **kwargs)


def _number(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        pass
    fail(f"{what} returned {type(value).__name__}; expected a number", "return a Python float")


def _peft():
    from peft import LoraConfig, inject_adapter_in_model  # imported here: peft loads slowly
    return LoraConfig, inject_adapter_in_model


def _peft_twin(base: nn.Linear, r: int, alpha: float, rslora: bool, dora: bool = True):
    """peft's LoRA layer around a copy of ``base`` (the oracle)."""
    LoraConfig, inject = _peft()
    holder = nn.Module()
    holder.layer = copy.deepcopy(base)
    inject(LoraConfig(r=r, lora_alpha=alpha, target_modules=["layer"], use_dora=dora,
                      use_rslora=rslora), holder)
    return holder.layer


def _twin_params(twin):
    return (twin.lora_A["default"].weight, twin.lora_B["default"].weight,
            twin.lora_magnitude_vector["default"].weight)


def _close(a, b, rtol: float = 1e-4) -> bool:
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        return False
    atol = 1e-5 * max(1.0, b.abs().max().item())
    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol)


def _build(cls, n_in: int, n_out: int, r: int, alpha: float, rslora: bool, seed: int = 0):
    """(student layer, its base, peft's twin on an identical base)."""
    torch.manual_seed(seed)
    base = nn.Linear(n_in, n_out)
    twin = _peft_twin(base, r, alpha, rslora)
    layer = _call(f"building the layer with cls(base, r={r}, alpha={alpha}, rslora={rslora})",
                  cls, base, r, alpha, rslora=rslora)
    for name in ("base", "A", "B", "magnitude", "scaling"):
        if not hasattr(layer, name):
            fail(f"the layer has no attribute {name!r}", "keep the names that __init__ gives you")
    want = {"A": (r, n_in), "B": (n_out, r), "magnitude": (n_out,)}
    for name, shape in want.items():
        got = tuple(getattr(layer, name).shape)
        if got != shape:
            hint = ("magnitude holds one number per output unit (a row of base.weight)"
                    if name == "magnitude" else "do not replace the parameters __init__ made")
            fail(f"{name} has shape {got}, expected {shape} for in={n_in}, out={n_out}, r={r}", hint)
    return layer, base, twin


def _randomize(layer, twin, seed: int = 1) -> None:
    """Give A, B and magnitude random values (B != 0, so the adapter matters) in both layers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        A = 0.5 * torch.randn(layer.A.shape, generator=g)
        B = 0.5 * torch.randn(layer.B.shape, generator=g)
        m = layer.base.weight.norm(dim=1) * (0.5 + torch.rand(layer.magnitude.shape, generator=g))
        for mine, theirs, value in zip((layer.A, layer.B, layer.magnitude), _twin_params(twin),
                                       (A, B, m)):
            mine.copy_(value)
            theirs.copy_(value)


def _scalings(r: int, alpha: float, rslora: bool) -> dict[str, float]:
    right = alpha / math.sqrt(r) if rslora else alpha / r
    return {"right": right, "plain": alpha / r, "one": 1.0}


# ---------------------------------------------------------------- task 1: lora_scaling
def check_scaling(lora_scaling) -> None:
    """``lora_scaling(r, alpha, rslora)`` equals the ``scaling`` peft stores for that config."""
    for r, alpha in SCALING_CASES:
        for rslora in (False, True):
            got = _number(_call(f"lora_scaling({r}, {alpha}, rslora={rslora})",
                                lora_scaling, r, alpha, rslora),
                          f"lora_scaling({r}, {alpha}, rslora={rslora})")
            want = _peft_twin(nn.Linear(64, 64), r, alpha, rslora, dora=False).scaling["default"]
            if math.isclose(got, want, rel_tol=1e-6):
                continue
            case = f"lora_scaling({r}, {alpha}, rslora={rslora}) = {got:.4g}, peft uses {want:.4g}"
            if rslora and math.isclose(got, alpha / r, rel_tol=1e-6):
                fail(f"rslora=True gives plain LoRA's alpha / r: {case}",
                     "rsLoRA divides by the square root of the rank: alpha / math.sqrt(r)")
            if not rslora and math.isclose(got, alpha / math.sqrt(r), rel_tol=1e-6):
                fail(f"rslora=False gives rsLoRA's alpha / sqrt(r): {case}",
                     "without rslora, LoRA keeps its original scaling alpha / r")
            if math.isclose(got, math.sqrt(alpha / r), rel_tol=1e-6):
                fail(f"the square root is taken of the whole ratio: {case}",
                     "only the rank goes under the root: alpha / math.sqrt(r), not sqrt(alpha / r)")
            if math.isclose(got * want, 1.0, rel_tol=1e-6):
                fail(f"the scaling is inverted: {case}", "alpha is the numerator, r (or sqrt(r)) "
                     "the denominator")
            fail(case, "plain LoRA: alpha / r; rsLoRA: alpha / math.sqrt(r)")
    passed("lora_scaling: alpha / r, and alpha / sqrt(r) with rslora, as peft's LoraConfig")


# ---------------------------------------------------------------- task 2: reset_parameters
def check_init(cls) -> None:
    """A Kaiming-uniform like nn.Linear (both signs, bound 1/sqrt(in)), B zero, magnitude equal to
    peft's ``lora_magnitude_vector`` (the row norms of W), a trainable parameter."""
    for n_in, n_out, r, alpha in INIT_SHAPES:
        layer, base, twin = _build(cls, n_in, n_out, r, alpha, rslora=False)
        A, B, m = layer.A.detach(), layer.B.detach(), layer.magnitude
        if torch.count_nonzero(B) != 0:
            fail("B is not all zeros after initialisation",
                 "B = 0 makes B A = 0, so V = W and the layer starts as the pretrained one")
        if torch.count_nonzero(A) == 0:
            fail("A is all zeros after initialisation",
                 "with A = 0 and B = 0 the gradients of both are zero and the adapter never learns")
        bound = 1 / math.sqrt(n_in)
        negative = (A < 0).float().mean().item()
        if negative == 0.0 or negative == 1.0:
            fail(f"A has only {'positive' if negative == 0 else 'negative'} values "
                 f"(in={n_in}, r={r})",
                 f"kaiming_uniform_(a=sqrt(5)) draws from U(-{bound:.3f}, {bound:.3f}), both signs; "
                 "uniform_(0, b) covers half of that range")
        top = A.abs().max().item()
        if top > bound * (1 + 1e-5):
            without_a = math.sqrt(6 / n_in)  # kaiming_uniform_ with its default a=0
            if top <= without_a * (1 + 1e-5) and top > 0.8 * without_a:
                fail(f"A's values reach {top:.3f}, beyond 1/sqrt(in) = {bound:.3f}",
                     f"kaiming_uniform_ without a=math.sqrt(5) draws from U(-sqrt(6/in), "
                     f"sqrt(6/in)) = ±{without_a:.3f}; nn.Linear and peft pass a=math.sqrt(5)")
            fail(f"A's values reach {top:.3f}; kaiming_uniform_(a=sqrt(5)) draws from "
                 f"U(-{bound:.3f}, {bound:.3f}) for in_features={n_in}",
                 "use nn.init.kaiming_uniform_(self.A, a=math.sqrt(5)), as nn.Linear and peft do")
        if top < 0.7 * bound or not 0.25 < negative < 0.75:
            fail(f"A's values (largest {top:.3f}, {negative:.0%} negative) do not look like "
                 f"U(-{bound:.3f}, {bound:.3f})",
                 "use nn.init.kaiming_uniform_(self.A, a=math.sqrt(5)), as nn.Linear and peft do")
        if not isinstance(m, torch.Tensor) or not m.requires_grad:
            fail("magnitude is not a trainable parameter after reset_parameters",
                 "magnitude trains with A and B: keep the nn.Parameter that __init__ made, with "
                 "requires_grad=True, and fill it in place under torch.no_grad() (copy_)")
        want = _twin_params(twin)[2].detach()
        got = m.detach()
        if _close(got, want):
            continue
        W = base.weight.detach()
        case = f"in={n_in}, out={n_out}"
        if n_in == n_out and _close(got, W.norm(dim=0)):
            fail(f"magnitude holds the norms of the columns of W ({case})",
                 "one norm per output unit: row i of base.weight (out, in), torch.linalg.norm(W, dim=1)")
        if _close(got, torch.ones_like(want)):
            fail(f"magnitude starts at ones ({case})",
                 "with m = 1 the layer starts with every row of W rescaled to length 1, not as the "
                 "pretrained layer; m must start at the row norms of W")
        if _close(got, W.norm().expand_as(want)):
            fail(f"magnitude holds the norm of the whole matrix ({case})",
                 "one norm per output unit: torch.linalg.norm(W, dim=1)")
        if _close(got, W.pow(2).sum(dim=1)):
            fail(f"magnitude holds the squared row norms ({case})", "take the square root: the L2 norm")
        if torch.count_nonzero(got) == 0:
            fail(f"magnitude is all zeros ({case})",
                 "m scales every output: with m = 0 the layer outputs only the bias")
        fail(f"magnitude differs from peft's lora_magnitude_vector ({case})",
             "m starts at the L2 norm of each row of base.weight, so m / ||V|| = 1 at the start")
    passed("reset_parameters: A Kaiming-uniform, B zero, magnitude = the row norms of W, as peft's DoRA")


# ---------------------------------------------------------------- task 3: forward
def _forward_mistakes(x, W, b, A, B, m, s: dict[str, float], square: bool, rslora: bool):
    """(output, what, hint) for each classic mistake, computed from detached tensors."""
    lora = x @ A.T @ B.T
    rows = lambda V: V.norm(dim=1)  # noqa: E731
    out = []
    if rslora:
        t = s["plain"]
        out.append(((m / rows(W + t * B @ A)) * (x @ W.T + t * lora) + b,
                    "the rsLoRA layer uses plain LoRA's scaling alpha / r",
                    "with rslora=True the scaling is alpha / sqrt(r): use self.scaling"))
    t, one = s["right"], s["one"]
    out += [
        ((m / rows(W + one * B @ A)) * (x @ W.T + one * lora) + b,
         "the LoRA term is not scaled",
         "multiply B A (in the norm) and x Aᵀ Bᵀ (in the output) by self.scaling"),
        ((m / rows(W + B @ A)) * (x @ W.T + t * lora) + b,
         "the norm is taken of W + B A, without the scaling",
         "normalise the weight the layer really uses: V = W + self.scaling · B A"),
        ((m / rows(W)) * (x @ W.T + t * lora) + b,
         "the norm is taken of W alone",
         "DoRA normalises the adapted weight V = W + scaling · B A, not the frozen W"),
        (x @ W.T + b + t * lora,
         "the output is plain LoRA: the magnitude and the norm are missing",
         "rescale x Wᵀ + scaling · x Aᵀ Bᵀ by magnitude / ||W + scaling · B A|| per output unit"),
        (m * (x @ W.T + t * lora) + b,
         "the output is scaled by the magnitude but not divided by the norm",
         "the ratio is magnitude / ||W + scaling · B A||, one number per output unit"),
        ((m / rows(W + t * B @ A)) * (x @ W.T + t * lora + b),
         "the bias is rescaled by magnitude / ||V||",
         "DoRA rescales the direction of the weight only: add base.bias after the ratio, as peft does"),
    ]
    if square:
        out += [
            ((m / (W + t * B @ A).norm(dim=0)) * (x @ W.T + t * lora) + b,
             "the norm is taken over the wrong dimension (columns of W, dim=0)",
             "one norm per output unit: row i of V (out, in), torch.linalg.norm(V, dim=1)"),
            ((m / rows(W + t * B @ A)) * (x @ W.T + t * (x @ (B @ A))) + b,
             "the low-rank product is transposed: you computed x (B A), not x (B A)ᵀ",
             "B A has shape (out, in) like base.weight, and a Linear computes x Wᵀ: use x @ A.T @ B.T"),
        ]
    return out


def _reference_grads(x, g, W, b, A, B, m, t: float, detach_norm: bool):
    A, B, m = (p.detach().clone().requires_grad_(True) for p in (A, B, m))
    norm = (W + t * B @ A).norm(dim=1)
    if detach_norm:
        norm = norm.detach()
    y = (m / norm) * (x @ W.T + t * (x @ A.T @ B.T)) + b
    y.backward(g)
    return A.grad, B.grad, m.grad


def check_forward(cls) -> None:
    """``forward`` equals peft's DoRA layer (outputs and gradients of A, B, magnitude), with and
    without rsLoRA; the frozen base gets no gradient and is not changed."""
    for n_in, n_out, r, alpha in SHAPES:
        for rslora in (False, True):
            case = f"in={n_in}, out={n_out}, r={r}, alpha={alpha}, rslora={rslora}"
            layer, base, twin = _build(cls, n_in, n_out, r, alpha, rslora)
            _randomize(layer, twin)
            gen = torch.Generator().manual_seed(2)
            x = torch.randn(2, 5, n_in, generator=gen)
            g = torch.randn(2, 5, n_out, generator=gen)
            W, b = base.weight.detach().clone(), base.bias.detach().clone()
            A, B, m = (p.detach().clone() for p in (layer.A, layer.B, layer.magnitude))

            out = _call("forward", layer, x)
            if not isinstance(out, torch.Tensor):
                fail(f"forward returned {type(out).__name__}; expected a tensor", "return the output")
            if tuple(out.shape) != (2, 5, n_out):
                fail(f"forward returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)} "
                     f"({case}); expected {(2, 5, n_out)}", SHAPE_HINT)
            if not _close(base.weight.detach(), W) or not _close(base.bias.detach(), b):
                fail("forward changed base.weight or base.bias",
                     "forward must leave the frozen layer as it is: build V = W + scaling · B A as "
                     "a new tensor, with no in-place operation on base.weight")
            want = twin(x)
            if not _close(out.detach(), want.detach()):
                s = _scalings(r, alpha, rslora)
                for value, what, hint in _forward_mistakes(x, W, b, A, B, m, s, n_in == n_out, rslora):
                    if _close(out.detach(), value):
                        fail(f"{what} ({case})", hint)
                fail(f"forward differs from peft's DoRA layer ({case})",
                     "y = (magnitude / ||W + scaling · B A||) · (x Wᵀ + scaling · x Aᵀ Bᵀ) + bias, "
                     "the norm taken per output unit (each row of V)")

            # backward: the same upstream gradient through both layers
            want.backward(g)
            if not out.requires_grad:
                fail(f"the output does not depend on A, B or magnitude for autograd ({case}): "
                     "the values are right but nothing would train", CUT_HINT)
            _call("backward through your forward", out.backward, g)
            if base.weight.grad is not None or base.bias.grad is not None:
                fail("the frozen base layer received a gradient",
                     "keep base frozen (base.requires_grad_(False)): only A, B and magnitude train")
            tA, tB, tm = _twin_params(twin)
            grads = {"A": (layer.A.grad, tA.grad), "B": (layer.B.grad, tB.grad),
                     "magnitude": (layer.magnitude.grad, tm.grad)}
            cut = [n for n in ("A", "B") if grads[n][0] is None or torch.count_nonzero(grads[n][0]) == 0]
            if cut:
                fail(f"{' and '.join(cut)} get no gradient, although the output is right ({case})",
                     CUT_HINT)
            if grads["magnitude"][0] is None or torch.count_nonzero(grads["magnitude"][0]) == 0:
                fail(f"magnitude gets no gradient, although the output is right ({case})",
                     "use self.magnitude itself in forward (no .detach(), .data or torch.no_grad())")
            wrong = [n for n, (mine, theirs) in grads.items() if not _close(mine, theirs, rtol=1e-3)]
            if wrong:
                t = _scalings(r, alpha, rslora)["right"]
                alt = dict(zip(("A", "B", "magnitude"),
                               _reference_grads(x, g, W, b, A, B, m, t, detach_norm=False)))
                if all(_close(grads[n][0], alt[n], rtol=1e-3) for n in grads):
                    fail(f"the gradients of A and B differ from peft's: the norm is not detached "
                         f"({case})",
                         "treat ||W + scaling · B A|| as a constant, as peft and the DoRA paper "
                         "(section 4.3) do: call .detach() on it; the output is the same, only the "
                         "gradients change")
                fail(f"the gradient of {', '.join(wrong)} differs from peft's DoRA layer ({case})",
                     "the output is right, so look at what backward sees: only the norm is detached")
    passed("forward: the same outputs and gradients (A, B, magnitude) as peft's DoRA, "
           "with and without rsLoRA; the base stays frozen")


# ---------------------------------------------------------------- task 4: merge
def _merge_mistakes(W, A, B, m, s: dict[str, float], square: bool, rslora: bool):
    """(weight, what, hint) for each classic mistake in merging."""
    t = s["right"]
    rows = lambda V: V.norm(dim=1, keepdim=True)  # noqa: E731
    V = W + t * B @ A
    out = [
        (V, "the merged weight is plain LoRA's W + scaling · B A",
         "DoRA rescales each row of V = W + scaling · B A to length magnitude_i"),
        (m[:, None] * V, "the merged weight is multiplied by the magnitude but not divided by the norm",
         "each row of V is scaled by magnitude_i / ||V_i||"),
        (m[:, None] / rows(W) * V, "the merge divides by the norms of W alone",
         "normalise the adapted weight V = W + scaling · B A"),
        ((m[:, None] / rows(W + B @ A)) * (W + B @ A), "the merge leaves out the scaling",
         "V = W + self.scaling · B A"),
    ]
    if rslora:
        p = s["plain"]
        out.append(((m[:, None] / rows(W + p * B @ A)) * (W + p * B @ A),
                    "the rsLoRA merge uses plain LoRA's scaling alpha / r",
                    "with rslora=True the scaling is alpha / sqrt(r): use self.scaling"))
    if square:
        VT = W + t * (B @ A).T
        out += [
            ((m[None, :] / V.norm(dim=0, keepdim=True)) * V,
             "the merge rescales the columns of V instead of its rows",
             "magnitude has one entry per output unit, a row of base.weight: use ratio[:, None]"),
            ((m[:, None] / rows(VT)) * VT, "the merge adds (B A)ᵀ: the transpose of the update",
             "base.weight is (out, in); B @ A is (out, r) @ (r, in) = (out, in) already"),
        ]
    return out


def check_merge(cls) -> None:
    """``merge`` writes the weight peft's DoRA ``merge()`` writes, leaves the bias alone, and the
    merged layer's outputs equal peft's merged layer's."""
    for n_in, n_out, r, alpha in SHAPES:
        for rslora in (False, True):
            case = f"in={n_in}, out={n_out}, r={r}, alpha={alpha}, rslora={rslora}"
            layer, base, twin = _build(cls, n_in, n_out, r, alpha, rslora)
            _randomize(layer, twin)
            x = torch.randn(3, n_in, generator=torch.Generator().manual_seed(3))
            W, b = base.weight.detach().clone(), base.bias.detach().clone()
            A, B, m = (p.detach().clone() for p in (layer.A, layer.B, layer.magnitude))
            with torch.no_grad():
                _call("merge", layer.merge)
                twin.merge()
            merged = base.weight.detach()
            want = twin.base_layer.weight.detach()
            if not _close(base.bias.detach(), b):
                fail(f"merge changed the bias ({case})",
                     "DoRA rescales only the weight: y_i = (m_i / ||V_i||) · V_i · x + b_i")
            if _close(merged, W):
                fail(f"merge left base.weight unchanged ({case})",
                     "write (magnitude / ||V||)[:, None] · V into base.weight, V = W + scaling · B A")
            if not _close(merged, want):
                s = _scalings(r, alpha, rslora)
                for value, what, hint in _merge_mistakes(W, A, B, m, s, n_in == n_out, rslora):
                    if _close(merged, value):
                        fail(f"{what} ({case})", hint)
                fail(f"the merged weight differs from the one peft's merge() writes ({case})",
                     "row i of the merged weight is (magnitude_i / ||V_i||) · V_i, "
                     "V = W + scaling · B A")
            with torch.no_grad():
                after, want_after = _call("forward after merge", layer, x), twin(x)
            if not isinstance(after, torch.Tensor) or not _close(after, want_after):
                fail(f"after merging, the output differs from peft's merged layer ({case})",
                     "the merged base.weight already holds the whole layer: after merge, forward "
                     "must return base(x) alone (keep `if self.merged: return self.base(x)`)")
    passed("merge: base.weight = (m / ||W + scaling·B A||) row by row · (W + scaling·B A), "
           "as peft's DoRA merge; the outputs do not change")
