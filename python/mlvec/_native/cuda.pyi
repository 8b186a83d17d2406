"""``mlvec._native.cuda``: CUDA kernels compiled at run time with NVRTC.

Launches take raw device pointers (torch's ``data_ptr()``), a device ordinal and a CUDA stream
handle, and trust them; use the wrappers re-exported by :mod:`mlvec.cuda`. A token-set argument
is ``(data_ptr, offsets_ptr, mask_ptr or 0, n_sets)``.
"""

def status() -> tuple[bool, str]:
    """``(True, "")`` when a CUDA driver, a device and NVRTC are usable, else ``(False, why)``."""

def configure(
    nvrtc_path: str | None = None, include_dirs: list[str] | None = None, cache_dir: str | None = None
) -> None:
    """Set the NVRTC library file, the CUDA include folders and the cubin cache folder."""

def nvrtc_version() -> tuple[int, int]: ...
def compile_check(arch: str) -> list[str]:
    """Compile every kernel for ``arch`` (e.g. ``"sm_90"``; no GPU needed); returns the kernel names."""

def compute_capability(device: int) -> tuple[int, int]: ...
def limits() -> tuple[int, int, int, int, int]:
    """``(tile_rows, tile_cols, max_cols, select_chunk, max_k)``."""

def maxsim_forward(
    dtype_name: str,
    device: int,
    stream: int,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    transpose: bool,
    la_max: int,
    lb_max: int,
    sum: int,
    row_arg: int,
    col_sum: int,
    col_arg: int,
) -> None: ...
def filip_forward(
    dtype_name: str,
    device: int,
    stream: int,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    la_max: int,
    lb_max: int,
    a_mean: int,
    b_mean: int,
    a_arg: int,
    b_arg: int,
) -> None: ...
def maxsim_backward(
    dtype_name: str,
    device: int,
    stream: int,
    kind: str,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    transpose: bool,
    la_max: int,
    lb_max: int,
    grad: int,
    argmax: int,
    da: int,
    db: int,
) -> None: ...
def clip_lse_partials(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    row_pmax: int,
    row_psum: int,
    col_pmax: int,
    col_psum: int,
) -> None: ...
def clip_grad(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    row_lse: int,
    col_lse: int,
    g_row: int,
    g_col: int,
    dx: int,
    dy: int,
    dscale_part: int,
) -> None: ...
def siglip_forward(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    bias: float,
    row_offset: int,
    col_offset: int,
    row_part: int,
) -> None: ...
def siglip_backward(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    bias: float,
    row_offset: int,
    col_offset: int,
    g_row: int,
    dx: int,
    dy: int,
    dscale_part: int,
    dbias_part: int,
) -> None: ...
def pq_scan(
    device: int, stream: int, codes: int, n: int, m: int, ksub: int, lut: int, nq: int, dist: int
) -> None: ...
def hamming_scan(
    device: int, stream: int, codes: int, n: int, words: int, queries: int, nq: int, dist: int
) -> None: ...
def select_k(
    device: int, stream: int, vals: int, ids: int, rows: int, n: int, k: int, out_vals: int, out_ids: int
) -> None: ...
