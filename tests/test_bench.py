"""Every benchmark script in bench/ still runs: `python bench/<script> --smoke` on the real MiniLM
and real data, in a fresh EFFKIT_CACHE (holding a copy of the already fetched data wheels, so
nothing is downloaded), must exit 0 and print the figures it exists to print.

The numbers of a smoke run mean nothing; these tests only catch a script that an API change
broke, or that silently stopped measuring.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from effkit import sources

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"-?\d+(?:\.\d+)?"


def _ch02(out: str, tmp_path: Path) -> None:
    assert "SMOKE RUN" in out
    # the table: one row per configuration; the baseline's three ratios to itself are 1
    assert re.search(rf"^fp32/64(\s+{NUMBER}){{4}}\s+1\.0+\s+1\.0+\s+1\.0+\s*$", out, re.M), out
    for name in ("bf16/64", "fp32/128", "bf16/128"):
        assert re.search(rf"^{name}(\s+{NUMBER}){{7}}\s*$", out, re.M), (name, out)
    assert "ratios (×) are to fp32/64 measured in this run" in out


def _lora_vs_peft(out: str, tmp_path: Path) -> None:
    assert "SMOKE RUN" in out
    assert re.search(rf"^step time: effkit {NUMBER} s, peft {NUMBER} s, ratio {NUMBER}$", out, re.M), out
    for name in ("effkit", "peft"):
        assert re.search(rf"^{name}: dev {NUMBER}  test {NUMBER}  \(", out, re.M), (name, out)
    result = json.loads(_written(out, tmp_path).read_text())
    assert result["trainable"]["effkit"] == result["trainable"]["peft"] > 0
    assert result["step_time_ratio"] > 0 and result["smoke"]["data_sizes"]["test"] == 8
    assert 0 < result["bytes"]["effkit_adapter"] < result["bytes"]["full_checkpoint"]


def _quant_bytes(out: str, tmp_path: Path) -> None:
    assert re.search(r"^MiniLM Linear weights: 6 tensors, [\d,]+ parameters \(SMOKE RUN", out, re.M), out
    labels = ["int8 per-channel", "int8 per-tensor", "int4 group 128", "uint4 asym group 128",
              "int3 group 64", "int2 group 64", "NF4 block 64", "NF4 block 64 + double quant"]
    for label in labels:
        assert re.search(rf"^{re.escape(label)}(\s+[\d,.]+){{6}}\s*$", out, re.M), (label, out)
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["method"] for r in rows] == ["fp32", *labels]
    assert all(0 < r["fraction_of_fp32"] < 0.3 and r["relative_error"] > 0 for r in rows[1:])


def _ch06(out: str, tmp_path: Path) -> None:
    assert "SMOKE RUN" in out
    assert re.search(r"^\s*label\s+accuracy\s+accuracy_drop_points\s+bits_per_weight\s+bytes_ratio"
                     r"\s+ms_per_batch\s*$", out, re.M), out
    assert re.search(rf"^\s*fp32\s+{NUMBER}\s+0\.0+\s+32\.\d+\s+1\.0+\s+{NUMBER}\s*$", out, re.M), out
    for label in ("RTN int4 (group 64)", "NF4 block 64"):
        assert re.search(rf"^\s*{re.escape(label)}(\s+{NUMBER}){{5}}\s*$", out, re.M), (label, out)
    with open(_written(out, tmp_path), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["fp32", "RTN int4 (group 64)", "NF4 block 64"]
    assert all(r["test_examples"] == "8" and float(r["bytes_ratio"]) <= 1 for r in rows)


def _written(out: str, tmp_path: Path) -> Path:
    """The file named by the script's `wrote <path>` line: it must exist, outside the repository
    (a smoke run writes under TMPDIR, which the test points into tmp_path)."""
    match = re.search(r"^wrote (.+)$", out, re.M)
    assert match, out
    path = Path(match.group(1))
    assert path.is_absolute() and path.is_file(), path
    assert path.resolve().is_relative_to(tmp_path.resolve()), f"{path} is outside {tmp_path}"
    return path


SCRIPTS = {  # script: (extra arguments, check of stdout)
    "ch02_memory_time.py": ([], _ch02),
    "lora_vs_peft.py": ([], _lora_vs_peft),
    "quant_bytes.py": (["--json", "{tmp}/rows.json"], _quant_bytes),
    "ch06_ptq_grid.py": ([], _ch06),
}


@pytest.fixture(scope="module")
def cached_wheels() -> list[Path]:
    """The pinned data wheels in this session's cache (cache_dir() / "wheels", read here in the
    test process, before any subprocess gets another EFFKIT_CACHE)."""
    return [sources.wheel_path(source) for source in sources.PINNED]


def test_every_bench_script_has_a_smoke_test():
    assert sorted(p.name for p in (ROOT / "bench").glob("*.py")) == sorted(SCRIPTS)


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_bench_script_smoke(script, tmp_path, cached_wheels):
    extra, check = SCRIPTS[script]
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    (cache / "wheels").mkdir(parents=True)
    tmp.mkdir()
    for wheel in cached_wheels:
        shutil.copyfile(wheel, cache / "wheels" / wheel.name)
    env = {**os.environ, "EFFKIT_PROFILE": "fast", "EFFKIT_CACHE": str(cache),
           "EFFKIT_RESULTS": str(tmp_path / "results"), "TMPDIR": str(tmp),
           # no index: a missing wheel must fail here, not be downloaded again
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1",
           # one thread: on a busy machine (a book build beside the tests) two OpenMP threads
           # per process oversubscribe the cores and make each step several times slower
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, f"bench/{script}", "--smoke", *(a.format(tmp=tmp_path) for a in extra)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    check(proc.stdout, tmp_path)
