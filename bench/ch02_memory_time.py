"""Benchmark: step time and memory of full fine-tuning, fp32 vs bf16 autocast, lengths 64 and 128.

    .venv/bin/python bench/ch02_memory_time.py [--steps 5] [--batch-size 32] [--warmup 2]
    .venv/bin/python bench/ch02_memory_time.py --smoke   # seconds: checks the code path runs

Every configuration runs in this one process on the packaged MiniLM and real Rotten Tomatoes
batches, and is reported as a ratio to the fp32 / length-64 baseline measured in the same run.
Timed steps take turns across the configurations (``compare_step_times``), so background load
slows all of them alike. Memory comes from ``memory_breakdown`` (saved-tensor hooks), the same
on CPU and GPU. This is a benchmark to run by hand, not a timed unit test.

``--smoke`` runs the same four configurations on a batch of 2 real reviews with 1 timed step
and no warm-up (any of the three options given explicitly still wins): its numbers are not
a measurement, it only shows that the benchmark still runs (tests/test_bench.py).
"""
from __future__ import annotations

import argparse
import platform
import sys

CONFIGS = [("fp32", 64), ("bf16", 64), ("fp32", 128), ("bf16", 128)]  # the first is the baseline
DEFAULTS = {"steps": 5, "batch_size": 32, "warmup": 2}
SMOKE = {"steps": 1, "batch_size": 2, "warmup": 0}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="timed training steps per configuration (default 5; smoke 1)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="sequences per batch (default 32; smoke 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps per configuration first (default 2; smoke 0)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds' run of the same code path on the smallest inputs "
                             "(not a measurement)")
    args = parser.parse_args(argv)
    for name, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import torch

    import effkit as ek

    device = ek.device()
    print(f"device {device} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"{platform.processor() or platform.machine()} | batch {args.batch_size} | "
          f"{args.warmup} warm-up + {args.steps} timed steps per configuration"
          + (" | SMOKE RUN: not a measurement" if args.smoke else ""))
    if device.type == "cuda":  # CUDA path
        print(torch.cuda.get_device_name(device))

    ek.seed_everything(0)
    model, tokenizer = ek.models.load_encoder("sequence", 2)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    train = ek.data.load_sentiment().train
    batches = {L: ek.measure.fixed_length_batch(train, tokenizer, L, args.batch_size)
               for L in sorted({L for _, L in CONFIGS})}

    memory = {f"{p}/{L}": ek.measure.memory_breakdown(model, optimizer, batches[L], p) for p, L in CONFIGS}
    steps = {f"{p}/{L}": (lambda p=p, L=L: ek.measure.training_step(model, optimizer, batches[L], p))
             for p, L in CONFIGS}
    times = ek.measure.compare_step_times(steps, warmup=args.warmup, repeats=args.steps)

    mib = 2**20
    rows = {name: {"step s (median)": times[name]["median"], "IQR s": times[name]["iqr"],
                   "activations MiB": memory[name]["activations"] / mib,
                   "total MiB": memory[name]["total"] / mib} for name in steps}
    table = pd.DataFrame(rows).T
    base = table.iloc[0]
    ratios = (("step s (median)", "time ×"), ("activations MiB", "act ×"), ("total MiB", "total ×"))
    for col, label in ratios:
        table[label] = table[col] / base[col]
    table.index.name = "precision/length"
    print()
    print(table.round(3).to_string())
    print(f"\nratios (×) are to {table.index[0]} measured in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
