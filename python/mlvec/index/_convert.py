"""Array conversion for the index API: numpy arrays or CPU torch tensors in, C-contiguous numpy out.

bfloat16 has no numpy dtype, so bfloat16 data travels as its raw ``uint16`` bits with a flag.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlvec._arrays import tensor_view

_FLOAT_DTYPES = (np.float32, np.float16)


def float32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 (nearest, ties to even) and return the ``uint16`` bits.

    Example::

        >>> float32_to_bf16_bits(np.array([1.0], np.float32))
        array([16256], dtype=uint16)
    """
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    nan = np.isnan(a)
    rounded = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bits (``uint16``) to float32 exactly."""
    return (np.ascontiguousarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def as_matrix(x: Any, arg: str, *, bf16: bool = False) -> tuple[np.ndarray, bool]:
    """``x`` as a C-contiguous 2-D float32/float16 array, or bfloat16 bits with ``True``.

    Accepts numpy arrays and CPU torch tensors (float32, float16, bfloat16; float64 is narrowed
    to float32). A 1-D input is one row. ``bf16=True`` marks a ``uint16`` numpy array as
    bfloat16 bits.
    """
    if type(x).__module__.startswith("torch"):
        import torch

        if x.device.type != "cpu":
            raise ValueError(f"{arg}: expected a CPU tensor, got one on {x.device}")
        if x.dtype == torch.float64:
            x = x.to(torch.float32)
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"{arg}: expected a float32, float16 or bfloat16 tensor, got {x.dtype}")
        x, bf16 = tensor_view(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{arg}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if bf16:
        if x.dtype != np.uint16:
            raise TypeError(f"{arg}: bf16=True needs uint16 bits, got dtype {x.dtype}")
    elif x.dtype == np.float64:
        x = x.astype(np.float32)
    elif x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{arg}: expected float32, float16 or bfloat16 values, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array [n, dim], got shape {x.shape}")
    return np.ascontiguousarray(x), bf16


def as_ids(ids: Any, arg: str) -> np.ndarray:
    """``ids`` as a contiguous 1-D int64 array (lists, numpy or torch integer arrays)."""
    if type(ids).__module__.startswith("torch"):
        ids = ids.detach().cpu().numpy()
    a = np.asarray(ids)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{arg}: expected integer ids, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{arg}: expected a 1-D array of ids, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)
