"""``mlvec info``: version, CPU features, threads, CUDA/NVRTC availability."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import sys

import mlvec


def nvrtc_status() -> tuple[bool, str]:
    """Whether an NVRTC library can be loaded here: ``(True, "NVRTC x.y (path)")`` or ``(False, reason)``."""
    candidates: list[str] = []
    for entry in sys.path:
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    candidates = [c for c in candidates if "builtins" not in c and "alt" not in os.path.basename(c)]
    if not candidates:
        return False, "no libnvrtc found (pip install nvidia-cuda-nvrtc)"
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            major, minor = ctypes.c_int(), ctypes.c_int()
            if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0:
                return True, f"NVRTC {major.value}.{minor.value} ({path})"
        except OSError:
            continue
    return False, f"libnvrtc found but not loadable: {candidates[0]}"


def run(args: argparse.Namespace) -> int:
    cuda_ok, cuda_why = mlvec.cuda_available()
    nvrtc_ok, nvrtc_what = nvrtc_status()
    info: dict[str, object] = {
        "mlvec": mlvec.__version__,
        "python": sys.version.split()[0],
        "cpu_features": mlvec.cpu_features(),
        "threads": mlvec.get_num_threads(),
        "cuda": cuda_ok,
        "cuda_detail": cuda_why or "usable",
        "nvrtc": nvrtc_ok,
        "nvrtc_detail": nvrtc_what,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        info["torch"] = None
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = " ".join(value) or "(none)"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"{key.ljust(width)}  {value}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="version, CPU features, threads, CUDA/NVRTC availability",
                       description="Print mlvec's version, the CPU features detected at run time, the thread "
                                   "count, and whether CUDA kernels and NVRTC are usable here.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


