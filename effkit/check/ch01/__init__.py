"""Checkers for assignment 01: the backward pass of a softmax head, and label smoothing.

One module per task (``head``, ``smoothing``) and ``plumbing``, what they share.

The oracle is always PyTorch itself: autograd of ``torch.nn.functional.cross_entropy`` (with
``label_smoothing=eps`` for task 2), evaluated in float64. Every checker

- runs the student's function first (so an unfinished stub stops here with NotImplementedError),
  inside a ``TorchFunctionMode`` that sees every torch call it makes: any ``.backward()``,
  ``torch.autograd.grad``, ``requires_grad_`` or tensor that requires grad is reported as autograd
  use, which the tasks forbid;
- turns a crash of the student's code into a readable FAIL with a hint, never a raw traceback;
- tries its cases in a fixed order: a square one first (N = K = d), where a transposed answer or a
  sum over the wrong axis has the right shape but the wrong values; then non-square ones; then a
  batch whose largest class never occurs (a one-hot sized from the targets comes out too narrow);
  then float32 logits up to ±200 (exp overflows);
- when values differ, compares them with the classic mistakes (no 1/N, transposed, log-softmax,
  ε over K−1 classes ...) and names only a mistake whose output it reproduces; otherwise the hint
  is neutral.
"""
from .head import HEAD_CASES, check_softmax_head_backward
from .smoothing import LS_CASES, SMOOTH_CASES, check_label_smoothing_ce, check_smooth_targets

__all__ = ["HEAD_CASES", "LS_CASES", "SMOOTH_CASES", "check_label_smoothing_ce", "check_smooth_targets",
           "check_softmax_head_backward"]
