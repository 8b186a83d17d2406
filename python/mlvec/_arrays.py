"""The one array intake: user arrays turned into the form the native layer reads, and checked.

Every API that takes arrays (scoring, the MaxSim ops, the index, the losses' native tiles and
the CUDA wrappers) converts and validates them here, so that a rule (which devices and dtypes are
accepted, what valid offsets are) and its error message exist once.

The native kernels read token sets *packed*: a C-contiguous ``[rows, dim]`` buffer, ``int64``
offsets ``[n + 1]`` and an optional ``bool`` row mask ``[rows]``. numpy arrays and CPU torch
tensors reach the Rust layer as numpy views, without copying when the layout already fits;
bfloat16, which numpy lacks, travels as its ``uint16`` bits with a flag. CUDA tensors stay
tensors: the CUDA wrappers hand their device pointers to the kernels.

**Offsets** (one rule for every path): integers, at least one entry, starting at 0, never
decreasing and ending at the number of packed rows, so every row belongs to exactly one set.
Where they are checked: the numpy API checks them here before calling Rust; torch tensors are
checked inside the ``mlvec::maxsim_*`` ops (CPU and CUDA kernels), which run on real data, so a
traced graph never branches on offset values; the CUDA wrappers check them unless the caller
vouches for them with ``max_lens``.

torch is never imported here at module level: a tensor is recognised through ``sys.modules``,
so numpy-only callers do not pay for importing torch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))
_SUPPORTED = "float32, float16 or bfloat16"

# --- recognising inputs ---------------------------------------------------------------------


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


def as_tensor(x: Any) -> Any:
    """``x`` as a torch tensor; numpy arrays and sequences are wrapped, sharing memory where possible."""
    import torch

    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def follow_input_type(result: np.ndarray, *inputs: Any) -> Any:
    """Output type follows input type: ``result`` as a CPU torch tensor (sharing its memory) when
    any of ``inputs`` is a torch tensor, else unchanged."""
    if any(is_tensor(x) for x in inputs):
        import torch

        return torch.from_numpy(result)
    return result


# --- devices --------------------------------------------------------------------------------

Accept = Literal["cpu", "cpu_or_cuda", "cuda"]


def check_device(x: Any, name: str, accept: Accept = "cpu") -> None:
    """The device check of every API: raise unless ``x`` may be used where it is.

    ``accept="cpu"``: numpy arrays and CPU tensors only (APIs without CUDA kernels).
    ``accept="cpu_or_cuda"``: CUDA tensors too, when ``mlvec.cuda_available()`` says the kernels
    can run; otherwise its reason is in the message. ``accept="cuda"``: a CUDA torch tensor
    (the CUDA wrappers).
    """
    if accept == "cuda":
        if not is_tensor(x):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.device.type != "cuda":
            raise ValueError(f"{name}: expected a CUDA tensor, got one on {x.device}")
    elif is_tensor(x) and x.device.type != "cpu":
        from mlvec import cuda_available

        ok, why = cuda_available()
        if not (ok and accept == "cpu_or_cuda" and x.device.type == "cuda"):
            if not ok:
                status = why
            elif accept == "cpu_or_cuda":
                status = f"CUDA kernels are available, but tensors on {x.device} are not"
            else:
                status = "CUDA kernels are available but not wired to this API yet"
            raise ValueError(
                f"{name}: tensors on {x.device} are not supported yet, only CPU tensors and numpy arrays "
                f"(mlvec.cuda_available(): {status}); move them with .cpu()"
            )


def check_same_device(x: Any, name: str, device: Any, other: str = "other inputs") -> None:
    """Operands must share a device: ``x`` (a tensor) on ``device``, where ``other`` are."""
    if x.device != device:
        raise ValueError(f"{name}: on {x.device}, but the {other} are on {device}; put both on one device")


def cuda_tensor(t: Any, name: str, device: Any = None) -> Any:
    """A CUDA tensor argument of the CUDA wrappers (on ``device`` when given), C-contiguous
    (copied once if it is not)."""
    check_device(t, name, "cuda")
    if device is not None:
        check_same_device(t, name, device)
    return t.contiguous()


def device_ptr(t: Any) -> int:
    """A tensor's device address for the native launches; 0 for an absent optional tensor."""
    return 0 if t is None else t.data_ptr()


# --- element types --------------------------------------------------------------------------


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


