"""The chapter 04 checkers pass a correct LoRA layer and catch each classic mistake."""
import math

import pytest
import torch
from torch import nn

from effkit.check import ch04


class Good(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.empty(base.out_features, r))
        self.merged = False
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)

    def forward(self, x):
        if self.merged:
            return self.base(x)
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling

    @torch.no_grad()
    def merge(self):
        self.base.weight += (self.B @ self.A) * self.scaling
        self.merged = True


class NoScaling(Good):
    def forward(self, x):
        return self.base(x) + x @ self.A.T @ self.B.T


class BNotZero(Good):
    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.B, a=math.sqrt(5))


class BothZero(Good):
    def reset_parameters(self):
        nn.init.zeros_(self.A)
        nn.init.zeros_(self.B)


class WrongAInit(Good):
    def reset_parameters(self):
        nn.init.normal_(self.A)
        nn.init.zeros_(self.B)


class Transposed(Good):
    def forward(self, x):
        return self.base(x) + (x @ (self.B @ self.A)) * self.scaling


class NoBase(Good):
    def forward(self, x):
        if self.merged:
            return self.base(x)
        return (x @ self.A.T @ self.B.T) * self.scaling


class MergeNoScale(Good):
    @torch.no_grad()
    def merge(self):
        self.base.weight += self.B @ self.A
        self.merged = True


class MergeTransposed(Good):
    @torch.no_grad()
    def merge(self):
        self.base.weight += (self.B @ self.A).T * self.scaling
        self.merged = True


class MergeTwice(Good):
    """Merges but forgets the flag, so forward adds the LoRA term a second time."""
    @torch.no_grad()
    def merge(self):
        self.base.weight += (self.B @ self.A) * self.scaling


class ShapeError(Good):
    def forward(self, x):
        return self.base(x) + (x @ self.A @ self.B) * self.scaling


class Unfinished(Good):
    def reset_parameters(self):
        raise NotImplementedError("Your code here")


def test_correct_layer_passes(capsys):
    ch04.check_init(Good)
    ch04.check_forward(Good)
    ch04.check_merge(Good)
    assert capsys.readouterr().out.count("PASS") == 3


@pytest.mark.parametrize("checker, wrong, words", [
    (ch04.check_init, BNotZero, "B is not all zeros"),
    (ch04.check_init, BothZero, "A has zeros"),
    (ch04.check_init, WrongAInit, "kaiming_uniform_"),
    (ch04.check_forward, BNotZero, "at initialisation the output differs"),
    (ch04.check_forward, NoScaling, "not scaled"),
    (ch04.check_forward, Transposed, "transposed"),
    (ch04.check_forward, NoBase, "output differs|base layer's output is missing"),
    (ch04.check_forward, ShapeError, "(?s)raised RuntimeError.*check the shapes"),
    (ch04.check_merge, MergeNoScale, "without the alpha / r scale"),
    (ch04.check_merge, MergeTransposed, "transpose of ΔW"),
    (ch04.check_merge, MergeTwice, "output changed after merging"),
])
def test_checkers_catch_mistakes(checker, wrong, words):
    with pytest.raises(AssertionError, match=words):
        checker(wrong)


def test_unfinished_stub_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        ch04.check_init(Unfinished)
