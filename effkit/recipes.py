"""Every training recipe of the book, per profile, in one place.

A recipe is a :class:`~effkit.train.TrainConfig` plus the data sizes it trains and evaluates on.
``full`` is the book's profile (real splits); ``fast`` is the tests' profile (small seeded
subsets, a few steps: it runs the real code path, its accuracies say little). Changing a value
here changes the cache key of every run that uses it, so those runs are retrained once.

| recipe | used by | full profile |
|---|---|---|
| ``baseline("sequence")`` | ch02 sentiment fine-tune, the "full" row of ch04/ch06 | 2 epochs of 32, lr 5e-5 |
| ``baseline("token")`` | ch02 NER fine-tune | up to 8 epochs of 16, lr 1e-4 |
| ``peft()`` | every PEFT row of ch04, QLoRA in ch06 | 1 epoch of 32, lr 3e-3 |
| ``rank_sweep()`` | the rank explorer's accuracy points | 100 steps of 16 on 1,600 reviews, lr 3e-3 |
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
    lr 1e-3 0.8112, lr 3e-3 0.8295; lr 2e-3 with batch 16 also 0.8295, and r=8 on all four
    attention projections at 3e-3 0.8271. Full fine-tuning (2 epochs) reaches 0.8478."""
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
