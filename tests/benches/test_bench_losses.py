"""The losses benchmark runs end to end in its quick mode."""

from support.scripts import run_bench


def test_bench_losses_quick():
    out = run_bench("bench_losses.py", "--quick", timeout=600)
    assert "| 256 | clip | mlvec_clip |" in out and "open_clip_clip" in out
    assert "| 32 | mlvec_filip |" in out and "dense_filip" in out
    assert "| ring |" in out
    assert "error" not in out.lower() and "failed" not in out.lower()
