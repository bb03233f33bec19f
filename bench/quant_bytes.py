"""Stored bytes and weight error of every effkit quantizer on MiniLM's Linear weights.

    python bench/quant_bytes.py                 # table on stdout
    python bench/quant_bytes.py --json out.json # and the rows as JSON
    python bench/quant_bytes.py --smoke         # seconds: one encoder layer only

Bytes are measured from the tensors each quantizer returns (codes + scales + zero points +
block constants), next to the analytic floor ``numel * bits / 8 + constants``. The error is the
relative Frobenius error ``|W_hat - W| / |W|`` summed over all Linear weights. Takes about
half a minute on 2 CPU cores.

``--smoke`` runs every quantizer on the Linear weights of MiniLM's first encoder layer only
(``encoder.layer.0``: six real weights, 384x384 to 1536x384), to show in seconds that the
benchmark still runs (tests/test_bench.py); its totals are not the model's.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

import effkit as ek
from effkit import quant as Q

SMOKE_PREFIX = "encoder.layer.0."  # the Linear weights --smoke keeps

# (label, quantizer, analytic floor in bytes for one weight w: codes + fp32 scales [+ uint8 zeros])
METHODS = [
    ("int8 per-channel", lambda w: Q.quantize(w, 8, "symmetric", "channel"),
     lambda w: Q.analytic_bytes(w.numel(), 8, w.shape[0])),
    ("int8 per-tensor", lambda w: Q.quantize(w, 8, "symmetric", "tensor"),
     lambda w: Q.analytic_bytes(w.numel(), 8, 1)),
    ("int4 group 128", lambda w: Q.quantize(w, 4, "symmetric", "group", 128),
     lambda w: Q.analytic_bytes(w.numel(), 4, w.numel() // 128)),
    ("uint4 asym group 128", lambda w: Q.quantize(w, 4, "asymmetric", "group", 128),
     lambda w: Q.analytic_bytes(w.numel(), 4, w.numel() // 128, zero_bytes=1)),
    ("int3 group 64", lambda w: Q.quantize(w, 3, "symmetric", "group", 64),
     lambda w: Q.analytic_bytes(w.numel(), 3, w.numel() // 64)),
    ("int2 group 64", lambda w: Q.quantize(w, 2, "symmetric", "group", 64),
     lambda w: Q.analytic_bytes(w.numel(), 2, w.numel() // 64)),
    ("NF4 block 64", lambda w: Q.quantize_nf4(w, 64),
     lambda w: Q.analytic_bytes(w.numel(), 4, w.numel() // 64)),
    # int8 absmax per 64-block, fp32 scale per 256 of those, one fp32 mean
    ("NF4 block 64 + double quant", lambda w: Q.quantize_nf4(w, 64, double_quant=True),
     lambda w: w.numel() / 2 + w.numel() / 64 + 4 * w.numel() / (64 * 256) + 4),
]


def linear_weights() -> dict[str, torch.Tensor]:
    model, _ = ek.models.load_encoder("base")
    return {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def measure(weights: dict[str, torch.Tensor]) -> list[dict]:
    fp32 = sum(w.numel() * 4 for w in weights.values())
    numel = sum(w.numel() for w in weights.values())
    rows = [{"method": "fp32", "stored_bytes": fp32, "fraction_of_fp32": 1.0,
             "bits_per_parameter": 32.0, "analytic_floor": fp32, "relative_error": 0.0,
             "seconds": 0.0}]
    for label, fn, floor_fn in METHODS:
        start = time.perf_counter()
        quantized = {n: fn(w) for n, w in weights.items()}
        seconds = time.perf_counter() - start
        stored = sum(q.stored_bytes() for q in quantized.values())
        err2 = sum((q.dequantize() - weights[n]).pow(2).sum().item() for n, q in quantized.items())
        ref2 = sum(w.pow(2).sum().item() for w in weights.values())
        floor = sum(floor_fn(w) for w in weights.values())
        rows.append({"method": label, "stored_bytes": stored, "fraction_of_fp32": stored / fp32,
                     "bits_per_parameter": 8 * stored / numel, "analytic_floor": floor,
                     "relative_error": (err2 / ref2) ** 0.5, "seconds": seconds})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--smoke", action="store_true",
                        help=f"only the Linear weights under {SMOKE_PREFIX.rstrip('.')} (seconds; "
                             "checks that the code path runs)")
    args = parser.parse_args(argv)
    weights = linear_weights()
    if args.smoke:
        weights = {n: w for n, w in weights.items() if n.startswith(SMOKE_PREFIX)}
        if not weights:
            raise SystemExit(f"no Linear weight of MiniLM is named {SMOKE_PREFIX}*")
    rows = measure(weights)
    import pandas as pd

    table = pd.DataFrame(rows).set_index("method")
    print(f"MiniLM Linear weights: {len(weights)} tensors, "
          f"{sum(w.numel() for w in weights.values()):,} parameters"
          + (f" (SMOKE RUN: {SMOKE_PREFIX}* only)" if args.smoke else ""))
    with pd.option_context("display.width", 200, "display.max_columns", None,
                           "display.float_format", "{:,.4f}".format):
        print(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
