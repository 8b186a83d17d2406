"""mlvec's CUDA kernels for CUDA torch tensors, compiled at first use with NVRTC.

The kernels (``cuda_kernels/*.cu``, embedded in the extension) are compiled for the device's own
compute capability the first time they run on it and cached on disk (``MLVEC_CACHE_DIR``, else
``~/.cache/mlvec/cuda``). NVRTC and the CUDA headers are found in pip's ``nvidia-cuda-nvrtc`` /
``nvidia-cuda-runtime`` wheels (torch's CUDA build depends on both), or where
``MLVEC_NVRTC_PATH`` / ``MLVEC_CUDA_INCLUDE`` say. Every function here takes CUDA tensors,
allocates its outputs with torch on the inputs' device and launches on
``torch.cuda.current_stream()``; nothing synchronises except where noted (reading a set length
from the offsets).

Token sets use the packed layout of :mod:`mlvec._native`: embeddings ``[rows, dim]``
(float32/float16/bfloat16), int64 offsets ``[n + 1]``, optional bool mask ``[rows]``. The
MaxSim functions follow ``_native.maxsim.forward`` / ``backward`` exactly (sums,
first-on-ties argmax local to the other set, -1 where undefined, -inf for a max over none).

Example::

    import torch, mlvec.cuda as mc
    q = torch.randn(32, 128, device="cuda", dtype=torch.bfloat16)
    d = torch.randn(3000, 128, device="cuda", dtype=torch.bfloat16)
    qo = torch.tensor([0, 32], device="cuda")
    do = torch.arange(0, 3001, 300, device="cuda")
    scores, *_ = mc.maxsim_forward(q, qo, None, d, do, None)   # [10]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlvec import _cuda_locate, _native

if TYPE_CHECKING:
    import torch

__all__ = [
    "available",
    "compile_check",
    "maxsim_forward",
    "maxsim_backward",
    "filip_forward",
    "clip_lse",
    "clip_lse_backward",
    "siglip_rows",
    "siglip_backward",
    "pq_scan",
    "hamming_scan",
    "topk_smallest",
]

_configured = False


def _configure() -> None:
    """Point the extension at the nvidia wheels' NVRTC and headers (once)."""
    global _configured
    if _configured:
        return
    nvrtc = _cuda_locate.find_nvrtc()
    include = _cuda_locate.find_include_dirs(nvrtc)
    _native.cuda.configure(nvrtc, include or None, None)
    _configured = True


def available() -> tuple[bool, str]:
    """``(True, "")`` when a CUDA driver, a device and NVRTC are all usable, else ``(False, why)``."""
    _configure()
    return _native.cuda.status()


def compile_check(arch: str = "sm_90") -> list[str]:
    """Compile every kernel with NVRTC for ``arch`` (``"sm_80"``, ``"sm_90"``, ...) and return their names.

    Needs NVRTC but no GPU. Raises :class:`mlvec.MlvecError` with NVRTC's log if a kernel does not
    compile, ``ValueError`` for an unsupported ``arch``.

    >>> "maxsim_fwd_bf16" in compile_check("sm_90")  # doctest: +SKIP
    True
    """
    _configure()
    return list(_native.cuda.compile_check(arch))


# ---- helpers ---------------------------------------------------------------------------------

_FLOAT_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16"}


def _torch():
    import torch

    return torch


def _dtype_name(t: torch.Tensor, name: str) -> str:
    key = str(t.dtype)
    if key not in _FLOAT_NAMES:
        raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {t.dtype}")
    return _FLOAT_NAMES[key]


def _cuda(t: torch.Tensor, name: str, device: torch.device | None = None) -> torch.Tensor:
    torch = _torch()
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cuda":
        raise ValueError(f"{name}: expected a CUDA tensor, got one on {t.device}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: on {t.device}, but the other inputs are on {device}")
    return t.contiguous()


def _place(device: torch.device) -> tuple[int, int]:
    torch = _torch()
    _configure()
    index = device.index if device.index is not None else torch.cuda.current_device()
    return index, torch.cuda.current_stream(index).cuda_stream


