"""Contrastive losses: mlvec's tiled losses against open_clip and dense references (CPU).

Every case runs forward + backward in a fresh subprocess; peak extra memory is the process's
peak RSS (``VmHWM``) after the run minus the peak RSS once the inputs exist. Time is
the median over ``--repeat`` runs (after one warm-up when repeat > 1). Ratios compare peers run
by the same script on the same machine.

    python benches/bench_losses.py                 # full: B = 4096, 16384, 65536; FILIP; ring
    python benches/bench_losses.py --quick         # seconds: tiny shapes, same code paths
    python benches/bench_losses.py --sizes 4096 --skip-filip --skip-ring
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from harness.memory import available_bytes, peak_rss_bytes
from harness.timing import median_seconds

D = 512
MB = 2**20
CLIP_IMPLS = ["mlvec_clip", "open_clip_clip", "dense_clip", "mlvec_siglip", "open_clip_siglip"]


def _need_mb(impl: str, b: int, lq: int = 32, ld: int = 64) -> float:
    """Rough peak of the dense peers (several B x B fp32 matrices alive in backward)."""
    if impl.startswith(("open_clip", "dense")) and "filip" not in impl:
        return 4 * b * b * 4 / 2**20
    if impl == "dense_filip":
        return 3 * b * b * lq * ld * 4 / 2**20
    return 0.0


# ---------------------------------------------------------------------------------------------
# One case, in this process
# ---------------------------------------------------------------------------------------------
def _make_loss(impl: str):
    import torch
    import torch.nn.functional as F

    if impl == "mlvec_clip":
        from mlvec.losses import clip_loss

        return lambda a, b, s, bias: clip_loss(a, b, s)
    if impl == "mlvec_siglip":
        from mlvec.losses import siglip_loss

        return lambda a, b, s, bias: siglip_loss(a, b, s, bias)
    if impl == "open_clip_clip":
        from open_clip.loss import ClipLoss

        fn = ClipLoss()
        return lambda a, b, s, bias: fn(a, b, s)
    if impl == "open_clip_siglip":
        from open_clip.loss import SigLipLoss

        fn = SigLipLoss()
        return lambda a, b, s, bias: fn(a, b, s, bias)
    if impl == "dense_clip":

        def dense(a, b, s, bias):
            logits = s * a @ b.T
            y = torch.arange(a.shape[0])
            return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))

        return dense
    raise ValueError(impl)


def _dense_filip(ta, ma, tb, mb, s):
    import torch
    import torch.nn.functional as F

    sim = torch.einsum("ikd,jrd->ijkr", ta, tb)
    neg = torch.finfo(sim.dtype).min
    q2d = sim.masked_fill(~mb[None, :, None, :], neg).amax(3)
    q2d = (q2d * ma[:, None, :]).sum(2) / ma.sum(1)[:, None]
    d2q = sim.masked_fill(~ma[:, None, :, None], neg).amax(2)
    d2q = (d2q * mb[None, :, :]).sum(2) / mb.sum(1)[None, :]
    y = torch.arange(ta.shape[0])
    return 0.5 * (F.cross_entropy(s * q2d, y) + F.cross_entropy((s * d2q).T, y))


def _report_progress(base: float) -> None:
    """Print the peak so far to stderr every second, so a run cut short still shows its memory."""
    import threading

    t0 = time.perf_counter()

    def loop() -> None:
        while True:
            time.sleep(1.0)
            rec = {"extra_mb": peak_rss_bytes() / MB - base, "elapsed_s": time.perf_counter() - t0}
            print("PROGRESS " + json.dumps(rec), file=sys.stderr, flush=True)

    threading.Thread(target=loop, daemon=True).start()


def run_case(impl: str, b: int, repeat: int, lq: int, ld: int, dim: int) -> dict:
    import torch

    torch.manual_seed(0)
    if "filip" in impl:
        ta = torch.nn.functional.normalize(torch.randn(b, lq, dim), dim=-1).requires_grad_(True)
        tb = torch.nn.functional.normalize(torch.randn(b, ld, dim), dim=-1).requires_grad_(True)
        ma = torch.rand(b, lq) < 0.9
        mb = torch.rand(b, ld) < 0.9
        ma[:, 0] = mb[:, 0] = True
        if impl == "mlvec_filip":
            from mlvec.losses import filip_loss

            def step():
                return filip_loss(ta, ma, tb, mb, torch.tensor(50.0))
        else:

            def step():
                return _dense_filip(ta, ma, tb, mb, torch.tensor(50.0))

        params = [ta, tb]
    else:
        a = torch.nn.functional.normalize(torch.randn(b, D), dim=-1).requires_grad_(True)
        bb = torch.nn.functional.normalize(torch.randn(b, D), dim=-1).requires_grad_(True)
        log_s = torch.tensor(2.3, requires_grad=True)
        bias = torch.tensor(-10.0, requires_grad=True)
        fn = _make_loss(impl)

        def step():
            return fn(a, bb, log_s.exp(), bias)

        params = [a, bb, log_s]
    base = peak_rss_bytes() / MB
    _report_progress(base)
    last = {}

    def call() -> None:
        for p in params:
            p.grad = None
        last["loss"] = step()
        last["loss"].backward()

    warmup = 1 if repeat > 1 else 0
    seconds = median_seconds(call, repeat - warmup, warmup=warmup)
    extra = peak_rss_bytes() / MB - base
    return {"impl": impl, "B": b, "time_s": seconds, "extra_mb": extra, "loss": float(last["loss"])}


# ---------------------------------------------------------------------------------------------
# Ring strategy: 2 gloo processes
# ---------------------------------------------------------------------------------------------
def _ring_worker(rank: int, world: int, port: int, b_local: int, strategy: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from mlvec.losses import clip_loss

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(rank)
    a = torch.nn.functional.normalize(torch.randn(b_local, D), dim=-1).requires_grad_(True)
    b = torch.nn.functional.normalize(torch.randn(b_local, D), dim=-1).requires_grad_(True)
    dist.barrier()
    base = peak_rss_bytes() / MB
    t0 = time.perf_counter()
    loss = clip_loss(a, b, torch.tensor(10.0), strategy=strategy)
    loss.backward()
    elapsed = time.perf_counter() - t0
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"rank": rank, "extra_mb": peak_rss_bytes() / MB - base, "time_s": elapsed}, f)
    dist.destroy_process_group()


def run_ring(b_local: int, strategy: str) -> list[dict]:
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r")
        mp.start_processes(_ring_worker, args=(2, port, b_local, strategy, out), nprocs=2, start_method="spawn")
        res = []
        for r in range(2):
            with open(f"{out}.{r}") as f:
                res.append(json.load(f))
    return res


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def _sub(args: list[str], timeout: float) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        prog = [ln for ln in err.splitlines() if ln.startswith("PROGRESS ")]
        if prog:
            last = json.loads(prog[-1][len("PROGRESS ") :])
            return {"partial": True, "time_s": float("nan"), **last}
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one repeat (smoke test)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="batch sizes (default 4096 16384 65536)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-clip", action="store_true")
    ap.add_argument("--skip-filip", action="store_true")
    ap.add_argument("--skip-ring", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per case, seconds")
    ap.add_argument("--impls", nargs="*", default=None, help=f"subset of {CLIP_IMPLS}")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--B", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lq", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--ld", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--ring", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.case:
        print(json.dumps(run_case(args.case, args.B, args.repeat, args.lq, args.ld, args.dim)))
        return
    if args.ring:
        print(json.dumps(run_ring(args.B, args.ring)))
        return

    sizes = args.sizes or ([256] if args.quick else [4096, 16384, 65536])
    if args.skip_clip:
        sizes = []
    repeat = 1 if args.quick else args.repeat
    print(f"# contrastive losses, d={D}, fp32, forward+backward, CPU threads={os.cpu_count()}")
    print("| B | loss | impl | time (s) | peak extra RSS (MB) | time / mlvec | memory / mlvec |")
    print("|---|---|---|---|---|---|---|")
    for b in sizes:
        rows = {}
        for impl in CLIP_IMPLS:
            if args.impls is not None and impl not in args.impls:
                rows[impl] = {"error": "not run (--impls)"}
                continue
            need = _need_mb(impl, b)
            if need > 0.8 * available_bytes() / MB:
                rows[impl] = {"error": f"skipped: needs ~{need / 1024:.0f} GB, {available_bytes() / MB / 1024:.0f} GB free"}
                continue
            rep = 1 if b >= 65536 else repeat
            rows[impl] = _sub(["--case", impl, "--B", str(b), "--repeat", str(rep)], args.timeout)
        for kind in ("clip", "siglip"):
            ref = rows[f"mlvec_{kind}"]
            for impl in [i for i in CLIP_IMPLS if i.endswith(kind)]:
                r = rows[impl]
                if "error" in r:
                    print(f"| {b} | {kind} | {impl} | - | - | {r['error']} | |")
                    continue
                if r.get("partial"):
                    print(f"| {b} | {kind} | {impl} | > {r['elapsed_s']:.0f} (stopped) | >= {r['extra_mb']:.0f} "
                          "(peak until stopped) | | |")  # fmt: skip
                    continue
                tr = mr = ""
                if "error" not in ref and not ref.get("partial"):
                    tr = f"{r['time_s'] / ref['time_s']:.2f}x"
                    mr = f"{r['extra_mb'] / max(ref['extra_mb'], 1.0):.1f}x"
                print(f"| {b} | {kind} | {impl} | {r['time_s']:.2f} | {r['extra_mb']:.0f} | {tr} | {mr} |")
        sys.stdout.flush()

    if not args.skip_filip:
        fb = [32] if args.quick else [256, 1024]
        lq, ld, dim = (8, 16, 32) if args.quick else (32, 64, 256)
        print(f"\n# FILIP loss, {lq} x {ld} tokens, d={dim}, fp32, forward+backward")
        print("| B | impl | time (s) | peak extra RSS (MB) | time / mlvec | memory / mlvec |")
        print("|---|---|---|---|---|---|")
        for b in fb:
            rows = {}
            for impl in ("mlvec_filip", "dense_filip"):
                need = _need_mb(impl, b, lq, ld)
                if need > 0.8 * available_bytes() / MB:
                    rows[impl] = {"error": f"skipped: needs ~{need / 1024:.0f} GB, {available_bytes() / MB / 1024:.0f} GB free"}
                    continue
                extra = ["--lq", str(lq), "--ld", str(ld), "--dim", str(dim)]
                rows[impl] = _sub(["--case", impl, "--B", str(b), "--repeat", str(repeat), *extra], args.timeout)
            ref = rows["mlvec_filip"]
            for impl, r in rows.items():
                if "error" in r:
                    print(f"| {b} | {impl} | - | - | {r['error']} | |")
                    continue
                if r.get("partial"):
                    print(f"| {b} | {impl} | > {r['elapsed_s']:.0f} (stopped) | >= {r['extra_mb']:.0f} | | |")
                    continue
                ok = "error" not in ref and not ref.get("partial")
                tr = f"{r['time_s'] / ref['time_s']:.2f}x" if ok else ""
                mr = f"{r['extra_mb'] / max(ref['extra_mb'], 1.0):.1f}x" if ok else ""
                print(f"| {b} | {impl} | {r['time_s']:.2f} | {r['extra_mb']:.0f} | {tr} | {mr} |")
        sys.stdout.flush()

    if not args.skip_ring:
        locs = [256] if args.quick else [2048, 8192]
        print(f"\n# 2 gloo processes, clip_loss, d={D}: per-rank peak extra RSS")
        print("| B_local | B global | strategy | rank 0 extra (MB) | rank 1 extra (MB) | time (s) |")
        print("|---|---|---|---|---|---|")
        for bl in locs:
            for strategy in ("ring", "all_gather"):
                r = _sub(["--ring", strategy, "--B", str(bl)], args.timeout)
                if isinstance(r, dict) and "error" in r:
                    print(f"| {bl} | {2 * bl} | {strategy} | - | - | {r['error']} |")
                    continue
                t = max(x["time_s"] for x in r)
                print(f"| {bl} | {2 * bl} | {strategy} | {r[0]['extra_mb']:.0f} | {r[1]['extra_mb']:.0f} | {t:.2f} |")


if __name__ == "__main__":
    main()
