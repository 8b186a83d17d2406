"""torch custom ops (``torch.ops.mlvec.*``) over mlvec's native kernels, with autograd.

Importing this module imports torch and registers the ops. Most code should call the public
functions in :mod:`mlvec.scoring`, which accept padded or packed input and route torch tensors
through these ops.
"""

from mlvec.ops.maxsim import maxsim_bwd, maxsim_fwd

__all__ = ["maxsim_fwd", "maxsim_bwd"]
