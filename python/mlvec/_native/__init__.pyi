"""Type stubs of the compiled extension ``mlvec._native`` (checked against it in tests/core/test_stubs.py).

The top level holds what concerns the whole library; each domain is a submodule, importable as
``mlvec._native.<name>``: :mod:`maxsim`, :mod:`contrastive`, :mod:`cuda` and :mod:`index`.
"""

from . import contrastive as contrastive
from . import cuda as cuda
from . import index as index
from . import maxsim as maxsim

__version__: str

class MlvecError(Exception): ...
class FormatError(MlvecError): ...

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def cpu_features() -> list[str]: ...