def _sets(data, offsets, mask, name: str, device=None, max_len: int | None = None):
    """Validate one packed token-set argument; returns (data, offsets, mask, n, max_len).

    Without ``max_len`` the offsets are read back once (a device synchronisation) to check them
    and find the longest set; with it the caller vouches for both.
    """
    torch = _torch()
    data = _cuda(data, name, device)
    if data.dim() != 2:
        raise ValueError(f"{name}: expected [rows, dim] embeddings, got shape {tuple(data.shape)}")
    offsets = _cuda(offsets, f"{name} offsets", data.device)
    if offsets.dtype != torch.int64 or offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError(f"{name} offsets: expected int64 [n + 1], got {offsets.dtype} {tuple(offsets.shape)}")
    if mask is not None:
        mask = _cuda(mask, f"{name} mask", data.device)
        if mask.dtype != torch.bool or mask.shape != (data.shape[0],):
            raise ValueError(
                f"{name} mask: expected bool [{data.shape[0]}], got {mask.dtype} {tuple(mask.shape)}"
            )
    n = offsets.numel() - 1
    if max_len is not None:
        return data, offsets, mask, n, int(max_len)
    lengths = offsets[1:] - offsets[:-1]
    if n > 0:
        # One synchronising read: validity of the offsets and the longest set.
        first, last, low, longest = torch.stack(
            [offsets[0], offsets[-1], lengths.min(), lengths.max()]
        ).tolist()
        if first < 0 or last > data.shape[0] or low < 0:
            raise ValueError(
                f"{name} offsets: must be non-decreasing within 0..{data.shape[0]}, got first {first}, "
                f"last {last}"
            )
    else:
        longest = 0
    return data, offsets, mask, n, int(longest)


def _set_arg(data, offsets, mask, n) -> tuple[int, int, int, int]:
    return (data.data_ptr(), offsets.data_ptr(), 0 if mask is None else mask.data_ptr(), n)


def _ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


# ---- MaxSim ----------------------------------------------------------------------------------


