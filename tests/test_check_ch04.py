"""The chapter 04 checkers pass a correct rsLoRA scaling and DoRA layer, and reject each plausible
mistake with a hint that names it (and no other mistake's)."""
import math
import re

import pytest
import torch
from torch import nn

from effkit.check import ch04


# ---------------------------------------------------------------- right answers
def lora_scaling(r, alpha, rslora=False):
    return alpha / math.sqrt(r) if rslora else alpha / r


class Good(nn.Module):
    def __init__(self, base, r, alpha, rslora=False):
        super().__init__()
        self.base = base
        self.freeze()
        self.r, self.alpha, self.rslora = r, alpha, rslora
        self.scaling = lora_scaling(r, alpha, rslora)
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.empty(base.out_features, r))
        self.magnitude = nn.Parameter(torch.empty(base.out_features))
        self.merged = False
        self.reset_parameters()

    def freeze(self):
        self.base.requires_grad_(False)

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)
        with torch.no_grad():
            self.magnitude.copy_(torch.linalg.norm(self.base.weight, dim=1))

    # pieces the mutants override
    def s(self):
        return self.scaling

    def norm(self):
        return torch.linalg.norm(self.base.weight + self.s() * (self.B @ self.A), dim=1).detach()

    def lora(self, x):
        return (x @ self.A.T @ self.B.T) * self.s()

    def forward(self, x):
        if self.merged:
            return self.base(x)
        ratio = self.magnitude / self.norm()
        return ratio * (x @ self.base.weight.T + self.lora(x)) + self.base.bias

    @torch.no_grad()
    def merge(self):
        self.merge_weight()
        self.merged = True

    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A)
        ratio = self.magnitude / torch.linalg.norm(adapted, dim=1)
        self.base.weight.copy_(ratio[:, None] * adapted)


def test_right_answers_pass(capsys):
    ch04.check_scaling(lora_scaling)
    ch04.check_init(Good)
    ch04.check_forward(Good)
    ch04.check_merge(Good)
    assert capsys.readouterr().out.count("PASS") == 4


def test_solution_rule_matches_peft_for_dora():
    """The formula the assignment states is peft's: norm per output row, detached, bias unscaled."""
    torch.manual_seed(0)
    base = nn.Linear(7, 4)
    twin = ch04._peft_twin(base, 3, 6.0, rslora=True)
    A, B, m = ch04._twin_params(twin)
    with torch.no_grad():
        B.normal_()
        m.mul_(1.5)
    x = torch.randn(2, 3, 7)
    s = 6.0 / math.sqrt(3)
    W, b = base.weight.detach(), base.bias.detach()
    norm = (W + s * B @ A).norm(dim=1).detach()
    want = (m / norm) * (x @ W.T + s * x @ A.T @ B.T) + b
    assert torch.allclose(twin(x), want, atol=1e-5)


# ---------------------------------------------------------------- task 1 mutants
def scaling_plain_always(r, alpha, rslora=False):
    return alpha / r


def scaling_rs_always(r, alpha, rslora=False):
    return alpha / math.sqrt(r)


def scaling_sqrt_of_ratio(r, alpha, rslora=False):
    return math.sqrt(alpha / r) if rslora else alpha / r


def scaling_inverted(r, alpha, rslora=False):
    return math.sqrt(r) / alpha if rslora else r / alpha


def scaling_crashes(r, alpha, rslora=False):
    return alpha / torch.sqrt(r) if rslora else alpha / r


def scaling_returns_none(r, alpha, rslora=False):
    alpha / r


def scaling_unfinished(r, alpha, rslora=False):
    raise NotImplementedError("Your code here")


