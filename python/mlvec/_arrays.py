"""Conversion of user arrays to the form the native layer reads, and input validation.

The native kernels read token sets *packed*: a C-contiguous ``[rows, dim]`` buffer, ``int64``
offsets ``[n + 1]`` and an optional ``bool`` row mask ``[rows]``. This module turns numpy arrays
and CPU torch tensors into that form, without copying when the layout already fits, and checks
everything the kernels would otherwise reject with a less helpful message.

torch is never imported here: a tensor is recognised through ``sys.modules``, so numpy-only
callers do not pay for importing torch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))
_SUPPORTED = "float32, float16 or bfloat16"


def is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def describe(x: Any) -> str:
    """A short description for error messages: kind, dtype, shape (and device for tensors)."""
    if is_tensor(x):
        return f"tensor of dtype {str(x.dtype).removeprefix('torch.')}, shape {tuple(x.shape)} on {x.device}"
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    return type(x).__name__


def dtype_name(x: Any) -> str:
    """``float32`` / ``float16`` / ``bfloat16`` / ... for numpy arrays and torch tensors."""
    if is_tensor(x):
        return str(x.dtype).removeprefix("torch.")
    return str(np.asarray(x).dtype)


def follow_input_type(result: np.ndarray, *inputs: Any) -> Any:
    """Output type follows input type: ``result`` as a CPU torch tensor (sharing its memory) when
    any of ``inputs`` is a torch tensor, else unchanged."""
    if any(is_tensor(x) for x in inputs):
        import torch

        return torch.from_numpy(result)
    return result


def check_device(x: Any, name: str, allow_cuda: bool = False) -> None:
    """Reject tensors that do not live on the CPU with a message that says what to do.

    With ``allow_cuda`` (APIs routed through the torch ops), CUDA tensors pass when
    ``mlvec.cuda_available()`` says the kernels can run; otherwise its reason is in the message.
    """
    if is_tensor(x) and x.device.type != "cpu":
        from mlvec import cuda_available

        ok, why = cuda_available()
        if ok and allow_cuda and x.device.type == "cuda":
            return
        if ok:
            status = "CUDA kernels are available but not wired to this API yet"
            if allow_cuda:
                status = f"CUDA kernels are available, but tensors on {x.device} are not"
        else:
            status = why
        raise ValueError(
            f"{name}: tensors on {x.device} are not supported yet, only CPU tensors and numpy arrays "
            f"(mlvec.cuda_available(): {status}); move them with .cpu()"
        )


def check_float(x: Any, name: str) -> None:
    """Embeddings must be float32, float16 or bfloat16 (numpy has no bfloat16: torch only).

    float64 is rejected rather than cast silently: the kernels compute in float32, and a hidden
    copy of a float64 batch would cost more than the scoring itself.
    """
    if is_tensor(x):
        import torch

        ok = x.dtype in (torch.float32, torch.float16, torch.bfloat16)
    elif isinstance(x, np.ndarray):
        ok = x.dtype in _NUMPY_FLOATS
    else:
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {describe(x)}")
    if not ok:
        hint = " (cast with .float() / .astype(np.float32))" if dtype_name(x) == "float64" else ""
        raise TypeError(f"{name}: expected {_SUPPORTED} embeddings, got {describe(x)}{hint}")


def native_2d(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """A C-contiguous 2-D numpy view of ``x`` for the native layer, and whether it is bfloat16.

    numpy arrays and CPU tensors are passed through without copying when C-contiguous; other
    layouts are copied once. bfloat16 tensors become a ``uint16`` view of their bits.
    """
    check_device(x, name)
    check_float(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [rows, dim] array, got {describe(x)}")
    if is_tensor(x):
        return tensor_view(x)
    return np.ascontiguousarray(x), False


def tensor_view(t: Any) -> tuple[np.ndarray, bool]:
    """A CPU tensor as a C-contiguous numpy view (one copy only if it is not contiguous), and
    whether it is bfloat16, which numpy lacks and which is passed as its ``uint16`` bits."""
    import torch

    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), True
    return t.numpy(), False


def to_numpy_1d(x: Any, name: str) -> np.ndarray:
    """A 1-D numpy view of an offsets/mask argument given as numpy, torch or a sequence."""
    if is_tensor(x):
        check_device(x, name)
        x = x.detach().numpy()
    a = np.asarray(x)
    return a


def as_offsets(obj: Any, name: str, rows: int) -> np.ndarray:
    """Validate packed offsets ``[n + 1]`` over ``rows`` token rows; returns C-contiguous int64.

    Offsets must be integers, start at 0, never decrease and end at ``rows`` (every packed row
    belongs to exactly one set).
    """
    a = to_numpy_1d(obj, name)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        if not (a.size == 0 and a.dtype == np.float64):  # an empty list
            raise TypeError(f"{name}: expected integer offsets, got {describe(a)}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D [n + 1] array, got {describe(a)}")
    if a.size == 0:
        raise ValueError(f"{name}: needs at least one entry (n + 1 offsets for n sets)")
    a = np.ascontiguousarray(a, dtype=np.int64)
    check_offsets(a, rows, name)
    return a


def check_offsets(a: np.ndarray, rows: int, name: str) -> None:
    """Offsets start at 0, never decrease, and end at ``rows``; ValueError naming ``name`` otherwise."""
    if a[0] != 0:
        raise ValueError(f"{name}: must start at 0, got {name}[0] = {a[0]}")
    step = np.diff(a)
    if step.size and step.min() < 0:
        i = int(np.argmax(step < 0))
        raise ValueError(
            f"{name}: must be non-decreasing, but {name}[{i}] = {a[i]} > {name}[{i + 1}] = {a[i + 1]}"
        )
    if a[-1] != rows:
        where = "past the end of" if a[-1] > rows else "short of"
        raise ValueError(f"{name}: last offset {a[-1]} is {where} the {rows} packed token rows")


def as_mask(obj: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous bool mask of ``shape`` (True = valid token). Integer 0/1 masks are accepted."""
    a = to_numpy_1d(obj, name)
    if a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}: expected a bool (or 0/1 integer) mask, got {describe(a)}")
        a = a != 0
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} to match the embeddings, got {a.shape}")
    return np.ascontiguousarray(a)