def _is_integer(a: Any) -> bool:
    if is_tensor(a):
        return not (a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == sys.modules["torch"].bool)
    return a.dtype != np.bool_ and np.issubdtype(a.dtype, np.integer)


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


# --- numpy views for the native CPU kernels -------------------------------------------------


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


def numpy_view(t: Any) -> np.ndarray:
    """A contiguous CPU tensor's memory as a numpy array, never a copy: kernels may write into
    it in place (a copy would silently lose their writes, so a non-contiguous tensor is an error)."""
    if not t.is_contiguous():
        raise ValueError(f"expected a contiguous tensor to write into, got {describe(t)}")
    return t.detach().numpy()


def as_native(t: Any, dtype: Any) -> np.ndarray:
    """A CPU tensor's values as a C-contiguous numpy array of ``dtype`` (gradients, argmax
    positions): a view when they already are one, converted otherwise (bfloat16 included)."""
    t = t.detach()
    if t.dtype == sys.modules["torch"].bfloat16:
        t = t.float()
    return np.ascontiguousarray(t.numpy(), dtype=dtype)


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


def to_numpy_1d(x: Any, name: str) -> np.ndarray:
    """A numpy view of an offsets/mask/ids argument given as numpy, a CPU tensor or a sequence."""
    if is_tensor(x):
        check_device(x, name)
        x = x.detach().numpy()
    return np.asarray(x)


# --- offsets: one rule ------------------------------------------------------------------------


def check_offsets_form(a: Any, name: str) -> None:
    """Offsets are a non-empty 1-D integer array or tensor (values are :func:`check_offsets`'s)."""
    if not _is_integer(a):
        if not (not is_tensor(a) and a.size == 0 and a.dtype == np.float64):  # an empty list
            raise TypeError(f"{name}: expected integer offsets, got {describe(a)}")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D [n + 1] array, got {describe(a)}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: needs at least one entry (n + 1 offsets for n sets)")


def offsets_stats(offsets: Any) -> Any:
    """``[first, last, smallest step, largest step]`` of 1-D offsets given as a tensor, computed on
    its device without synchronising (read them back together with other checks, then judge them
    with :func:`check_offsets_stats`)."""
    torch = sys.modules["torch"]
    steps = offsets[1:] - offsets[:-1]
    zero = offsets.new_zeros(())
    low, high = (steps.min(), steps.max()) if steps.numel() else (zero, zero)
    return torch.stack([offsets[0], offsets[-1], low, high])


def check_offsets_stats(first: int, last: int, low: int, rows: int, name: str, offsets: Any) -> None:
    """The offsets rule, judged on the first and last offset and the smallest step: start at 0,
    never decrease, end at ``rows``. Raises ValueError naming ``name`` (``offsets`` is read again
    only to say where a step goes back)."""
    if first != 0:
        raise ValueError(f"{name}: must start at 0, got {name}[0] = {first}")
    if low < 0:
        a = np.asarray(offsets.cpu() if is_tensor(offsets) else offsets)
        i = int(np.argmax(np.diff(a) < 0))
        raise ValueError(
            f"{name}: must be non-decreasing, but {name}[{i}] = {a[i]} > {name}[{i + 1}] = {a[i + 1]}"
        )
    if last != rows:
        where = "past the end of" if last > rows else "short of"
        raise ValueError(f"{name}: last offset {last} is {where} the {rows} packed token rows")


def check_offsets(offsets: Any, rows: int, name: str) -> None:
    """Check 1-D integer offsets (numpy, or a tensor on any device: one host read) against the rule."""
    if is_tensor(offsets):
        first, last, low, _ = offsets_stats(offsets).tolist()
    else:
        steps = np.diff(offsets)
        first, last, low = offsets[0], offsets[-1], steps.min() if steps.size else 0
    check_offsets_stats(first, last, low, rows, name, offsets)


def longest_set(offsets: Any) -> int:
    """Rows of the longest set (0 without sets); one host read for a tensor. Assumes valid offsets."""
    if offsets.shape[0] < 2:
        return 0
    return max(int((offsets[1:] - offsets[:-1]).max()), 0)


def as_offsets(obj: Any, name: str, rows: int) -> np.ndarray:
    """Packed offsets ``[n + 1]`` over ``rows`` token rows, checked, as C-contiguous int64 numpy."""
    a = to_numpy_1d(obj, name)
    check_offsets_form(a, name)
    a = np.ascontiguousarray(a, dtype=np.int64)
    check_offsets(a, rows, name)
    return a


