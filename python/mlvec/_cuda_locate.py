"""Find NVRTC and the CUDA headers that pip's nvidia wheels install (no torch, no mlvec import).

CUDA 13 wheels put everything under ``site-packages/nvidia/cu13/{lib,include}``; CUDA 12 wheels
use ``nvidia/cuda_nvrtc/lib`` and ``nvidia/cuda_runtime/include``. Run as a script it prints
``MLVEC_NVRTC_PATH=...`` and ``MLVEC_CUDA_INCLUDE=...`` lines for shells (scripts/test.sh).
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig


def _nvidia_roots() -> list[str]:
    roots = []
    seen = set()
    for base in [*sys.path, sysconfig.get_paths().get("purelib", ""), sysconfig.get_paths().get("platlib", "")]:
        if not base:
            continue
        root = os.path.join(os.path.abspath(base), "nvidia")
        if os.path.isdir(root) and root not in seen:
            seen.add(root)
            roots.append(root)
    return roots


def find_nvrtc() -> str | None:
    """Path of ``libnvrtc.so.<major>`` from the nvidia wheels (newest major first), or None."""
    env = os.environ.get("MLVEC_NVRTC_PATH")
    if env and os.path.isfile(env):
        return env
    found = []
    for root in _nvidia_roots():
        for pattern in ("cu*/lib/libnvrtc.so.*", "cuda_nvrtc/lib/libnvrtc.so.*"):
            for path in glob.glob(os.path.join(root, pattern)):
                name = os.path.basename(path)
                suffix = name[len("libnvrtc.so.") :]
                if suffix.isdigit():  # the SONAME file, not libnvrtc-builtins or alt names
                    found.append((int(suffix), path))
    if not found:
        return None
    return max(found)[1]


def find_include_dirs(nvrtc_path: str | None = None) -> list[str]:
    """Folders holding ``cuda_fp16.h`` / ``cuda_bf16.h``; the one matching NVRTC's wheel first."""
    env = os.environ.get("MLVEC_CUDA_INCLUDE")
    if env:
        return [d for d in env.split(os.pathsep) if d]
    dirs = []
    if nvrtc_path:
        sibling = os.path.join(os.path.dirname(os.path.dirname(nvrtc_path)), "include")
        if os.path.isfile(os.path.join(sibling, "cuda_fp16.h")):
            dirs.append(sibling)
    for root in _nvidia_roots():
        for pattern in ("cu*/include", "cuda_runtime/include"):
            for d in sorted(glob.glob(os.path.join(root, pattern)), reverse=True):
                if os.path.isfile(os.path.join(d, "cuda_fp16.h")) and d not in dirs:
                    dirs.append(d)
    return dirs[:1]


if __name__ == "__main__":
    nvrtc = find_nvrtc()
    if nvrtc:
        print(f"MLVEC_NVRTC_PATH={nvrtc}")
        print(f"MLVEC_CUDA_INCLUDE={os.pathsep.join(find_include_dirs(nvrtc))}")
