"""mlvec: late-interaction scoring, sharded contrastive losses and quantized ANN search.

Tensors in, tensors out: numpy arrays and torch tensors are accepted wherever embeddings are;
the heavy lifting runs in Rust (CPU) with the GIL released. ``import mlvec`` needs only numpy;
the torch-facing parts import torch when first used.

Submodules (imported on first attribute access):

- :mod:`mlvec.scoring` -- MaxSim (ColBERT sum-of-max, FILIP mean-of-max), rerank, gradients.
- :mod:`mlvec.losses` -- exact tiled CLIP/InfoNCE, SigLIP, FILIP and ColBERT in-batch losses.
- :mod:`mlvec.index` -- exact and quantized ANN indexes (flat, IVF, SQ8, PQ, binary, HNSW).
- :mod:`mlvec.encoders` -- adapters for Hugging Face encoders and the embedded e5 encoder.
- :mod:`mlvec.eval` -- recall@k, MRR@k, nDCG@k and a retrieval benchmark runner.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlvec import _native
from mlvec._native import FormatError, MlvecError

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "MlvecError",
    "FormatError",
    "get_num_threads",
    "set_num_threads",
    "cpu_features",
    "cuda_available",
    "maxsim",
    "filip_maxsim",
    "rerank",
]

_SUBMODULES = {"scoring", "losses", "index", "encoders", "eval", "ops", "cli", "data", "cuda"}
# Public functions re-exported from submodules, resolved lazily so torch is not imported early.
_LAZY_ATTRS = {
    "maxsim": ("mlvec.scoring", "maxsim"),
    "filip_maxsim": ("mlvec.scoring", "filip_maxsim"),
    "rerank": ("mlvec.scoring", "rerank"),
}


def get_num_threads() -> int:
    """Number of threads mlvec's parallel CPU kernels use (default: all cores, or ``MLVEC_NUM_THREADS``)."""
    return _native.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads mlvec's parallel CPU kernels use (``n >= 1``)."""
    _native.set_num_threads(int(n))


def cpu_features() -> list[str]:
    """SIMD extensions detected on this CPU at run time (e.g. ``["avx2", "fma", "avx512f", ...]``)."""
    return list(_native.cpu_features())


def cuda_available() -> tuple[bool, str]:
    """Whether mlvec's CUDA kernels can run here: ``(True, "")`` or ``(False, reason)``."""
    # mlvec.cuda first points the extension at pip's NVRTC (no torch import involved).
    from mlvec import cuda

    return cuda.available()


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"mlvec.{name}")
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mlvec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY_ATTRS))
