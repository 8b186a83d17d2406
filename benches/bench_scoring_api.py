"""What the public scoring API costs on top of the native kernel, in one process.

Times, on the same data, ``_native.maxsim.forward`` called directly on packed rows against
``mlvec.maxsim`` with numpy (padded + mask), with and without the NaN/inf check, with torch
tensors (the custom op), with torch tensors that require grad (argmax positions kept), and the
backward pass. Prints medians and the ratio to the direct native call; the API should add little.
The NaN/inf check runs inside the kernel (``check_finite=True``), on rows as it reads them; the
separate numpy pass it replaced (``python_check_finite`` below) is timed next to it for comparison.
FILIP (``d2q=True``, both directions) is timed against the ColBERT-only native call too.

    python benches/bench_scoring_api.py            # 1 query x 1000 documents x 300 tokens x 128
    python benches/bench_scoring_api.py --quick    # a small smoke run
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import mlvec
from mlvec import _native

from harness.timing import median_seconds


def python_check_finite(data: np.ndarray, _bf16: bool, mask: np.ndarray | None, name: str) -> None:
    """The separate numpy pass the API used before the check moved into the kernel (float32)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(data.reshape(-1), dtype=np.float32)
    if np.isfinite(total):
        return
    bad = ~np.isfinite(data).all(axis=1)
    if mask is not None:
        bad &= mask
    if bad.any():
        raise ValueError(f"{name}: token row {int(np.argmax(bad))} (packed) holds NaN or inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--doc-len", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n_docs, ld, repeat = (50, 64, 3) if args.quick else (args.docs, args.doc_len, args.repeat)
    dim, lq = 128, 32
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, lq, dim)).astype(np.float32)
    d = rng.standard_normal((n_docs, ld, dim)).astype(np.float32)
    mask = np.ones((n_docs, ld), dtype=bool)
    rows, offsets = d.reshape(-1, dim), np.arange(n_docs + 1, dtype=np.int64) * ld
    q_rows, q_offsets = q.reshape(-1, dim), np.array([0, lq], dtype=np.int64)
    qt, dt, mt = torch.from_numpy(q), torch.from_numpy(d), torch.from_numpy(mask)
    qg, dg = qt.clone().requires_grad_(), dt.clone().requires_grad_()

    def backward():
        mlvec.maxsim(qg, dg, document_mask=mt).sum().backward()

    flat_mask = mask.reshape(-1)

    def native_then_python_check():
        python_check_finite(q_rows, False, None, "queries")
        python_check_finite(rows, False, flat_mask, "documents")
        _native.maxsim.forward(q_rows, q_offsets, None, rows, offsets, flat_mask)

    cases = [
        ("_native.maxsim.forward (packed)", lambda: _native.maxsim.forward(
            q_rows, q_offsets, None, rows, offsets, flat_mask)),
        ("_native, check_finite=True (fused)", lambda: _native.maxsim.forward(
            q_rows, q_offsets, None, rows, offsets, flat_mask, check_finite=True)),
        ("_native + separate numpy finite pass", native_then_python_check),
        ("_native, d2q=True (FILIP)", lambda: _native.maxsim.forward(
            q_rows, q_offsets, None, rows, offsets, flat_mask, d2q=True)),
        ("mlvec.maxsim numpy, check_finite=False", lambda: mlvec.maxsim(
            q, d, document_mask=mask, check_finite=False)),
        ("mlvec.maxsim numpy", lambda: mlvec.maxsim(q, d, document_mask=mask)),
        ("mlvec.maxsim torch", lambda: mlvec.maxsim(qt, dt, document_mask=mt)),
        ("mlvec.maxsim torch, requires_grad", lambda: mlvec.maxsim(qg, dg, document_mask=mt)),
        ("forward + backward (torch)", backward),
    ]
    print(f"1 query x {lq} tokens vs {n_docs} documents x {ld} tokens, dim {dim}, float32, "
          f"{mlvec.get_num_threads()} threads; median of {repeat}")
    base = None
    for name, fn in cases:
        ms = median_seconds(fn, repeat, warmup=1) * 1e3
        base = base or ms
        print(f"  {name:<40} {ms:9.2f} ms   {ms / base:5.2f}x native   {n_docs / ms * 1e3:12,.0f} docs/s")


if __name__ == "__main__":
    main()