def tensor_offsets(obj: Any, name: str, device: Any) -> Any:
    """Packed offsets as an int64 tensor on ``device`` (moved there if given elsewhere); their
    values are checked where they are used (see the module docstring)."""
    import torch

    offs = as_tensor(obj)
    if offs.device != device:
        check_device(offs, name, "cpu_or_cuda")
        offs = offs.to(device)
    check_offsets_form(offs, name)
    return offs.to(torch.int64)


def padded_offsets(n: int, length: int, device: Any = None) -> Any:
    """Offsets ``[0, L, 2L, ..., nL]`` of ``n`` padded sets of ``length`` rows: numpy int64, or an
    int64 tensor on ``device`` when one is given."""
    if device is not None:
        torch = sys.modules["torch"]
        return torch.arange(n + 1, dtype=torch.int64, device=device) * length
    if length == 0:
        return np.zeros(n + 1, dtype=np.int64)
    return np.arange(0, n * length + 1, length, dtype=np.int64)


# --- masks ------------------------------------------------------------------------------------


def _mask_error(name: str, shape: tuple[int, ...], got: tuple[int, ...]) -> ValueError:
    return ValueError(f"{name}: expected shape {tuple(shape)} to match the embeddings, got {tuple(got)}")


def as_mask(obj: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous numpy bool mask of ``shape`` (True = valid token). 0/1 integer masks are accepted."""
    a = to_numpy_1d(obj, name)
    if a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}: expected a bool (or 0/1 integer) mask, got {describe(a)}")
        a = a != 0
    if a.shape != tuple(shape):
        raise _mask_error(name, shape, a.shape)
    return np.ascontiguousarray(a)


def tensor_mask(obj: Any, name: str, shape: tuple[int, ...], device: Any) -> Any:
    """A bool mask tensor of ``shape`` on ``device``, flattened to ``[rows]``. Masks follow their
    embeddings (a small copy), so a CPU mask may go with CUDA tokens."""
    import torch

    m = as_tensor(obj)
    if m.device != device:
        check_device(m, name, "cpu_or_cuda")
        m = m.to(device)
    if m.dtype != torch.bool:
        if not _is_integer(m):
            raise TypeError(f"{name}: expected a bool (or 0/1 integer) mask, got {describe(m)}")
        m = m != 0
    if tuple(m.shape) != tuple(shape):
        raise _mask_error(name, shape, m.shape)
    return m.reshape(-1)


# --- packed token sets --------------------------------------------------------------------------


@dataclass
class Packed:
    """One side's token sets in the packed layout, plus what the public API needs to shape results.

    From :func:`pack_numpy`: numpy views for the native layer (``bf16`` says whether ``data`` holds
    bfloat16 bits). From :func:`pack_torch`: tensors (``data`` keeps the caller's autograd graph)
    and ``longest``, the static width of the argmax outputs.
    """

    data: Any  # [rows, dim]
    offsets: Any  # [n + 1] int64
    mask: Any  # [rows] bool or None
    single: bool  # a lone [L, d] set: its axis is dropped from results
    bf16: bool = False
    longest: int = 0

    @property
    def n(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.data.shape[1]

    def valid_counts(self) -> Any:
        """Valid tokens per set, ``[n]`` int64 (numpy or torch like the offsets)."""
        o = self.offsets
        if self.mask is None:
            return o[1:] - o[:-1]
        if is_tensor(self.mask):
            torch = sys.modules["torch"]
            c = torch.nn.functional.pad(torch.cumsum(self.mask, 0, dtype=torch.int64), (1, 0))
        else:
            c = np.concatenate([[0], np.cumsum(self.mask, dtype=np.int64)])
        return c[o[1:]] - c[o[:-1]]


def as_token_sets(x: Any, offsets: Any, mask: Any, name: str, mask_name: str, offsets_name: str) -> tuple[Any, Any]:
    """``(x, offsets)`` in a layout :func:`check_layout` knows: a ``TokenEmbeddings`` (packed rows
    and offsets, as the encoders return) and a list of per-set ``[L_i, dim]`` arrays or tensors
    (PyLate's format; concatenated once, gradients kept) become packed rows + offsets; anything
    else passes through unchanged."""
    is_sets = hasattr(x, "data") and hasattr(x, "offsets") and not (is_tensor(x) or isinstance(x, np.ndarray))
    if not is_sets and not isinstance(x, (list, tuple)):
        return x, offsets
    if offsets is not None:
        raise ValueError(f"{offsets_name}: {name} ({type(x).__name__}) carries its own set boundaries; drop {offsets_name}")
    if is_sets:
        return x.data, x.offsets
    if mask is not None:
        raise ValueError(f"{mask_name}: a list of token sets holds only valid tokens; drop {mask_name}")
    if not x:
        raise ValueError(f"{name}: an empty list of token sets")
    torch_items = [is_tensor(s) for s in x]
    for i, s in enumerate(x):
        if not (is_tensor(s) or isinstance(s, np.ndarray)):
            raise TypeError(
                f"{name}: expected a numpy array or a torch tensor, got list of {type(s).__name__} (a list "
                "holds one [tokens, dim] array or tensor per set)"
            )
        if s.ndim != 2:
            raise TypeError(f"{name}[{i}]: expected a 2-D [tokens, dim] numpy array or tensor, got {describe(s)}")
        if torch_items[i] != torch_items[0] or s.shape[1] != x[0].shape[1] or s.dtype != x[0].dtype:
            raise ValueError(f"{name}[{i}]: {describe(s)} does not match {name}[0]: {describe(x[0])}")
    lengths = [s.shape[0] for s in x]
    offs = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offs[1:])
    if torch_items[0]:
        torch = sys.modules["torch"]
        return torch.cat(list(x)), torch.from_numpy(offs).to(x[0].device)
    return np.concatenate(x), offs


def check_layout(x: Any, offsets: Any, name: str, offsets_name: str, accept: Accept = "cpu") -> str:
    """Decide the layout of one side: ``"padded"`` ([N, L, d]), ``"single"`` ([L, d]) or ``"packed"``.

    Raises on combinations that cannot be meant (offsets with a 3-D array, wrong ndim).
    ``accept`` as in :func:`check_device`.
    """
    check_device(x, name, accept)
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


def pack_numpy(x: Any, mask: Any, offsets: Any, name: str, mask_name: str, offsets_name: str) -> Packed:
    """Packed numpy views of one side given as a numpy array or a CPU tensor, offsets checked
    (padded rows are a reshape: no copy)."""
    layout = check_layout(x, offsets, name, offsets_name)
    if layout == "padded":
        n, length, dim = x.shape
        data, bf16 = native_2d(x.reshape(n * length, dim), name)
        m = None if mask is None else as_mask(mask, mask_name, (n, length)).reshape(-1)
        return Packed(data, padded_offsets(n, length), m, False, bf16)
    data, bf16 = native_2d(x, name)
    rows = data.shape[0]
    if layout == "single":
        offs = np.array([0, rows], dtype=np.int64)
    else:
        offs = as_offsets(offsets, offsets_name, rows)
    m = None if mask is None else as_mask(mask, mask_name, (rows,))
    return Packed(data, offs, m, layout == "single", bf16)


def pack_torch(x: Any, mask: Any, offsets: Any, name: str, mask_name: str, offsets_name: str) -> Packed:
    """Packed tensors of one side given as a torch tensor (CPU, or CUDA when the kernels can run),
    masks and offsets moved to its device. Offset values are checked by the ops; the longest set
    is read back once (it sizes the argmax outputs)."""
    layout = check_layout(x, offsets, name, offsets_name, "cpu_or_cuda")
    dev = x.device
    if layout == "padded":
        n, length, dim = x.shape
        m = None if mask is None else tensor_mask(mask, mask_name, (n, length), dev)
        return Packed(x.reshape(n * length, dim), padded_offsets(n, length, dev), m, False, longest=length)
    rows = x.shape[0]
    m = None if mask is None else tensor_mask(mask, mask_name, (rows,), dev)
    if layout == "single":
        return Packed(x, padded_offsets(1, rows, dev), m, True, longest=rows)
    offs = tensor_offsets(offsets, offsets_name, dev)
    return Packed(x, offs, m, False, longest=longest_set(offs))


def native_sets(
    x: Any, offsets: Any, mask: Any, offsets_name: str
) -> tuple[np.ndarray, bool, np.ndarray, Any]:
    """Packed CPU tensors (inside the ops) as numpy views for the native kernels, offsets checked:
    ``(rows, bf16, offsets, mask or None)``."""
    data, bf16 = tensor_view(x)
    offs = np.ascontiguousarray(offsets.detach().numpy(), dtype=np.int64)
    check_offsets(offs, data.shape[0], offsets_name)
    m = None if mask is None else np.ascontiguousarray(mask.detach().numpy())
    return data, bf16, offs, m


class DeviceSets(NamedTuple):
    """One packed token-set argument of the CUDA wrappers, checked (see :func:`cuda_sets`)."""

    data: Any  # [rows, dim] CUDA tensor, C-contiguous
    offsets: Any  # [n + 1] int64 on the same device
    mask: Any  # [rows] bool on the same device, or None
    n: int
    longest: int  # rows of the longest set

    def native_arg(self) -> tuple[int, int, int, int]:
        """``(data, offsets, mask or 0, n)``: the token-set argument of the native launches."""
        return (self.data.data_ptr(), self.offsets.data_ptr(), device_ptr(self.mask), self.n)


def cuda_sets(
    data: Any, offsets: Any, mask: Any, name: str, device: Any = None, max_len: int | None = None
) -> DeviceSets:
    """One packed token-set argument of the CUDA wrappers: embeddings a CUDA tensor (on
    ``device`` when given); offsets and mask moved there if they are elsewhere.

    Without ``max_len`` the offsets are read back once (a device synchronisation) to check them
    and find the longest set; with it the caller vouches for both.
    """
    data = cuda_tensor(data, name, device)
    if data.dim() != 2:
        raise ValueError(f"{name}: expected [rows, dim] embeddings, got shape {tuple(data.shape)}")
    rows = data.shape[0]
    offsets = tensor_offsets(offsets, f"{name} offsets", data.device).contiguous()
    if mask is not None:
        mask = tensor_mask(mask, f"{name} mask", (rows,), data.device).contiguous()
    if max_len is None:
        first, last, low, high = offsets_stats(offsets).tolist()
        check_offsets_stats(first, last, low, rows, f"{name} offsets", offsets)
        max_len = high
    return DeviceSets(data, offsets, mask, offsets.shape[0] - 1, int(max_len))


# --- the index API ------------------------------------------------------------------------------


def as_matrix(x: Any, arg: str, *, bf16: bool = False) -> tuple[np.ndarray, bool]:
    """``x`` as a C-contiguous 2-D float32/float16 array, or bfloat16 bits with ``True``.

    Accepts numpy arrays and CPU torch tensors (float32, float16, bfloat16; float64 is narrowed
    to float32). A 1-D input is one row. ``bf16=True`` marks a ``uint16`` numpy array as
    bfloat16 bits.
    """
    if is_tensor(x):
        import torch

        check_device(x, arg)
        if x.dtype == torch.float64:
            x = x.to(torch.float32)
        check_float(x, arg)
        x, bf16 = tensor_view(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{arg}: expected a numpy array or a torch tensor, got {type(x).__name__}")
    if bf16:
        if x.dtype != np.uint16:
            raise TypeError(f"{arg}: bf16=True needs uint16 bits, got dtype {x.dtype}")
    elif x.dtype == np.float64:
        x = x.astype(np.float32)
    elif x.dtype not in _NUMPY_FLOATS:
        raise TypeError(f"{arg}: expected float32, float16 or bfloat16 values, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array [n, dim], got shape {x.shape}")
    return np.ascontiguousarray(x), bf16


def as_ids(ids: Any, arg: str) -> np.ndarray:
    """``ids`` as a contiguous 1-D int64 array (lists, numpy or torch integer arrays; ids are
    small, so a tensor on any device is copied to the host)."""
    a = to_numpy_1d(ids.detach().cpu() if is_tensor(ids) else ids, arg)
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not _is_integer(a):
        raise TypeError(f"{arg}: expected integer ids, got dtype {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{arg}: expected a 1-D array of ids, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)


def as_allow_mask(mask: Any, arg: str) -> np.ndarray:
    """An allow-list given as a bool array indexed by id, as a contiguous 1-D numpy bool array."""
    a = np.ascontiguousarray(to_numpy_1d(mask, arg))
    if a.dtype != np.bool_ or a.ndim != 1:
        raise TypeError(f"{arg}: expected a 1-D bool array, got {a.dtype} {a.shape}")
    return a
