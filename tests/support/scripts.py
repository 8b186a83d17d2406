"""The one way tests run the repository's scripts (``benches/``, ``examples/``): as a user would,
in a subprocess, or loaded as a module when a test wants to call its ``main`` and read what it
returns."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BENCHES = ROOT / "benches"
EXAMPLES = ROOT / "examples"


def script_path(script: str | Path) -> Path:
    """``benches/x.py`` or ``examples/x.py`` relative to the repository root (or an absolute path)."""
    p = Path(script)
    return p if p.is_absolute() else ROOT / p


def run_script(
    script: str | Path,
    *args: str,
    timeout: int = 300,
    env: dict[str, str] | None = None,
    check: bool = True,
    launcher: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """``python [launcher] <script> <args>`` from the repository root; with ``check``, assert it
    exited 0. ``launcher`` runs the script through a module, e.g. ``("-m", "torch.distributed.run",
    "--nproc_per_node", "2")``."""
    proc = subprocess.run(
        [sys.executable, *launcher, str(script_path(script)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    if check:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc


def run_bench(script: str, *args: str, timeout: int = 300) -> str:
    """``python benches/<script> <args>``; its standard output, after checking it exited 0."""
    return run_script(BENCHES / script, *args, timeout=timeout).stdout


def load_script(script: str | Path) -> ModuleType:
    """Import a script as a module (its ``if __name__ == "__main__"`` block does not run)."""
    path = script_path(script)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    # Registered first so dataclasses and pickling inside the script can find their module.
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod
