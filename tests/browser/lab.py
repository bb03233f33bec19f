"""A JupyterLab server for the browser tests, and what a student does in it.

The server runs as ``make lab`` runs it (JUPYTER_CONFIG_PATH with the repo's ``.jupyter``, so
Jupytext is the default viewer of ``.md``), on 127.0.0.1 with a random token, in the fast profile,
with its own settings, workspace and runtime folders (a user's settings play no part), autosave
off, and no news or update checks (no network). Its root is a scratch folder holding copies of
the chapters, so nothing a test does can write into book/.
"""
from __future__ import annotations

import json
import re
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from browserkit import ROOT, free_port

SETTLE_MS = 500


class Lab:
    def __init__(self, root: Path, log: Path):
        self.root, self.token, self.port = root, secrets.token_hex(16), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state = root / ".lab-state"
        # Autosave off: the tests save what they mean to save, and never a chapter. No news toast.
        # Every cell attached to the page (windowing off), so the tests can read all of them.
        for plugin, values in {"docmanager-extension/plugin": {"autosave": False},
                               "apputils-extension/notification": {"fetchNews": "false"},
                               "notebook-extension/tracker": {"windowingMode": "none"}}.items():
            path = state / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {**os.environ, "EFFKIT_PROFILE": "fast",
               "JUPYTER_CONFIG_PATH": str(ROOT / ".jupyter"),
               "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
               "JUPYTER_RUNTIME_DIR": str(state / "runtime")}
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.getuid() == 0:
            cmd.append("--allow-root")
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not start in {timeout:.0f} s; see {self.log.name}")

    def tree(self, path: str = "", workspace: str = "") -> str:
        """The URL that opens ``path`` (or just the lab), in its own named workspace when given (so
        no tab of another test is restored with it)."""
        base = f"{self.url}/lab" + (f"/workspaces/{workspace}" if workspace else "")
        return f"{base}/tree/{path}?token={self.token}" if path else f"{base}?token={self.token}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------- a student's actions
def open_notebook(page, timeout: float = 60_000):
    """Wait for the active notebook to show cells and its kernel to be idle; returns the panel."""
    panel = page.locator(".jp-NotebookPanel:visible").first
    panel.locator(".jp-Cell").first.wait_for(timeout=timeout)
    kernel_idle(page, timeout)
    return panel


KERNEL_IDLE = """panel => {
    const name = panel.querySelector('.jp-Toolbar-kernelName');
    const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    return name && !/No Kernel/.test(name.textContent) && status
           && status.getAttribute('data-status') === 'idle'; }"""


def kernel_idle(page, timeout: float = 60_000) -> None:
    """Wait until the active notebook has a kernel and the kernel is idle."""
    panel = page.locator(".jp-NotebookPanel:visible").first
    page.wait_for_function(KERNEL_IDLE, arg=panel.element_handle(), timeout=timeout, polling=250)


def menu(page, top: str, command: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).first.click()
    page.locator(f".lm-Menu-item[data-command='{command}']").first.click()


def run_all(page, panel, timeout: float = 600_000) -> None:
    """Run → Run All Cells, then wait until every code cell has run and the kernel is idle."""
    menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(
        """panel => { const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
                      const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
                      const idle = ind && ind.getAttribute('data-status') === 'idle';
                      const failed = [...panel.querySelectorAll(ERRORS)].some(e => /Traceback/.test(e.textContent));
                      return idle && (failed || (prompts.length && prompts.every(p => /\\[\\d+\\]/.test(p.textContent)))); }"""
        .replace("ERRORS", json.dumps(ERRORS)),
        arg=panel.element_handle(), timeout=timeout, polling=500)


# An exception's traceback: JupyterLab renders it with the stderr mime type.
ERRORS = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def errors_in(panel) -> list[str]:
    """The tracebacks the notebook shows, as text."""
    return [t for t in panel.locator(ERRORS).all_inner_texts() if "Traceback" in t]


def drag_slider(page, slider, fraction: float) -> None:
    """Drag an ipywidgets slider's handle to ``fraction`` of its track and release it."""
    track = slider.locator(".noUi-target, .slider").first.bounding_box()
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    x = track["x"] + fraction * track["width"]
    page.mouse.move(x, handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()
