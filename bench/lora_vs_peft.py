"""effkit's LoRA against Hugging Face peft's, on the same model, data, seed and steps.

Both wrap MiniLM's query and value projections (r=8, alpha=16) and train the classifier head.
peft's A matrices are overwritten with effkit's, so both start from identical weights; both are
trained by the same ``effkit.train.fit`` with the same config and batch order. The bench reports

- trainable parameters of each (they must be equal);
- step time (forward + backward + AdamW step on one real batch): median of ``--repeats`` steps
  after ``--warmup``, the two models taking turns so machine load hits both alike; the ratio
  effkit / peft;
- dev and test accuracy after ``--steps`` optimizer steps;
- the saved adapter size of each next to the full model checkpoint.

Usage (from the repository root)::

    EFFKIT_PROFILE=fast .venv/bin/python bench/lora_vs_peft.py            # ~2 min on 2 cores
    EFFKIT_PROFILE=full .venv/bin/python bench/lora_vs_peft.py             # 2 epochs, ~25 min
    EFFKIT_PROFILE=fast .venv/bin/python bench/lora_vs_peft.py --smoke     # seconds

The JSON result goes to ``--out`` (default ``<EFFKIT_RESULTS>/bench_lora_vs_peft_<profile>.json``).

``--smoke`` runs every step above on 8 real train / dev / test reviews each, in batches of 4:
2 optimizer steps, no warm-up, 1 timed step (``--steps``, ``--warmup``, ``--repeats`` given
explicitly still win). Its numbers are not a measurement; it only shows that the bench still
runs (tests/test_bench.py). Its JSON goes to ``--out`` or to a new temporary folder, never to
``EFFKIT_RESULTS``, so it cannot overwrite a real result.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import effkit as ek
from effkit import baselines, compare, measure, recipes  # noqa: F401
from effkit.peft import lora
from effkit.files import atomic_write_json
from effkit.train import evaluate, fit

TARGETS, R, ALPHA = ("query", "value"), 8, 16
SMOKE = {"steps": 2, "warmup": 0, "repeats": 1}
SMOKE_SIZES, SMOKE_BATCH_SIZE = {"train": 8, "dev": 8, "test": 8}, 4


def build_pair(base):
    """(effkit model, peft model), starting from the same weights."""
    ours = compare.technique("lora").prepare(copy.deepcopy(base), r=R, alpha=ALPHA, targets=TARGETS)
    theirs = compare.technique("peft-lora").prepare(copy.deepcopy(base), r=R, alpha=ALPHA,
                                       targets=TARGETS)
    modules = dict(theirs.named_modules())
    with torch.no_grad():  # B is zero in both; make A equal too
        for name, layer in lora.lora_layers(ours).items():
            modules[f"base_model.model.{name}"].lora_A["default"].weight.copy_(layer.A)
    return ours, theirs


def saved_sizes(base, ours, theirs) -> dict:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours_path = lora.save_lora(ours, tmp / "effkit_lora.safetensors")
        theirs.save_pretrained(tmp / "peft")
        save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(tmp / "full.safetensors"))
        return {"effkit_adapter": ours_path.stat().st_size,
                "peft_adapter": (tmp / "peft" / "adapter_model.safetensors").stat().st_size,
                "full_checkpoint": (tmp / "full.safetensors").stat().st_size}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Not given: SUPPRESS leaves the attribute unset, so the profile's or the smoke value fills it.
    parser.add_argument("--steps", type=int, default=argparse.SUPPRESS,
                        help="optimizer steps of the training run (fast default 30; full default: "
                             "the PEFT recipe's 2 epochs; smoke 2)")
    parser.add_argument("--warmup", type=int, default=argparse.SUPPRESS,
                        help="untimed steps before timing (default 3; smoke 0)")
    parser.add_argument("--repeats", type=int, default=argparse.SUPPRESS,
                        help="timed steps (fast default 10, full 30; smoke 1)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON result")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds' run of every step on 8 reviews per split (not a "
                             "measurement; the JSON goes to --out or a temporary folder)")
    args = parser.parse_args(argv)
    defaults = SMOKE if args.smoke else {"steps": ek.pick(fast=30, full=None), "warmup": 3,
                                         "repeats": ek.pick(fast=10, full=30)}
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)

    config = recipes.peft(args.steps)
    if args.smoke:
        config = replace(config, batch_size=SMOKE_BATCH_SIZE)
        print(f"SMOKE RUN (not a measurement): {SMOKE_SIZES} reviews, batches of "
              f"{config.batch_size}, {args.steps} steps, {args.warmup} warm-up + {args.repeats} "
              f"timed step(s)")
    ek.seed_everything(config.seed)
    labels = ek.data.SENTIMENT_LABELS
    base, tokenizer = ek.models.load_encoder("sequence", len(labels), label_names=labels)
    base.to(ek.device())
    loaders = baselines.sentiment_loaders(tokenizer, config, SMOKE_SIZES if args.smoke else None)
    ours, theirs = build_pair(base)
    result = {"profile": ek.profile(), "device": str(ek.device()), "torch": torch.__version__,
              "targets": list(TARGETS), "r": R, "alpha": ALPHA, "train_config": config.to_dict(),
              "trainable": {"effkit": measure.count_parameters(ours, True),
                            "peft": measure.count_parameters(theirs, True)}}
    if args.smoke:
        result["smoke"] = {"data_sizes": SMOKE_SIZES}
    print("effkit:", measure.trainable_summary(ours))
    print("peft:  ", measure.trainable_summary(theirs))

    batch = next(iter(loaders["train"]))
    times = compare.interleaved_step_times({"effkit": ours, "peft": theirs}, batch, config,
                                                args.warmup, args.repeats)
    result["step_seconds"] = {n: {"median": t["median"], "iqr": t["iqr"]} for n, t in times.items()}
    result["step_time_ratio"] = times["effkit"]["median"] / times["peft"]["median"]
    print(f"step time: effkit {times['effkit']['median']:.3f} s, peft {times['peft']['median']:.3f} s, "
          f"ratio {result['step_time_ratio']:.3f}")

    for name, model in (("effkit", ours), ("peft", theirs)):
        start = time.perf_counter()
        history = fit(model, loaders["train"], loaders["dev"], config, progress=False)
        result[name] = {"train_seconds": time.perf_counter() - start, "best_step": history.best_step,
                        "dev_accuracy": evaluate(model, loaders["dev"])["accuracy"],
                        "test_accuracy": evaluate(model, loaders["test"])["accuracy"]}
        print(f"{name}: dev {result[name]['dev_accuracy']:.4f}  test {result[name]['test_accuracy']:.4f}"
              f"  ({result[name]['train_seconds']:.0f} s)")
    result["test_accuracy_gap_points"] = 100 * (result["effkit"]["test_accuracy"]
                                                - result["peft"]["test_accuracy"])
    result["bytes"] = saved_sizes(base, ours, theirs)
    print("saved bytes:", result["bytes"])

    name = f"bench_lora_vs_peft_{ek.profile()}.json"
    if args.out is not None:
        out = args.out
    elif args.smoke:  # never over a real result in EFFKIT_RESULTS
        out = Path(tempfile.mkdtemp(prefix="effkit-bench-smoke-")) / name
    else:
        out = ek.config.results_dir() / name
    atomic_write_json(out, result)
    print("wrote", out)
    return result


if __name__ == "__main__":
    main()
