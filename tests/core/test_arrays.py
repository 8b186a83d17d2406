"""The one array intake (mlvec._arrays): one offsets rule for numpy and torch, one device check,
views without copies, and mlvec.cuda's wrappers resolving from the modules that hold them."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import mlvec
from mlvec import _arrays

BAD_OFFSETS = {
    "not-from-0": ([1, 4, 9], r"^o: must start at 0, got o\[0\] = 1$"),
    "decreasing": ([0, 6, 3, 9], r"^o: must be non-decreasing, but o\[1\] = 6 > o\[2\] = 3$"),
    "past-end": ([0, 4, 12], r"^o: last offset 12 is past the end of the 9 packed token rows$"),
    "short": ([0, 4, 7], r"^o: last offset 7 is short of the 9 packed token rows$"),
}


def _offsets(values, kind):
    a = np.array(values, np.int64)
    return a if kind == "numpy" else torch.from_numpy(a)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("case", list(BAD_OFFSETS))
def test_one_offsets_rule_for_numpy_and_tensors(case, kind):
    values, match = BAD_OFFSETS[case]
    with pytest.raises(ValueError, match=match):
        _arrays.check_offsets(_offsets(values, kind), 9, "o")
    if kind == "torch":
        # The device-side statistics the CUDA op reads back in one go are judged the same way.
        first, last, low, high = _arrays.offsets_stats(_offsets(values, kind)).tolist()
        with pytest.raises(ValueError, match=match):
            _arrays.check_offsets_stats(first, last, low, 9, "o", _offsets(values, kind))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("values", [[0], [0, 0, 0], [0, 4, 4, 9], [0, 9]])
def test_valid_offsets_pass_and_give_the_longest_set(values, kind):
    rows, steps = values[-1], np.diff(values)
    low, high = (int(steps.min()), int(steps.max())) if steps.size else (0, 0)
    _arrays.check_offsets(_offsets(values, kind), rows, "o")
    assert _arrays.longest_set(_offsets(values, kind)) == high
    if kind == "torch":
        assert _arrays.offsets_stats(_offsets(values, kind)).tolist() == [0, rows, low, high]


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (np.array([0.0, 9.0]), TypeError, "o: expected integer offsets"),
        (np.array([False, True]), TypeError, "o: expected integer offsets"),
        (np.array([[0, 9]]), ValueError, "o: expected a 1-D"),
        (np.array([], np.int64), ValueError, "o: needs at least one entry"),
    ],
)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_offsets_form_is_checked_the_same_way(bad, exc, match, kind):
    with pytest.raises(exc, match=match):
        _arrays.check_offsets_form(bad if kind == "numpy" else torch.from_numpy(bad), "o")


def test_the_device_check():
    meta = torch.empty(3, device="meta")
    ok, why = mlvec.cuda_available()
    for accept in ("cpu", "cpu_or_cuda"):
        with pytest.raises(ValueError, match=r"^x: tensors on meta are not supported yet") as e:
            _arrays.check_device(meta, "x", accept)
        if not ok:
            assert why in str(e.value)
    _arrays.check_device(np.zeros(3), "x")
    _arrays.check_device(torch.zeros(3), "x", "cpu_or_cuda")
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got ndarray$"):
        _arrays.check_device(np.zeros(3), "x", "cuda")
    with pytest.raises(ValueError, match=r"^x: expected a CUDA tensor, got one on cpu$"):
        _arrays.check_device(torch.zeros(3), "x", "cuda")
    with pytest.raises(ValueError, match=r"^y: on meta, but the queries are on cpu; put both on one device$"):
        _arrays.check_same_device(meta, "y", torch.device("cpu"), "queries")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cpu_tensors_pack_without_copies(dtype):
    tokens = torch.randn(3, 5, 8).to(dtype)
    mask = torch.rand(3, 5) < 0.7
    p = _arrays.pack_numpy(tokens, mask, None, "t", "t_mask", "t_offsets")
    assert p.data.ctypes.data == tokens.data_ptr() and p.data.shape == (15, 8)
    assert p.bf16 == (dtype == torch.bfloat16)
    assert p.offsets.tolist() == [0, 5, 10, 15]
    np.testing.assert_array_equal(p.mask, mask.reshape(-1).numpy())
    np.testing.assert_array_equal(p.valid_counts(), mask.sum(1).numpy())


def test_padded_and_packed_tensor_sides_agree():
    x = torch.randn(4, 6, 8)
    mask = torch.rand(4, 6) < 0.6
    padded = _arrays.pack_torch(x, mask, None, "d", "d_mask", "d_offsets")
    packed = _arrays.pack_torch(
        x.reshape(24, 8), mask.reshape(-1), torch.arange(0, 25, 6), "d", "d_mask", "d_offsets"
    )
    assert torch.equal(padded.offsets, packed.offsets) and torch.equal(padded.mask, packed.mask)
    assert torch.equal(padded.valid_counts(), packed.valid_counts())
    assert padded.longest == packed.longest == 6 and padded.n == packed.n == 4
    # A 0/1 integer mask is the bool mask.
    as_int = _arrays.pack_torch(x, mask.to(torch.int32), None, "d", "d_mask", "d_offsets")
    assert torch.equal(as_int.mask, padded.mask)


def test_numpy_view_shares_memory_or_refuses():
    t = torch.zeros(4, 3)
    _arrays.numpy_view(t)[1, 2] = 5.0
    assert t[1, 2] == 5.0
    with pytest.raises(ValueError, match="contiguous"):
        _arrays.numpy_view(t.T)


def test_as_native_converts_once():
    g = torch.arange(6, dtype=torch.float32)
    assert np.shares_memory(_arrays.as_native(g, np.float32), g.numpy())
    np.testing.assert_array_equal(_arrays.as_native(g.to(torch.bfloat16), np.float32), g.numpy())
    arg = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    out = _arrays.as_native(arg[:, :2], np.int32)
    assert out.flags.c_contiguous and out.tolist() == arg[:, :2].tolist()


def test_bf16_bits_round_trip():
    x = np.array([1.0, -2.5, 3.1415926, np.inf, 1e-40], np.float32)
    bits = _arrays.float32_to_bf16_bits(x)
    want = torch.from_numpy(x).to(torch.bfloat16)
    assert bits.tolist() == want.view(torch.int16).numpy().view(np.uint16).tolist()
    np.testing.assert_array_equal(_arrays.bf16_bits_to_float32(bits), want.float().numpy())


def test_cuda_wrappers_resolve_from_their_domain_modules():
    import mlvec.cuda

    homes = {
        "maxsim_forward": "mlvec.ops.maxsim_cuda",
        "clip_lse": "mlvec.losses.cuda_tiles",
        "topk_smallest": "mlvec.index.cuda_scan",
    }
    for name in mlvec.cuda.__all__:
        fn = getattr(mlvec.cuda, name)
        assert callable(fn) and fn.__doc__, name
        if name in homes:
            assert fn.__module__ == homes[name]
    with pytest.raises(AttributeError):
        mlvec.cuda.not_a_wrapper  # noqa: B018


def test_cuda_configuration_does_not_import_torch():
    code = "import sys, mlvec.cuda as mc; mc.available(); mc.limits(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
