"""The benchmark scripts run end to end in their quick mode (seconds), and exit 0."""

from support.scripts import run_bench


def test_bench_maxsim_quick():
    out = run_bench("bench_maxsim.py", "--quick")
    # The table and the bandwidth line are printed.
    assert "| fixed: 1 x 50 docs" in out and "GB/s" in out


def test_bench_losses_openmp_small():
    out = run_bench("bench_losses_openmp.py", "--batch", "512", "--dim", "32", "--calls", "2")
    assert "mlvec pool / OpenMP team" in out


def test_bench_single_query_small_mlvec_only():
    out = run_bench(
        "bench_single_query.py",
        *("--synthetic-n", "3000", "--clusters", "30", "--nlist", "32"),
        *("--calls", "50", "--repeat", "1", "--peers"),
    )
    assert "| mlvec | IVF32,SQ8 |" in out
