"""Every training recipe of the book, per profile, in one place.

A recipe is a :class:`~effkit.train.TrainConfig` plus the data sizes it trains and evaluates on.
``full`` is the book's profile (real splits); ``fast`` is the tests' profile (small seeded
subsets, a few steps: it runs the real code path, its accuracies say little). Changing a value
here changes the cache key of every run that uses it, so those runs are retrained once.

| recipe | used by | full profile |
|---|---|---|
| ``baseline("sequence")`` | ch02 sentiment fine-tune, the "full" row of ch04/ch06 | 2 epochs of 32, lr 5e-5 |
| ``baseline("token")`` | ch02 NER fine-tune | up to 8 epochs of 16, lr 1e-4 |
| ``ner_seed_style()`` | ch02's model trained on the seed article's padded-'O' labels | 2 epochs of 16, lr 1e-4, length 64 |
| ``peft()`` | every PEFT row of ch04, QLoRA in ch06 | 1 epoch of 32, lr 3e-3 |
| ``rank_sweep()`` | the rank explorer's accuracy points | 100 steps of 16 on 1,600 reviews, lr 3e-3 |
| ``prune_recovery()`` | ch05: recovery after pruning, gradual pruning | 100 steps of 32, lr 5e-5 |
"""
from __future__ import annotations

from dataclasses import replace

from .config import pick
from .train import TrainConfig

TASKS = ("sequence", "token")


def baseline(task: str) -> TrainConfig:
    """The chapter 02 full fine-tune of each task (fast: a short fixed step budget)."""
    if task == "sequence":
        return pick(fast=TrainConfig(lr=1e-4, epochs=1, batch_size=16, max_length=48, max_steps=20,
                                     eval_every=10, patience=3),
                    full=TrainConfig(lr=5e-5, epochs=2, batch_size=32, max_length=64, eval_every=80,
                                     patience=3))
    if task == "token":
        return pick(fast=TrainConfig(lr=1e-4, epochs=3, batch_size=16, max_length=128, max_steps=30,
                                     eval_every=15, patience=3),
                    full=TrainConfig(lr=1e-4, epochs=8, batch_size=16, max_length=128, patience=3))
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def ner_seed_style() -> TrainConfig:
    """The NER baseline's recipe for a model trained on the seed article's labels (chapter 02,
    section 2.8): every tweet padded to ``max_length`` with 'O' and every position scored, so
    each step costs about max_length / (longest tweet of the batch) times an aligned step. Hence
    ``max_length`` 64, not 128 (the longest train tweet has 75 pieces, 99% have at most 57) and 2
    epochs, not 8: it is there to be measured against the aligned model, not to be used. (Measured
    with 3 epochs: dev entity F1 0.0 after each, 'O' predicted for every one of the 4,750 test
    words; the aligned model was at 0.19 and 0.48 after its first two epochs.)"""
    return pick(fast=TrainConfig(lr=1e-4, epochs=1, batch_size=16, max_length=64, max_steps=6, patience=3),
                full=TrainConfig(lr=1e-4, epochs=2, batch_size=16, max_length=64, patience=3))


def data_sizes(task: str) -> dict:
    """How many train/dev/test examples each profile uses (None: the whole split)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "sequence":
        return pick(fast={"train": 480, "dev": 160, "test": 320},
                    full={"train": None, "dev": None, "test": None})
    return pick(fast={"train": 720, "dev": 120, "test": None},
                full={"train": None, "dev": None, "test": None})


def peft(max_steps: int | None = None) -> TrainConfig:
    """The recipe of every parameter-efficient row: the sentiment baseline's batch and length,
    one epoch with warmup and linear decay, dev checked every 80 steps (best kept), and a 60x
    larger learning rate (few, mostly freshly initialised parameters). ``max_steps`` caps it.

    Measured for LoRA r=8 (query, value) in the full profile, test accuracy after one epoch:
    lr 1e-3 0.8112, lr 3e-3 0.8295, lr 5e-3 0.8183; lr 2e-3 with batch 16 0.8295; two epochs at
    3e-3 0.8287 (no gain). Where LoRA goes, at 3e-3: r=8 on all four attention projections
    0.8271; r=8 on the feed-forward layers (0.81% trainable) 0.8359. Full fine-tuning (2 epochs)
    reaches 0.8478; one standard error on the 1,255 test reviews is about 1 point."""
    config = pick(fast=TrainConfig(lr=3e-3, epochs=1, batch_size=16, max_length=48, max_steps=12,
                                   patience=3),
                  full=TrainConfig(lr=3e-3, epochs=1, batch_size=32, max_length=64, eval_every=80,
                                   patience=3))
    if max_steps is not None:
        config = replace(config, max_steps=max_steps, eval_every=max(max_steps // 3, 1))
    return config


def rank_sweep() -> TrainConfig:
    """The short LoRA run behind each point of the rank explorer (full: 100 steps of 16 reviews,
    under a minute on two CPU cores; fast: 4 steps), at :func:`peft`'s learning rate, 3e-3.
    At 1e-3, 100 steps left ranks 1 and 2 within 5 points of the majority class (0.6375 and
    0.655 against 0.6025): the sweep showed the budget, not the rank. At 3e-3: r=1 0.7475,
    r=2 0.7625, r=64 0.80."""
    return pick(fast=TrainConfig(lr=3e-3, epochs=1, batch_size=16, max_length=48, max_steps=4, patience=3),
                full=TrainConfig(lr=3e-3, epochs=1, batch_size=16, max_length=48, max_steps=100,
                                 eval_every=50, patience=3))


def rank_sweep_sizes() -> dict:
    """The seeded Rotten Tomatoes subsets of the rank sweep (accuracy is read on the test subset)."""
    return pick(fast={"train": 64, "dev": 32, "test": 32}, full={"train": 1600, "dev": 400, "test": 400})


def prune_recovery(max_steps: int | None = None) -> TrainConfig:
    """Chapter 05's short fine-tune of a pruned classifier (masks kept applied, or the sparsity
    raised in stages): every weight trains at the baseline's learning rate and batch, for a fixed
    budget (full: 100 steps of 32, about two minutes on two CPU cores; fast: 6 steps of 16),
    evaluated once, at the end, so the model kept is the one at the final sparsity.
    ``max_steps`` changes the budget."""
    config = pick(fast=TrainConfig(lr=5e-5, epochs=1, batch_size=16, max_length=48, max_steps=6, patience=3),
                  full=TrainConfig(lr=5e-5, epochs=1, batch_size=32, max_length=64, max_steps=100,
                                   patience=3))
    return config if max_steps is None else replace(config, max_steps=max_steps)


def prune_sizes(test: int | None = None) -> dict:
    """Chapter 05's data: the whole train split to draw recovery batches from, a seeded dev subset
    for the final check, and the whole test split (the done-when rows are read on it) or, with
    ``test``, a seeded test subset of that size (the comparisons that need no single number)."""
    sizes = pick(fast={"train": 480, "dev": 64, "test": 160}, full={"train": None, "dev": 256, "test": None})
    return sizes if test is None else {**sizes, "test": test}
