"""mlvec's CUDA kernels for CUDA torch tensors, compiled at first use with NVRTC.

The kernels (``cuda_kernels/*.cu``, embedded in the extension) are compiled for the device's own
compute capability the first time they run on it and cached on disk (``MLVEC_CACHE_DIR``, else
``~/.cache/mlvec/cuda``). NVRTC and the CUDA headers are found in pip's ``nvidia-cuda-nvrtc`` /
``nvidia-cuda-runtime`` wheels (torch's CUDA build depends on both), or where
``MLVEC_NVRTC_PATH`` / ``MLVEC_CUDA_INCLUDE`` say. This module holds availability,
configuration and compile checks; the wrappers live beside the code that uses them and are
re-exported here (imported on first use, so ``import mlvec.cuda`` needs no torch):

- MaxSim (:mod:`mlvec.ops.maxsim_cuda`): :func:`maxsim_forward`, :func:`maxsim_backward`,
  :func:`filip_forward`;
- contrastive tiles (:mod:`mlvec.losses.cuda_tiles`): :func:`clip_lse`,
  :func:`clip_lse_backward`, :func:`siglip_rows`, :func:`siglip_backward`;
- quantized scans (:mod:`mlvec.index.cuda_scan`): :func:`pq_scan`, :func:`hamming_scan`,
  :func:`topk_smallest`.

Every wrapper takes CUDA tensors, allocates its outputs with torch on the inputs' device and
launches on ``torch.cuda.current_stream()``; nothing synchronises except where noted (reading a
set length from the offsets).

Token sets use the packed layout of :mod:`mlvec._native`: embeddings ``[rows, dim]``
(float32/float16/bfloat16), int64 offsets ``[n + 1]``, optional bool mask ``[rows]``. The
MaxSim functions follow ``_native.maxsim.forward`` / ``backward`` exactly (sums, first-on-ties
argmax local to the other set, -1 where undefined, -inf for a max over none).

Example::

    import torch, mlvec.cuda as mc
    q = torch.randn(32, 128, device="cuda", dtype=torch.bfloat16)
    d = torch.randn(3000, 128, device="cuda", dtype=torch.bfloat16)
    qo = torch.tensor([0, 32], device="cuda")
    do = torch.arange(0, 3001, 300, device="cuda")
    scores, *_ = mc.maxsim_forward(q, qo, None, d, do, None)   # [10]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

from mlvec import _cuda_locate, _native

if TYPE_CHECKING:
    import torch

# The wrappers re-exported here, by the module that holds them.
_WRAPPERS = {
    "maxsim_forward": "mlvec.ops.maxsim_cuda",
    "maxsim_backward": "mlvec.ops.maxsim_cuda",
    "filip_forward": "mlvec.ops.maxsim_cuda",
    "clip_lse": "mlvec.losses.cuda_tiles",
    "clip_lse_backward": "mlvec.losses.cuda_tiles",
    "siglip_rows": "mlvec.losses.cuda_tiles",
    "siglip_backward": "mlvec.losses.cuda_tiles",
    "pq_scan": "mlvec.index.cuda_scan",
    "hamming_scan": "mlvec.index.cuda_scan",
    "topk_smallest": "mlvec.index.cuda_scan",
}

__all__ = ["available", "compile_check", "limits", *_WRAPPERS]

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


class Limits(NamedTuple):
    """Sizes fixed by the kernels."""

    tile_rows: int  # rows of the first operand per contrastive score tile
    tile_cols: int  # rows of the second operand per contrastive score tile
    max_cols: int  # longest second-side set of the one-pass two-direction MaxSim and of FILIP
    select_chunk: int  # candidates per block of the k-selection
    max_k: int  # largest k of the k-selection


def limits() -> Limits:
    """The kernels' fixed sizes (no GPU needed)."""
    return Limits(*_native.cuda.limits())


def launch_place(device: torch.device) -> tuple[int, int]:
    """``(device ordinal, stream handle)`` of a launch on ``device``: torch's current stream there.

    Configures NVRTC first (once), so the kernels compile on first use.
    """
    import torch

    _configure()
    index = device.index if device.index is not None else torch.cuda.current_device()
    return index, torch.cuda.current_stream(index).cuda_stream


def __getattr__(name: str) -> Any:
    if name in _WRAPPERS:
        return getattr(importlib.import_module(_WRAPPERS[name]), name)
    raise AttributeError(f"module 'mlvec.cuda' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WRAPPERS))
