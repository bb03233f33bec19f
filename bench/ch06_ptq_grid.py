"""Post-training quantization grid of the chapter 02 sentiment classifier (chapter 06, section 6.5).

Runs ``effkit.quant.ptq.run_grid`` over ``default_grid()`` (or a smaller set) on the test
split and writes one CSV row per configuration: accuracy, stored bytes of the quantized Linear
layers, the floor N*b/8 + scales, and the CPU/GPU latency per batch.

    EFFKIT_PROFILE=full python bench/ch06_ptq_grid.py --out ptq_grid.csv
    EFFKIT_PROFILE=fast python bench/ch06_ptq_grid.py --test 64 --no-libraries
    EFFKIT_PROFILE=fast python bench/ch06_ptq_grid.py --smoke      # seconds (plus the baseline)

The chapter calls the same functions; this script is for running the grid on its own (on a GPU
machine the bitsandbytes rows use its CUDA kernels, see ``effkit.quant.ptq``).

``--smoke`` runs the same path on a baseline fine-tuned for only 2 steps (the profile's
baseline recipe with ``max_steps=2``, cached under its own key, so the real baseline is not
touched), 8 real test reviews and three rows: fp32, RTN int4 (group 64) and NF4 block 64
(``--test`` and ``--only`` given explicitly still win). Its numbers are not a measurement; it
only shows that the bench still runs (tests/test_bench.py). The CSV goes to ``--out`` or to a
new temporary folder, never into the working directory. The baseline's dev/test evaluation
follows the profile's data sizes, so run it with ``EFFKIT_PROFILE=fast``.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import effkit as ek
from effkit import baselines, batching, recipes
from effkit.quant import ptq

SMOKE_TEST_SIZE, SMOKE_STEPS = 8, 2
SMOKE_LABELS = ["RTN int4 (group 64)", "NF4 block 64"]  # with fp32, which is always kept


def ptq_grid(test_size: int | None = None, libraries: bool = True, bits=range(2, 9), progress=True,
             only: list[str] | None = None, config=None):
    """The grid as a DataFrame, with ``accuracy_drop_points`` against the fp32 row.

    only: keep just these spec labels (``PTQSpec.label``, e.g. "RTN int8 (channel)"); fp32 is
    always kept, since the drops are measured against it.
    config: the baseline's TrainConfig (None: ``recipes.baseline("sequence")``, the chapter's).
    """
    config = config or recipes.baseline("sequence")
    model, tokenizer, _ = baselines.sentiment_baseline(config, progress=progress)
    test = ek.data.load_sentiment().test
    if test_size is not None:
        test = test.take(test_size, seed=0)
    loader = batching.make_loader(batching.encode_sentiment(test, tokenizer, config.max_length),
                                  config.batch_size)
    specs = [s for s in ptq.default_grid(bits) if libraries or s.method not in ptq.LIBRARY_METHODS]
    if only is not None:
        unknown = set(only) - {s.label for s in specs}
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)}; choose from {[s.label for s in specs]}")
        specs = [s for s in specs if s.method == "fp32" or s.label in only]
    grid = ptq.run_grid(model, loader, specs, progress=progress)
    fp32 = float(grid.loc[grid.method == "fp32", "accuracy"].iloc[0])
    grid["accuracy_drop_points"] = 100 * (fp32 - grid["accuracy"])
    grid["test_examples"] = len(test)
    grid["profile"] = ek.profile()
    grid["device"] = str(ek.device())
    return grid


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="CSV file to write (default ptq_grid.csv; smoke: in a temporary folder)")
    parser.add_argument("--test", type=int, default=None,
                        help=f"test examples (default: all; smoke {SMOKE_TEST_SIZE})")
    parser.add_argument("--no-libraries", action="store_true", help="skip bitsandbytes and torchao")
    parser.add_argument("--only", action="append", default=None,
                        help="a spec label to run (repeatable), e.g. --only 'NF4 block 64'")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds' run of the same path: 2-step baseline, "
                             f"{SMOKE_TEST_SIZE} test reviews, fp32 + {' + '.join(SMOKE_LABELS)} "
                             "(not a measurement)")
    args = parser.parse_args(argv)
    config = None
    if args.smoke:
        args.test = SMOKE_TEST_SIZE if args.test is None else args.test
        args.only = SMOKE_LABELS if args.only is None else args.only
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="effkit-bench-smoke-")) / "ptq_grid.csv")
        config = replace(recipes.baseline("sequence"), max_steps=SMOKE_STEPS, eval_every=None)
        print(f"SMOKE RUN (not a measurement): baseline of {SMOKE_STEPS} steps, {args.test} test "
              f"reviews, fp32 + {args.only}")
    args.out = args.out or "ptq_grid.csv"
    grid = ptq_grid(args.test, not args.no_libraries, only=args.only, config=config)
    grid.to_csv(args.out, index=False)
    columns = ["label", "accuracy", "accuracy_drop_points", "bits_per_weight", "bytes_ratio",
               "ms_per_batch"]
    print(grid[columns].round(4).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
