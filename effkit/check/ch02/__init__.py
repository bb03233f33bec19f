"""Checkers for assignment 02: labels on word pieces, the learning-rate schedule, early stopping.

One module per task: ``labels``, ``schedule``, ``stopping``.

Each task is checked against an implementation the student did not write:

- ``check_label_pieces``: the tokenizer itself (``input_ids``), ``effkit.batching.align_labels``
  (the first-piece labels) and the rule "a continuation piece is inside its word's entity" (the
  ``"inside"`` scheme), on real WNUT-2016 tweets picked by the checker (multi-piece words inside
  entities, multi-word entities, multi-piece ``O`` words), with the file's label order and with a
  reordered ``label_names``;
- ``check_lr_schedule``: ``transformers.get_linear_schedule_with_warmup`` driving a real optimizer,
  read before each update exactly as ``effkit.train.fit`` steps it, over many (total, warmup)
  pairs including warmup 0, warmup 1, warmup = total - 1 and a single step;
- ``check_early_stopping``: ``effkit.train.fit`` itself, trained for one step per epoch on a model
  whose dev accuracy follows a scripted history, fixed tricky histories first, then random ones.

When an answer is wrong the checker recomputes the plausible mistakes and names the one that
matches; when none matches, the hint restates the rule without guessing.
"""
from .labels import CONTINUATIONS, IGNORE, check_label_pieces, reference_labels
from .schedule import LR_CASES, check_lr_schedule, oracle_lrs
from .stopping import DEV_SIZE, STOP_CASES, check_early_stopping

__all__ = ["CONTINUATIONS", "DEV_SIZE", "IGNORE", "LR_CASES", "STOP_CASES", "check_early_stopping",
           "check_label_pieces", "check_lr_schedule", "oracle_lrs", "reference_labels"]
