"""The CUDA kernels compile with NVRTC for sm_80 and sm_90 (no GPU needed) and the CUDA layer
fails clearly where it cannot run."""

import re
from pathlib import Path

import pytest

import mlvec
from mlvec import _cuda_locate, _native

KERNELS = Path(__file__).resolve().parents[2] / "cuda_kernels"
NVRTC = _cuda_locate.find_nvrtc()
needs_nvrtc = pytest.mark.skipif(
    NVRTC is None,
    reason="NVRTC not found: install torch's CUDA build or nvidia-cuda-nvrtc + nvidia-cuda-runtime",
)


def _declared_kernels() -> set[str]:
    """Kernel names read from the sources: `extern "C" __global__ ... name(` and the BWD/TILE macros."""
    names = set()
    for f in KERNELS.glob("*.cu"):
        text = f.read_text()
        names |= set(re.findall(r'extern "C" __global__ void(?: __launch_bounds__\(\w+\))?\s+(\w+)\(', text))
        names |= set(re.findall(r"^(?:BWD|TILE)_KERNEL\((\w+),", text, flags=re.M))
    names.discard("name")  # the macro definitions themselves
    return names


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_kernel_compiles(arch):
    import mlvec.cuda

    names = mlvec.cuda.compile_check(arch)
    assert set(names) == _declared_kernels()
    assert len(names) == len(set(names))
    for family in ("maxsim_fwd", "maxsim_fwd_cols", "maxsim_bwd_gather", "filip_fwd", "clip_grad", "siglip_bwd"):
        for suffix in ("f32", "f16", "bf16"):
            assert f"{family}_{suffix}" in names


@needs_nvrtc
def test_nvrtc_version_is_reported():
    import mlvec.cuda

    mlvec.cuda._configure()
    major, minor = _native.cuda.nvrtc_version()
    assert major >= 11 and minor >= 0


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_70", "compute_90", "90", ""])
def test_unsupported_arch_is_a_value_error(arch):
    import mlvec.cuda

    with pytest.raises(ValueError, match="arch"):
        mlvec.cuda.compile_check(arch)


def test_cuda_available_gives_a_reason_when_not():
    ok, why = mlvec.cuda_available()
    assert isinstance(ok, bool)
    if ok:
        assert why == ""
    else:
        assert why and ("driver" in why or "device" in why or "NVRTC" in why)


def test_native_launch_validates_before_touching_the_driver():
    # Paired scoring with unequal set counts is refused without any CUDA call.
    with pytest.raises(ValueError, match="paired"):
        _native.cuda.maxsim_forward("float32", 0, 0, (1, 1, 0, 2), (1, 1, 0, 3), 8, True, False, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="dtype"):
        _native.cuda.maxsim_forward("int8", 0, 0, (1, 1, 0, 2), (1, 1, 0, 2), 8, True, False, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="kind"):
        _native.cuda.maxsim_backward(
            "float32", 0, 0, "sideways", (1, 1, 0, 1), (1, 1, 0, 1), 8, True, False, 1, 1, 1, 1, 1, 1
        )
    with pytest.raises(ValueError, match="k"):
        _native.cuda.select_k(0, 0, 1, 0, 1, 10, 0, 1, 1)


def test_wrappers_refuse_cpu_tensors():
    torch = pytest.importorskip("torch")
    import mlvec.cuda

    q = torch.zeros(4, 8)
    off = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="CUDA tensor"):
        mlvec.cuda.maxsim_forward(q, off, None, q, off, None)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mlvec.cuda.clip_lse(q.numpy(), q, 1.0)
