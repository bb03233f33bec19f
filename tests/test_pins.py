"""pyproject.toml and environment.yml must name the same tested versions.

The tested CPU build of torch is written once, as ``[tool.effkit] tested-torch`` in pyproject.toml;
the Makefile and effkit.envcheck read it, and environment.yml and the README repeat it.
"""
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _tested_torch() -> str:
    """The single source: pyproject's [tool.effkit] tested-torch."""
    return _pyproject()["tool"]["effkit"]["tested-torch"]


def _torch_range() -> SpecifierSet:
    torch_req = next(r for r in _pyproject()["project"]["dependencies"] if _name(r) == "torch")
    return SpecifierSet(torch_req[len("torch"):])


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        reqs += [r for r in extra if not r.startswith("effkit")]
    return {_name(r): r.split("==", 1)[1] for r in reqs if "==" in r}


def _conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return {_name(r): r.split("==", 1)[1] for r in pip if "==" in r}


def test_every_pyproject_pin_is_in_environment_yml_with_the_same_version():
    py, conda = _pyproject_pins(), _conda_pins()
    assert py, "pyproject has no pins"
    for name, version in py.items():
        assert conda.get(name) == version, f"{name}: pyproject {version}, environment.yml {conda.get(name)}"
    assert set(conda) - set(py) == {"torch"}, f"environment.yml pins more than pyproject: {set(conda) - set(py)}"


def _conda_python() -> str:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    spec = next(d for d in env["dependencies"] if isinstance(d, str) and _name(d) == "python")
    return spec.split("=", 1)[1].lstrip("=")


# ---------------------------------------------------------------- the tested torch, written once
def test_tested_torch_is_a_version_inside_pyproject_torch_range():
    tested = _tested_torch()
    assert re.fullmatch(r"\d+\.\d+\.\d+", tested), f"tested-torch {tested!r} is not X.Y.Z"
    assert tested in _torch_range(), (
        f"tested-torch {tested} is outside pyproject's {_torch_range()}")


def test_environment_yml_pins_the_tested_torch():
    assert _conda_pins()["torch"] == _tested_torch(), (
        f"environment.yml pins torch=={_conda_pins()['torch']}, "
        f"pyproject's [tool.effkit] tested-torch is {_tested_torch()}")


def test_readme_names_the_tested_torch():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # unwrap lines
    named = re.findall(r"tested CPU build of PyTorch \((\d+\.\d+\.\d+)", readme)
    assert named == [_tested_torch()], (
        f"README names the tested PyTorch as {named}, "
        f"pyproject's tested-torch is {_tested_torch()}")


def test_envcheck_reads_the_tested_torch_from_pyproject():
    from packaging.requirements import Requirement

    from effkit import envcheck

    assert envcheck.tested_torch() == _tested_torch()
    too_old = envcheck.check_requirement(Requirement(f"torch{_torch_range()}"), found="1.0.0")
    assert f'pip install "torch=={_tested_torch()}"' in too_old.fix
    # ... and does not write it down again
    assert _tested_torch() not in (ROOT / "effkit" / "envcheck.py").read_text(encoding="utf-8")


def test_envcheck_tested_torch_without_an_entry_is_none(tmp_path):
    from effkit import envcheck

    assert envcheck.tested_torch(tmp_path / "missing.toml") is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "effkit"\n')
    assert envcheck.tested_torch(tmp_path / "pyproject.toml") is None
    (tmp_path / "pyproject.toml").write_text('[tool.effkit]\ntested-torch = "9.8.7"\n')
    assert envcheck.tested_torch(tmp_path / "pyproject.toml") == "9.8.7"


def test_makefile_reads_the_tested_torch_instead_of_writing_it():
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"torch==\d", makefile), "the Makefile writes a torch version itself"
    assert _tested_torch() not in makefile


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_installs_the_tested_torch():
    # `make -n -B` prints the install recipe without running it; PYTHON=false keeps the
    # Makefile's "does the system python have torch?" probe instant. TORCH_SPEC is the default.
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_SPEC", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(["make", "-s", "-n", "-B", "install", "PYTHON=false"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f'pip install "torch=={_tested_torch()}"' in out.stdout, out.stdout


# ---------------------------------------------------------------- Python
def test_requires_python_allows_tomllib_only():
    # effkit.envcheck and the tests import tomllib, new in Python 3.11.
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert "3.10.14" not in requires and "3.11.0" in requires, f"requires-python is {requires}"


def test_environment_yml_python_satisfies_requires_python():
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    python = _conda_python()
    assert re.fullmatch(r"\d+\.\d+", python), f"environment.yml: python={python} is not X.Y"
    # conda's python=3.11 means any 3.11.x: its first release must be allowed.
    assert Version(f"{python}.0") in requires, (
        f"environment.yml pins python={python}, pyproject requires-python {requires}")