@dataclass
class Packed:
    """Token sets in the native layout (numpy) plus what the public API needs to shape results."""

    data: np.ndarray  # [rows, dim], C-contiguous
    bf16: bool
    offsets: np.ndarray  # [n + 1] int64
    mask: np.ndarray | None  # [rows] bool
    single: bool  # a lone [L, d] set: its axis is dropped from results

    @property
    def n(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def valid_counts(self) -> np.ndarray:
        """Valid tokens per set, ``[n]`` int64."""
        if self.mask is None:
            return np.diff(self.offsets)
        c = np.concatenate([[0], np.cumsum(self.mask, dtype=np.int64)])
        return c[self.offsets[1:]] - c[self.offsets[:-1]]


def check_layout(
    x: Any, mask: Any, offsets: Any, name: str, mask_name: str, offsets_name: str, allow_cuda: bool = False
) -> str:
    """Decide the layout of one side: ``"padded"`` ([N, L, d]), ``"single"`` ([L, d]) or ``"packed"``.

    Raises on combinations that cannot be meant (offsets with a 3-D array, wrong ndim).
    ``allow_cuda`` as in :func:`check_device`.
    """
    check_device(x, name, allow_cuda)
    check_float(x, name)
    if offsets is not None:
        if x.ndim != 2:
            raise ValueError(
                f"{name}: with {offsets_name} the tokens must be packed as [total_tokens, dim], got {describe(x)}"
            )
        return "packed"
    if x.ndim == 3:
        return "padded"
    if x.ndim == 2:
        return "single"
    raise ValueError(
        f"{name}: expected [N, L, dim] (padded), [L, dim] (one set) or [total_tokens, dim] with "
        f"{offsets_name} (packed), got {describe(x)}"
    )


def pack_numpy(
    x: np.ndarray, mask: Any, offsets: Any, name: str, mask_name: str, offsets_name: str
) -> Packed:
    """Packed native view of one side given as numpy (padded rows are a reshape: no copy)."""
    layout = check_layout(x, mask, offsets, name, mask_name, offsets_name)
    if layout == "padded":
        n, length, dim = x.shape
        data, bf16 = native_2d(np.ascontiguousarray(x).reshape(n * length, dim), name)
        offs = np.arange(0, n * length + 1, max(length, 1), dtype=np.int64)[: n + 1]
        if length == 0:
            offs = np.zeros(n + 1, dtype=np.int64)
        m = None if mask is None else as_mask(mask, mask_name, (n, length)).reshape(-1)
        return Packed(data, bf16, offs, m, single=False)
    data, bf16 = native_2d(x, name)
    rows = data.shape[0]
    if layout == "single":
        offs = np.array([0, rows], dtype=np.int64)
    else:
        offs = as_offsets(offsets, offsets_name, rows)
    m = None if mask is None else as_mask(mask, mask_name, (rows,))
    return Packed(data, bf16, offs, m, single=layout == "single")