# ---------------------------------------------------------------- task 2 mutants
class BNotZero(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.kaiming_uniform_(self.B, a=math.sqrt(5))


class BothZero(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.zeros_(self.A)


class AOneSign(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.uniform_(self.A, 0, 1 / math.sqrt(self.A.shape[1]))


class AWithoutGain(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.kaiming_uniform_(self.A)


class ANormal(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.normal_(self.A)


class MagnitudeColumns(Good):
    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            self.magnitude.copy_(torch.linalg.norm(self.base.weight, dim=0)[: self.magnitude.numel()])


class MagnitudeOnes(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.ones_(self.magnitude)


class MagnitudeWholeMatrix(Good):
    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            self.magnitude.fill_(torch.linalg.norm(self.base.weight))


class MagnitudeSquared(Good):
    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            self.magnitude.copy_(self.base.weight.pow(2).sum(dim=1))


class MagnitudeZero(Good):
    def reset_parameters(self):
        super().reset_parameters()
        nn.init.zeros_(self.magnitude)


class MagnitudeFrozen(Good):
    def reset_parameters(self):
        super().reset_parameters()
        self.magnitude.requires_grad_(False)


class MagnitudePlainTensor(Good):
    """Assigns a plain tensor to the parameter's name: nn.Module raises TypeError."""
    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)
        self.magnitude = torch.linalg.norm(self.base.weight, dim=1)


class InitUnfinished(Good):
    def reset_parameters(self):
        raise NotImplementedError("Your code here")


# ---------------------------------------------------------------- task 3 mutants
class DetachLoRA(Good):
    def lora(self, x):
        return super().lora(x).detach()


class DataLoRA(Good):
    def lora(self, x):
        return (x @ self.A.data.T @ self.B.data.T) * self.s()


class NoGradLoRA(Good):
    def lora(self, x):
        with torch.no_grad():
            return super().lora(x)


class NoGradForward(Good):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


class MagnitudeDetached(Good):
    def forward(self, x):
        ratio = self.magnitude.detach() / self.norm()
        return ratio * (x @ self.base.weight.T + self.lora(x)) + self.base.bias


class NormNotDetached(Good):
    def norm(self):
        return torch.linalg.norm(self.base.weight + self.s() * (self.B @ self.A), dim=1)


class PlainScalingUnderRs(Good):
    def s(self):
        return self.alpha / self.r


class NoScaling(Good):
    def s(self):
        return 1.0


class NormUnscaled(Good):
    def norm(self):
        return torch.linalg.norm(self.base.weight + self.B @ self.A, dim=1).detach()


class NormOfW(Good):
    def norm(self):
        return torch.linalg.norm(self.base.weight, dim=1)


class NormDim0(Good):
    def norm(self):
        return torch.linalg.norm(self.base.weight + self.s() * (self.B @ self.A), dim=0).detach()


class Transposed(Good):
    def lora(self, x):
        return (x @ (self.B @ self.A)) * self.s()


class BiasScaled(Good):
    def forward(self, x):
        return (self.magnitude / self.norm()) * (self.base(x) + self.lora(x))


class PlainLoRAForward(Good):
    def forward(self, x):
        return self.base(x) + self.lora(x)


class NoNormForward(Good):
    def forward(self, x):
        return self.magnitude * (x @ self.base.weight.T + self.lora(x)) + self.base.bias


class ShapeError(Good):
    def lora(self, x):
        return (x @ self.A @ self.B) * self.s()


class BaseNotFrozen(Good):
    def freeze(self):
        pass


class ChangesBaseWeight(Good):
    def norm(self):
        weight = self.base.weight
        weight += 0 * self.base.weight + 1e-2      # "just a small in-place fix-up" of the base
        return super().norm()


class ReturnsNone(Good):
    def forward(self, x):
        super().forward(x)


class ForwardUnfinished(Good):
    def forward(self, x):
        raise NotImplementedError("Your code here")


# ---------------------------------------------------------------- task 4 mutants
class MergePlainLoRA(Good):
    def merge_weight(self):
        self.base.weight += self.scaling * (self.B @ self.A)


class MergeNoNorm(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A)
        self.base.weight.copy_(self.magnitude[:, None] * adapted)


class MergeNormOfW(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A)
        ratio = self.magnitude / torch.linalg.norm(self.base.weight, dim=1)
        self.base.weight.copy_(ratio[:, None] * adapted)


class MergeNoScaling(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.B @ self.A
        self.base.weight.copy_((self.magnitude / adapted.norm(dim=1))[:, None] * adapted)


class MergePlainScalingUnderRs(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.alpha / self.r * (self.B @ self.A)
        self.base.weight.copy_((self.magnitude / adapted.norm(dim=1))[:, None] * adapted)


class MergeColumns(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A)
        ratio = self.magnitude / torch.linalg.norm(adapted, dim=0)
        self.base.weight.copy_(ratio[None, :] * adapted)


class MergeTransposed(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A).T
        self.base.weight.copy_((self.magnitude / adapted.norm(dim=1))[:, None] * adapted)


class MergeBiasScaled(Good):
    def merge_weight(self):
        adapted = self.base.weight + self.scaling * (self.B @ self.A)
        ratio = self.magnitude / torch.linalg.norm(adapted, dim=1)
        self.base.weight.copy_(ratio[:, None] * adapted)
        self.base.bias.mul_(ratio)


class MergeNothing(Good):
    def merge_weight(self):
        pass


class MergeForgetsFlag(Good):
    """Merges right but does not set the flag, so forward adds DoRA on the merged weight."""
    @torch.no_grad()
    def merge(self):
        self.merge_weight()


class MergeShapeError(Good):
    def merge_weight(self):
        self.base.weight += self.scaling * (self.B @ self.A.T)


class MergeUnfinished(Good):
    def merge_weight(self):
        raise NotImplementedError("Your code here")


# ---------------------------------------------------------------- the table: mistake -> named in the FAIL
NAMED = [
    # task 1
    (ch04.check_scaling, scaling_plain_always, "rslora=True gives plain LoRA's alpha / r"),
    (ch04.check_scaling, scaling_rs_always, "rslora=False gives rsLoRA's alpha / sqrt"),
    (ch04.check_scaling, scaling_sqrt_of_ratio, "square root is taken of the whole ratio"),
    (ch04.check_scaling, scaling_inverted, "scaling is inverted"),
    # task 2
    (ch04.check_init, BNotZero, "B is not all zeros"),
    (ch04.check_init, BothZero, "A is all zeros"),
    (ch04.check_init, AOneSign, "A has only positive values"),
    (ch04.check_init, AWithoutGain, "kaiming_uniform_ without a=math.sqrt"),
    (ch04.check_init, MagnitudeColumns, "norms of the columns of W"),
    (ch04.check_init, MagnitudeOnes, "magnitude starts at ones"),
    (ch04.check_init, MagnitudeWholeMatrix, "norm of the whole matrix"),
    (ch04.check_init, MagnitudeSquared, "squared row norms"),
    (ch04.check_init, MagnitudeZero, "magnitude is all zeros"),
    (ch04.check_init, MagnitudeFrozen, "magnitude is not a trainable parameter"),
    # task 3
    (ch04.check_forward, DetachLoRA, "A and B get no gradient"),
    (ch04.check_forward, DataLoRA, "A and B get no gradient"),
    (ch04.check_forward, NoGradLoRA, "A and B get no gradient"),
    (ch04.check_forward, NoGradForward, "does not depend on A, B or magnitude"),
    (ch04.check_forward, MagnitudeDetached, "magnitude gets no gradient"),
    (ch04.check_forward, NormNotDetached, "the norm is not detached"),
    (ch04.check_forward, PlainScalingUnderRs, "rsLoRA layer uses plain LoRA's scaling"),
    (ch04.check_forward, NoScaling, "LoRA term is not scaled"),
    (ch04.check_forward, NormUnscaled, "norm is taken of W \\+ B A, without the scaling"),
    (ch04.check_forward, NormOfW, "norm is taken of W alone"),
    (ch04.check_forward, NormDim0, "norm is taken over the wrong dimension"),
    (ch04.check_forward, Transposed, "low-rank product is transposed"),
    (ch04.check_forward, BiasScaled, "bias is rescaled"),
    (ch04.check_forward, PlainLoRAForward, "output is plain LoRA"),
    (ch04.check_forward, NoNormForward, "not divided by the norm"),
    (ch04.check_forward, BaseNotFrozen, "frozen base layer received a gradient"),
    (ch04.check_forward, ChangesBaseWeight, "forward changed base.weight"),
    # task 4
    (ch04.check_merge, MergePlainLoRA, "merged weight is plain LoRA's"),
    (ch04.check_merge, MergeNoNorm, "multiplied by the magnitude but not divided"),
    (ch04.check_merge, MergeNormOfW, "divides by the norms of W alone"),
    (ch04.check_merge, MergeNoScaling, "merge leaves out the scaling"),
    (ch04.check_merge, MergePlainScalingUnderRs, "rsLoRA merge uses plain LoRA's scaling"),
    (ch04.check_merge, MergeColumns, "rescales the columns of V"),
    (ch04.check_merge, MergeTransposed, "transpose of the update"),
    (ch04.check_merge, MergeBiasScaled, "merge changed the bias"),
    (ch04.check_merge, MergeNothing, "merge left base.weight unchanged"),
    (ch04.check_merge, MergeForgetsFlag, "after merging, the output differs"),
]


@pytest.mark.parametrize("checker, wrong, words", NAMED,
                         ids=[getattr(w, "__name__", str(w)) for _, w, _ in NAMED])
def test_checkers_name_the_mistake(checker, wrong, words):
    with pytest.raises(AssertionError) as info:
        checker(wrong)
    message = str(info.value)
    assert re.search(words, message), message
    # the FAIL names this mistake and no other one (a wrong hint is worse than a neutral one)
    others = {w for c, m, w in NAMED if c is checker and w != words}
    assert not [w for w in others if re.search(w, message)], message


@pytest.mark.parametrize("checker, wrong, words", [
    (ch04.check_scaling, scaling_crashes, "raised TypeError"),
    (ch04.check_scaling, scaling_returns_none, "returned NoneType; expected a number"),
    (ch04.check_init, MagnitudePlainTensor, "raised TypeError.*magnitude"),
    (ch04.check_init, ANormal, "kaiming_uniform_\\(a=sqrt\\(5\\)\\) draws from"),
    (ch04.check_forward, ShapeError, "(?s)forward raised RuntimeError.*hint: check the shapes"),
    (ch04.check_forward, ReturnsNone, "forward returned NoneType"),
    (ch04.check_merge, MergeShapeError, "(?s)merge raised RuntimeError.*hint: check the shapes"),
], ids=["scaling_crashes", "scaling_returns_none", "MagnitudePlainTensor", "ANormal",
        "ShapeError", "ReturnsNone", "MergeShapeError"])
def test_student_errors_become_readable_fails(checker, wrong, words):
    """Code that crashes gives a FAIL with a hint, not the student's traceback (no chained error)."""
    with pytest.raises(AssertionError, match=words) as info:
        checker(wrong)
    assert "hint:" in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


@pytest.mark.parametrize("checker, wrong", [
    (ch04.check_scaling, scaling_unfinished),
    (ch04.check_init, InitUnfinished),
    (ch04.check_forward, ForwardUnfinished),
    (ch04.check_merge, MergeUnfinished),
])
def test_unfinished_stub_raises_not_implemented(checker, wrong):
    with pytest.raises(NotImplementedError):
        checker(wrong)


def test_forward_does_not_rely_on_a_correct_init():
    """check_forward sets A, B and magnitude itself, so a wrong init does not fail it."""
    ch04.check_forward(MagnitudeOnes)
    ch04.check_merge(MagnitudeOnes)
