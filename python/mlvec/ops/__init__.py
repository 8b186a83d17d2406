"""torch custom ops (``torch.ops.mlvec.*``) over mlvec's native kernels, with autograd.

Importing this module imports torch and registers the ops. Most code should call the public
functions in :mod:`mlvec.scoring`, which accept padded or packed input and route torch tensors
through these ops. CUDA tensors dispatch to :mod:`mlvec.cuda`'s kernels
(:mod:`mlvec.ops.maxsim_cuda`), everything else to the Rust CPU kernels.
"""

from mlvec.ops import maxsim_cuda as _maxsim_cuda  # noqa: F401  (registers the CUDA kernels)
from mlvec.ops.maxsim import maxsim_bwd, maxsim_fwd

__all__ = ["maxsim_fwd", "maxsim_bwd"]
