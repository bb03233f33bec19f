"""Post-training quantization grid of the chapter 02 sentiment classifier (chapter 06, section 6.5).

Runs ``effkit.quant.ptq.run_grid`` over ``default_grid()`` (or a smaller set) on the test
split and writes one CSV row per configuration: accuracy, stored bytes of the quantized Linear
layers, the floor N*b/8 + scales, and the CPU/GPU latency per batch.

    EFFKIT_PROFILE=full python bench/ch06_ptq_grid.py --out ptq_grid.csv
    EFFKIT_PROFILE=fast python bench/ch06_ptq_grid.py --test 64 --no-libraries

The chapter calls the same functions; this script is for running the grid on its own (on a GPU
machine the bitsandbytes rows use its CUDA kernels, see ``effkit.quant.ptq``).
"""
from __future__ import annotations

import argparse

import effkit as ek
from effkit import baselines, batching, recipes
from effkit.quant import ptq


def ptq_grid(test_size: int | None = None, libraries: bool = True, bits=range(2, 9), progress=True,
             only: list[str] | None = None):
    """The grid as a DataFrame, with ``accuracy_drop_points`` against the fp32 row.

    only: keep just these spec labels (``PTQSpec.label``, e.g. "RTN int8 (channel)"); fp32 is
    always kept, since the drops are measured against it.
    """
    model, tokenizer, _ = baselines.sentiment_baseline(progress=progress)
    config = recipes.baseline("sequence")
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
    parser.add_argument("--out", default="ptq_grid.csv", help="CSV file to write")
    parser.add_argument("--test", type=int, default=None, help="test examples (default: all)")
    parser.add_argument("--no-libraries", action="store_true", help="skip bitsandbytes and torchao")
    parser.add_argument("--only", action="append", default=None,
                        help="a spec label to run (repeatable), e.g. --only 'NF4 block 64'")
    args = parser.parse_args(argv)
    grid = ptq_grid(args.test, not args.no_libraries, only=args.only)
    grid.to_csv(args.out, index=False)
    columns = ["label", "accuracy", "accuracy_drop_points", "bits_per_weight", "bytes_ratio",
               "ms_per_batch"]
    print(grid[columns].round(4).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