def maxsim_forward(
    q: torch.Tensor,
    q_offsets: torch.Tensor,
    q_mask: torch.Tensor | None,
    d: torch.Tensor,
    d_offsets: torch.Tensor,
    d_mask: torch.Tensor | None,
    *,
    paired: bool = False,
    q2d_argmax: bool = False,
    d2q: bool = False,
    d2q_argmax: bool = False,
    max_lens: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """MaxSim of P pairs on the GPU (``nq * nd`` query-major, or ``n`` when ``paired``).

    Args: packed query rows ``q [rows_q, dim]`` with int64 ``q_offsets [nq + 1]`` and optional bool
    ``q_mask [rows_q]``; the same for documents; all CUDA tensors of one float dtype.

    Returns ``(q2d [P] float32, q2d_argmax [P, lq_max] int32 | None, d2q [P] float32 | None,
    d2q_argmax [P, ld_max] int32 | None)``, the contract of ``mlvec._native.maxsim.forward``.
    ``max_lens=(lq_max, ld_max)`` skips reading the offsets back (no synchronisation); the caller
    then guarantees valid offsets and those longest set lengths.
    fp16/bf16 products run on tensor cores with fp32 accumulation; the ``[lq, ld]`` similarity
    of a pair never reaches global memory.
    """
    torch = _torch()
    lq_given, ld_given = max_lens if max_lens is not None else (None, None)
    q, q_offsets, q_mask, nq, lq_max = _sets(q, q_offsets, q_mask, "queries", max_len=lq_given)
    d, d_offsets, d_mask, nd, ld_max = _sets(d, d_offsets, d_mask, "documents", q.device, ld_given)
    dt = _dtype_name(q, "queries")
    if d.dtype != q.dtype:
        raise TypeError(f"documents: dtype {d.dtype} does not match the queries' {q.dtype}")
    if d.shape[1] != q.shape[1]:
        raise ValueError(f"documents: embedding dimension {d.shape[1]} does not match the queries' {q.shape[1]}")
    if paired and nq != nd:
        raise ValueError(
            f"documents: paired scoring needs as many documents as queries, got {nq} queries and {nd} documents"
        )
    dim = q.shape[1]
    p = nq if paired else nq * nd
    dev, stream = _place(q.device)
    f32, i32 = torch.float32, torch.int32
    sums = torch.empty(p, dtype=f32, device=q.device)
    q_arg = torch.empty((p, lq_max), dtype=i32, device=q.device) if q2d_argmax else None
    want_cols = d2q or d2q_argmax
    d_sum = torch.empty(p, dtype=f32, device=q.device) if want_cols else None
    d_arg = torch.empty((p, ld_max), dtype=i32, device=q.device) if d2q_argmax else None
    if p == 0:
        return sums, q_arg, d_sum, d_arg
    qa, da = _set_arg(q, q_offsets, q_mask, nq), _set_arg(d, d_offsets, d_mask, nd)
    _, _, max_cols, _, _ = _native.cuda.limits()
    one_pass = want_cols and ld_max <= max_cols
    _native.cuda.maxsim_forward(
        dt, dev, stream, qa, da, dim, paired, False, lq_max, ld_max,
        sums.data_ptr(), _ptr(q_arg),
        _ptr(d_sum) if one_pass else 0, _ptr(d_arg) if one_pass else 0,
    )  # fmt: skip
    if want_cols and not one_pass:
        # Long document sets: the d->q direction is the q->d kernel with the roles swapped.
        _native.cuda.maxsim_forward(
            dt, dev, stream, da, qa, dim, paired, True, ld_max, lq_max, d_sum.data_ptr(), _ptr(d_arg), 0, 0
        )
    return sums, q_arg, d_sum if d2q else None, d_arg


def maxsim_backward(
    q: torch.Tensor,
    q_offsets: torch.Tensor,
    q_mask: torch.Tensor | None,
    d: torch.Tensor,
    d_offsets: torch.Tensor,
    d_mask: torch.Tensor | None,
    *,
    paired: bool = False,
    grad_q2d: torch.Tensor | None = None,
    q2d_argmax: torch.Tensor | None = None,
    grad_d2q: torch.Tensor | None = None,
    d2q_argmax: torch.Tensor | None = None,
    deterministic: bool = True,
    max_lens: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(dq [rows_q, dim], dd [rows_d, dim])`` float32 of ``sum(grad_q2d * q2d + grad_d2q * d2q)``.

    Takes the argmax positions saved by :func:`maxsim_forward`. The query-side rows of each
    direction are gathered (deterministic); the other side is scattered either in a fixed order
    (``deterministic=True``) or with atomic adds (faster on large all-pairs batches, summation
    order varies). Positions outside the other set are skipped. ``max_lens`` as in
    :func:`maxsim_forward`.
    """
    torch = _torch()
    lq_given, ld_given = max_lens if max_lens is not None else (None, None)
    q, q_offsets, q_mask, nq, lq_max = _sets(q, q_offsets, q_mask, "queries", max_len=lq_given)
    d, d_offsets, d_mask, nd, ld_max = _sets(d, d_offsets, d_mask, "documents", q.device, ld_given)
    dt = _dtype_name(q, "queries")
    if d.dtype != q.dtype or d.shape[1] != q.shape[1]:
        raise TypeError(f"documents: {d.dtype} [*, {d.shape[1]}] does not match the queries' {q.dtype} [*, {q.shape[1]}]")
    p = nq if paired else nq * nd
    if paired and nq != nd:
        raise ValueError(f"documents: paired scoring needs as many documents as queries, got {nq} and {nd}")
    dim = q.shape[1]
    dev, stream = _place(q.device)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dd = torch.zeros(d.shape, dtype=torch.float32, device=q.device)
    qa, da = _set_arg(q, q_offsets, q_mask, nq), _set_arg(d, d_offsets, d_mask, nd)
    scatter = "scatter_b" if deterministic else "scatter_b_atomic"
    for name, g, arg, l_max in (("q2d", grad_q2d, q2d_argmax, lq_max), ("d2q", grad_d2q, d2q_argmax, ld_max)):
        if (g is None) != (arg is None):
            raise ValueError(f"grad_{name} and {name}_argmax must be given together")
        if g is None:
            continue
        g = _cuda(g, f"grad_{name}", q.device).to(torch.float32)
        arg = _cuda(arg, f"{name}_argmax", q.device)
        if g.shape != (p,) or arg.shape != (p, l_max) or arg.dtype != torch.int32:
            raise ValueError(
                f"{name}: expected grad [{p}] and int32 argmax [{p}, {l_max}], got {tuple(g.shape)} and "
                f"{arg.dtype} {tuple(arg.shape)}"
            )
        if p == 0:
            continue
        # q2d: A = queries, B = documents. d2q: the roles swap (and all-pairs outputs transpose).
        a, b, ga, gb, transpose = (qa, da, dq, dd, False) if name == "q2d" else (da, qa, dd, dq, True)
        lb_max = ld_max if name == "q2d" else lq_max
        args = (a, b, dim, paired, transpose, l_max, lb_max, g.data_ptr(), arg.data_ptr(), ga.data_ptr(), gb.data_ptr())
        _native.cuda.maxsim_backward(dt, dev, stream, "gather_a", *args)
        _native.cuda.maxsim_backward(dt, dev, stream, scatter, *args)
    return dq, dd


def filip_forward(
    a: torch.Tensor,
    a_offsets: torch.Tensor,
    a_mask: torch.Tensor | None,
    b: torch.Tensor,
    b_offsets: torch.Tensor,
    b_mask: torch.Tensor | None,
    *,
    paired: bool = False,
    argmax: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """FILIP tile: token-wise max both ways inside each pair, in one pass.

    Returns ``(a_mean [P], b_mean [P], a_argmax [P, la_max] | None, b_argmax [P, lb_max] | None)``:
    ``a_mean`` is the mean over valid ``a`` tokens of their max over valid ``b`` tokens (0 when
    ``a`` has none), ``b_mean`` the other way. The longest ``b`` set must fit the kernel's shared
    memory (2,048 tokens); :func:`maxsim_forward` has no such limit. For the gradient use
    :func:`maxsim_backward` with the upstream gradients divided by the valid counts.
    """
    torch = _torch()
    a, a_offsets, a_mask, na, la_max = _sets(a, a_offsets, a_mask, "a")
    b, b_offsets, b_mask, nb, lb_max = _sets(b, b_offsets, b_mask, "b", a.device)
    dt = _dtype_name(a, "a")
    if b.dtype != a.dtype or b.shape[1] != a.shape[1]:
        raise TypeError(f"b: {b.dtype} [*, {b.shape[1]}] does not match a's {a.dtype} [*, {a.shape[1]}]")
    if paired and na != nb:
        raise ValueError(f"b: paired scoring needs as many sets as a, got {na} and {nb}")
    p = na if paired else na * nb
    dev, stream = _place(a.device)
    a_mean = torch.empty(p, dtype=torch.float32, device=a.device)
    b_mean = torch.empty(p, dtype=torch.float32, device=a.device)
    a_arg = torch.empty((p, la_max), dtype=torch.int32, device=a.device) if argmax else None
    b_arg = torch.empty((p, lb_max), dtype=torch.int32, device=a.device) if argmax else None
    if p:
        _native.cuda.filip_forward(
            dt, dev, stream, _set_arg(a, a_offsets, a_mask, na), _set_arg(b, b_offsets, b_mask, nb),
            a.shape[1], paired, la_max, lb_max, a_mean.data_ptr(), b_mean.data_ptr(), _ptr(a_arg), _ptr(b_arg),
        )  # fmt: skip
    return a_mean, b_mean, a_arg, b_arg


# ---- contrastive tiles -----------------------------------------------------------------------


def _pairwise(x, y):
    x = _cuda(x, "x")
    y = _cuda(y, "y", x.device)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x, y: expected [m, dim] and [n, dim], got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise TypeError(f"y: dtype {y.dtype} does not match x's {x.dtype}")
    return x, y, _dtype_name(x, "x")


def _tiles(m: int, n: int) -> tuple[int, int]:
    rows, cols, *_ = _native.cuda.limits()
    return -(-n // cols), -(-m // rows)


def clip_lse(x: torch.Tensor, y: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column log-sum-exps of ``scale * x @ y.T`` without materialising it.

    ``x [m, dim]``, ``y [n, dim]`` (one float dtype, fp32 accumulation) -> ``(row_lse [m],
    col_lse [n])`` float32. The InfoNCE/CLIP loss is then ``row_lse - pos`` and ``col_lse - pos``
    with the positive logits ``pos = scale * (x * y[labels]).sum(-1)``, computed by the caller.
    """
    torch = _torch()
    x, y, dt = _pairwise(x, y)
    m, n = x.shape[0], y.shape[0]
    gx, gy = _tiles(m, n)
    dev, stream = _place(x.device)
    kw = {"dtype": torch.float32, "device": x.device}
    rmax, rsum = torch.empty((gx, m), **kw), torch.empty((gx, m), **kw)
    cmax, csum = torch.empty((gy, n), **kw), torch.empty((gy, n), **kw)
    if m and n:
        _native.cuda.clip_lse_partials(
            dt, dev, stream, x.data_ptr(), y.data_ptr(), m, n, x.shape[1], float(scale),
            rmax.data_ptr(), rsum.data_ptr(), cmax.data_ptr(), csum.data_ptr(),
        )  # fmt: skip

    def merge(pmax, psum):
        top = pmax.max(dim=0).values
        return top + torch.log((psum * torch.exp(pmax - top)).sum(dim=0))

    return merge(rmax, rsum), merge(cmax, csum)


def clip_lse_backward(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
    row_lse: torch.Tensor | None,
    col_lse: torch.Tensor | None,
    grad_row: torch.Tensor | None,
    grad_col: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of ``sum(grad_row * row_lse) + sum(grad_col * col_lse)`` by recomputing logit tiles.

    Returns ``(dx [m, dim], dy [n, dim], dscale [])`` float32 (``dscale`` is the gradient with
    respect to ``scale``). Pass ``None`` for a side that does not contribute.
    """
    torch = _torch()
    x, y, dt = _pairwise(x, y)
    m, n = x.shape[0], y.shape[0]
    gx, gy = _tiles(m, n)
    dev, stream = _place(x.device)
    kw = {"dtype": torch.float32, "device": x.device}

    def vec(t, name, size):
        if t is None:
            return None
        t = _cuda(t, name, x.device).to(torch.float32)
        if t.shape != (size,):
            raise ValueError(f"{name}: expected [{size}], got {tuple(t.shape)}")
        return t

    row_lse, grad_row = vec(row_lse, "row_lse", m), vec(grad_row, "grad_row", m)
    col_lse, grad_col = vec(col_lse, "col_lse", n), vec(grad_col, "grad_col", n)
    dx, dy = torch.zeros(x.shape, **kw), torch.zeros(y.shape, **kw)
    part = torch.zeros(gx * gy, **kw)
    if m and n:
        _native.cuda.clip_grad(
            dt, dev, stream, x.data_ptr(), y.data_ptr(), m, n, x.shape[1], float(scale),
            _ptr(row_lse), _ptr(col_lse), _ptr(grad_row), _ptr(grad_col), dx.data_ptr(), dy.data_ptr(),
            part.data_ptr(),
        )  # fmt: skip
    return dx, dy, part.sum()


def siglip_rows(
    x: torch.Tensor, y: torch.Tensor, scale: float, bias: float, row_offset: int = 0, col_offset: int = 0
) -> torch.Tensor:
    """Per-row SigLIP loss sums ``Σ_j softplus(-z_ij (scale <x_i, y_j> + bias))`` -> ``[m]`` float32.

    ``z_ij = +1`` where ``row_offset + i == col_offset + j`` (the positives of a shard's block),
    ``-1`` elsewhere.
    """
    torch = _torch()
    x, y, dt = _pairwise(x, y)
    m, n = x.shape[0], y.shape[0]
    gx, _ = _tiles(m, n)
    dev, stream = _place(x.device)
    part = torch.zeros((gx, m), dtype=torch.float32, device=x.device)
    if m and n:
        _native.cuda.siglip_forward(
            dt, dev, stream, x.data_ptr(), y.data_ptr(), m, n, x.shape[1], float(scale), float(bias),
            int(row_offset), int(col_offset), part.data_ptr(),
        )  # fmt: skip
    return part.sum(dim=0)


def siglip_backward(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: float,
    bias: float,
    grad_rows: torch.Tensor,
    row_offset: int = 0,
    col_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of ``sum(grad_rows * siglip_rows(...))``: ``(dx, dy, dscale [], dbias [])`` float32."""
    torch = _torch()
    x, y, dt = _pairwise(x, y)
    m, n = x.shape[0], y.shape[0]
    gx, gy = _tiles(m, n)
    dev, stream = _place(x.device)
    g = _cuda(grad_rows, "grad_rows", x.device).to(torch.float32)
    if g.shape != (m,):
        raise ValueError(f"grad_rows: expected [{m}], got {tuple(g.shape)}")
    kw = {"dtype": torch.float32, "device": x.device}
    dx, dy = torch.zeros(x.shape, **kw), torch.zeros(y.shape, **kw)
    ps, pb = torch.zeros(gx * gy, **kw), torch.zeros(gx * gy, **kw)
    if m and n:
        _native.cuda.siglip_backward(
            dt, dev, stream, x.data_ptr(), y.data_ptr(), m, n, x.shape[1], float(scale), float(bias),
            int(row_offset), int(col_offset), g.data_ptr(), dx.data_ptr(), dy.data_ptr(), ps.data_ptr(),
            pb.data_ptr(),
        )  # fmt: skip
    return dx, dy, ps.sum(), pb.sum()


# ---- quantized scans -------------------------------------------------------------------------


def pq_scan(codes: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """PQ distances ``dist[q, i] = Σ_s lut[q, s, codes[i, s]]``: uint8 ``codes [n, m]``, float32
    ``lut [nq, m, ksub]`` (ksub <= 256) -> float32 ``[nq, n]``."""
    torch = _torch()
    codes = _cuda(codes, "codes")
    lut = _cuda(lut, "lut", codes.device)
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise ValueError(f"codes: expected uint8 [n, m], got {codes.dtype} {tuple(codes.shape)}")
    if lut.dtype != torch.float32 or lut.dim() != 3 or lut.shape[1] != codes.shape[1]:
        raise ValueError(
            f"lut: expected float32 [nq, {codes.shape[1]}, ksub], got {lut.dtype} {tuple(lut.shape)}"
        )
    n, m = codes.shape
    nq, _, ksub = lut.shape
    dist = torch.empty((nq, n), dtype=torch.float32, device=codes.device)
    dev, stream = _place(codes.device)
    _native.cuda.pq_scan(dev, stream, codes.data_ptr(), n, m, ksub, lut.data_ptr(), nq, dist.data_ptr())
    return dist


def hamming_scan(codes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Hamming distances between binary codes: int64 (bit patterns) ``codes [n, words]`` and
    ``queries [nq, words]`` -> float32 ``[nq, n]`` (exact integers)."""
    torch = _torch()
    codes = _cuda(codes, "codes")
    queries = _cuda(queries, "queries", codes.device)
    for name, t in (("codes", codes), ("queries", queries)):
        if t.dtype != torch.int64 or t.dim() != 2:
            raise ValueError(f"{name}: expected int64 [*, words], got {t.dtype} {tuple(t.shape)}")
    if queries.shape[1] != codes.shape[1]:
        raise ValueError(f"queries: {queries.shape[1]} words per code, but codes have {codes.shape[1]}")
    n, words = codes.shape
    nq = queries.shape[0]
    dist = torch.empty((nq, n), dtype=torch.float32, device=codes.device)
    dev, stream = _place(codes.device)
    _native.cuda.hamming_scan(dev, stream, codes.data_ptr(), n, words, queries.data_ptr(), nq, dist.data_ptr())
    return dist


def topk_smallest(dist: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest entries of each row of float32 ``dist [rows, n]``, ascending, smaller
    column first on ties: ``(values [rows, k] float32, ids [rows, k] int64)``; when ``n < k`` the
    tail is ``(inf, -1)``. NaN sorts last. ``1 <= k <= 1024``.
    """
    torch = _torch()
    dist = _cuda(dist, "dist")
    if dist.dtype != torch.float32 or dist.dim() != 2:
        raise ValueError(f"dist: expected float32 [rows, n], got {dist.dtype} {tuple(dist.shape)}")
    _, _, _, chunk, max_k = _native.cuda.limits()
    if not 1 <= k <= max_k:
        raise ValueError(f"k: must be in 1..{max_k}, got {k}")
    rows, n = dist.shape
    dev, stream = _place(dist.device)
    vals, ids = dist, None
    while True:
        chunks = max(1, -(-n // chunk))
        out_v = torch.empty((rows, chunks, k), dtype=torch.float32, device=dist.device)
        out_i = torch.empty((rows, chunks, k), dtype=torch.int64, device=dist.device)
        _native.cuda.select_k(dev, stream, _ptr(vals), _ptr(ids), rows, n, k, out_v.data_ptr(), out_i.data_ptr())
        if chunks == 1:
            return out_v.reshape(rows, k), out_i.reshape(rows, k)
        vals, ids, n = out_v.reshape(rows, -1), out_i.reshape(rows, -1), chunks * k
