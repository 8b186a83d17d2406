"""GPU benchmarks of mlvec's CUDA kernels against torch (and open_clip) in the same process.

CUDA-event timing after warm-up, medians over repeats; each result also as a fraction of this
GPU's measured bf16 matmul rate or copy bandwidth. Needs a CUDA GPU.

    python benches/bench_cuda.py                 # full sizes (H200: about a minute)
    python benches/bench_cuda.py --quick         # small sizes, seconds (smoke test)
    python benches/bench_cuda.py --json out.json # also write the results
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness.memory import cuda_peak_bytes
from harness.timing import cuda_median_ms


def machine_rates(quick: bool) -> dict:
    import torch

    n = 2048 if quick else 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = cuda_median_ms(lambda: a @ b, repeat=5 if quick else 20)
    flops = 2 * n**3 / (ms * 1e-3)
    x = torch.empty(int((64 if quick else 1024) * 2**20) // 4, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    ms_copy = cuda_median_ms(lambda: y.copy_(x), repeat=5 if quick else 20)
    bw = 2 * x.numel() * 4 / (ms_copy * 1e-3)
    return {"bf16_matmul_tflops": flops / 1e12, "copy_bandwidth_gbs": bw / 1e9}


def packed_docs(n_docs: int, ld: int, dim: int, dtype):
    import torch

    d = torch.randn(n_docs * ld, dim, device="cuda", dtype=dtype)
    off = torch.arange(0, n_docs * ld + 1, ld, device="cuda", dtype=torch.int64)
    return d, off


def bench_rerank(n_docs: int, rates: dict, reps: int) -> dict:
    """1 query x n_docs documents (32 x 300 tokens, d=128, bf16): scores only."""
    import torch

    import mlvec.cuda as mc

    lq, ld, dim = 32, 300, 128
    q = torch.randn(lq, dim, device="cuda", dtype=torch.bfloat16)
    qo = torch.tensor([0, lq], device="cuda")
    d, do = packed_docs(n_docs, ld, dim, torch.bfloat16)
    dpad = d.view(n_docs, ld, dim)
    ours = cuda_median_ms(lambda: mc.maxsim_forward(q, qo, None, d, do, None, max_lens=(lq, ld)), reps)
    ref = cuda_median_ms(lambda: torch.einsum("ih,njh->nij", q, dpad).amax(-1).sum(-1), reps)
    got = mc.maxsim_forward(q, qo, None, d, do, None)[0]
    exp = torch.einsum("ih,njh->nij", q.float(), dpad.float()).amax(-1).sum(-1)
    err = float((got - exp).abs().max() / exp.abs().max())
    flops = 2 * lq * ld * dim * n_docs
    bytes_ = d.numel() * 2
    return {
        "docs": n_docs,
        "ours_ms": ours,
        "torch_einsum_ms": ref,
        "speedup": ref / ours,
        "max_rel_err_vs_fp32": err,
        "fraction_of_matmul_rate": flops / (ours * 1e-3) / (rates["bf16_matmul_tflops"] * 1e12),
        "fraction_of_bandwidth": bytes_ / (ours * 1e-3) / (rates["copy_bandwidth_gbs"] * 1e9),
    }


def bench_training(nq: int, nd: int, rates: dict, reps: int) -> dict:
    """nq x nd all-pairs MaxSim (32 x 300 tokens, d=128, bf16), forward + backward."""
    import torch

    import mlvec.cuda as mc

    lq, ld, dim = 32, 300, 128
    q, qo = packed_docs(nq, lq, dim, torch.bfloat16)
    d, do = packed_docs(nd, ld, dim, torch.bfloat16)

    def ours():
        s, arg, _, _ = mc.maxsim_forward(q, qo, None, d, do, None, q2d_argmax=True, max_lens=(lq, ld))
        g = torch.ones_like(s)
        return mc.maxsim_backward(q, qo, None, d, do, None, grad_q2d=g, q2d_argmax=arg, max_lens=(lq, ld))

    qp = q.view(nq, lq, dim).detach().requires_grad_()
    dp = d.view(nd, ld, dim).detach().requires_grad_()

    def reference():
        s = torch.einsum("aih,bjh->abij", qp, dp).amax(-1).sum(-1)
        s.sum().backward()
        qp.grad = None
        dp.grad = None

    t_ours = cuda_median_ms(ours, reps)
    m_ours = cuda_peak_bytes(ours)
    try:
        t_ref = cuda_median_ms(reference, max(1, reps // 2))
        m_ref = cuda_peak_bytes(reference)
    except torch.OutOfMemoryError:
        t_ref, m_ref = float("nan"), float("nan")
    flops = 2 * lq * ld * dim * nq * nd
    return {
        "queries": nq,
        "docs": nd,
        "ours_ms": t_ours,
        "torch_einsum_ms": t_ref,
        "speedup": t_ref / t_ours,
        "ours_peak_bytes": m_ours,
        "torch_peak_bytes": m_ref,
        "memory_ratio": m_ref / max(m_ours, 1),
        "forward_fraction_of_matmul_rate": flops / (t_ours * 1e-3) / (rates["bf16_matmul_tflops"] * 1e12),
    }


def bench_clip(batch: int, dim: int, reps: int) -> dict:
    """CLIP loss forward + backward: tiles (never B x B) vs open_clip's ClipLoss."""
    import torch

    import mlvec.cuda as mc

    x = torch.nn.functional.normalize(torch.randn(batch, dim, device="cuda"), dim=-1).bfloat16()
    y = torch.nn.functional.normalize(torch.randn(batch, dim, device="cuda"), dim=-1).bfloat16()
    scale = 14.0

    def ours():
        row, col = mc.clip_lse(x, y, scale)
        g = torch.full((batch,), 0.5 / batch, device="cuda")
        return mc.clip_lse_backward(x, y, scale, row, col, g, g)

    t_ours = cuda_median_ms(ours, reps, warmup=1)
    m_ours = cuda_peak_bytes(ours)
    out = {"batch": batch, "dim": dim, "ours_ms": t_ours, "ours_peak_bytes": m_ours}
    try:
        from open_clip.loss import ClipLoss

        loss = ClipLoss()
        xr = x.float().detach().requires_grad_()
        yr = y.float().detach().requires_grad_()
        s = torch.tensor(scale, device="cuda")

        def ref():
            loss(xr, yr, s).backward()
            xr.grad = None
            yr.grad = None

        out["open_clip_ms"] = cuda_median_ms(ref, reps, warmup=1)
        out["open_clip_peak_bytes"] = cuda_peak_bytes(ref)
    except ImportError:
        out["open_clip_ms"] = "open_clip not installed"
    except torch.OutOfMemoryError:
        out["open_clip_ms"] = "out of memory"
    return out


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--clip-batch", type=int, default=65_536)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA GPU", file=sys.stderr)
        return 2
    import mlvec.cuda as mc

    ok, why = mc.available()
    if not ok:
        print(f"bench_cuda: mlvec CUDA kernels unavailable: {why}", file=sys.stderr)
        return 2
    t0 = time.time()
    reps = 5 if args.quick else 50
    res: dict = {"device": torch.cuda.get_device_name(), "quick": args.quick}
    res["rates"] = rates = machine_rates(args.quick)
    print(f"device {res['device']}: bf16 matmul {rates['bf16_matmul_tflops']:.0f} TFLOP/s, "
          f"copy {rates['copy_bandwidth_gbs']:.0f} GB/s")  # fmt: skip
    res["rerank"] = []
    for n in [100] if args.quick else [1_000, 10_000]:
        r = bench_rerank(n, rates, reps)
        res["rerank"].append(r)
        print(f"maxsim 1x32 vs {n}x300 d=128 bf16: ours {r['ours_ms']:.4f} ms, einsum {r['torch_einsum_ms']:.4f} ms "
              f"({r['speedup']:.1f}x), {100 * r['fraction_of_bandwidth']:.0f}% of bandwidth")  # fmt: skip
    nq, nd = (16, 16) if args.quick else (256, 256)
    r = res["training"] = bench_training(nq, nd, rates, max(2, reps // 10))
    print(f"maxsim {nq}x{nd} fwd+bwd: ours {r['ours_ms']:.2f} ms / {r['ours_peak_bytes'] / 2**20:.0f} MiB, "
          f"einsum {r['torch_einsum_ms']:.2f} ms / {r['torch_peak_bytes'] / 2**20:.0f} MiB "
          f"({r['speedup']:.1f}x time, {r['memory_ratio']:.1f}x memory)")  # fmt: skip
    batches = [1024] if args.quick else [16_384, args.clip_batch]
    res["clip"] = []
    for b in batches:
        if not args.quick and res["clip"] and res["clip"][-1]["ours_ms"] * (b / res["clip"][-1]["batch"]) ** 2 > 60_000:
            res["clip"].append({"batch": b, "skipped": "projected over 60 s"})
            continue
        r = bench_clip(b, 512, 1 if (b > 16_384) else (2 if args.quick else 3))
        res["clip"].append(r)
        print(f"clip B={b} d=512 fwd+bwd: ours {r['ours_ms']:.1f} ms / {r['ours_peak_bytes'] / 2**20:.0f} MiB; "
              f"open_clip {r.get('open_clip_ms')} ms / {r.get('open_clip_peak_bytes', 0) / 2**20:.0f} MiB")  # fmt: skip
    res["seconds"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
