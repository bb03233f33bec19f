"""pyproject.toml and environment.yml must name the same tested versions."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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


def test_conda_torch_is_the_tested_build_and_inside_pyproject_range():
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(r for r in project["dependencies"] if _name(r) == "torch")
    assert _conda_pins()["torch"] in SpecifierSet(torch_req[len("torch"):])
    assert "torch==" + _conda_pins()["torch"] in (ROOT / "Makefile").read_text()
