"""Smoke test of an installed mlvec wheel (no source tree, no Rust): the native module loads and
its main paths agree with plain numpy. Run by scripts/check_wheel.sh in a fresh virtual env."""

import os
import sys
import tempfile

import numpy as np

import mlvec
import mlvec.index as mi

assert "site-packages" in mlvec.__file__, f"mlvec imported from {mlvec.__file__}, not the installed wheel"
rng = np.random.default_rng(0)

# MaxSim against the padded numpy formula.
q = rng.standard_normal((3, 5, 16)).astype(np.float32)
d = rng.standard_normal((7, 9, 16)).astype(np.float32)
want = np.einsum("qid,njd->qnij", q.astype(np.float64), d.astype(np.float64)).max(-1).sum(-1)
np.testing.assert_allclose(mlvec.maxsim(q, d), want, rtol=1e-5, atol=1e-4)

# An exact index against numpy brute force, saved and loaded back (memory-mapped).
x = rng.standard_normal((500, 16)).astype(np.float32)
ix = mi.index_factory(16, "Flat", metric="ip")
ix.add(x)
s, ids = ix.search(x[:10], 5)
want_ids = np.argsort(-(x[:10] @ x.T), axis=1, kind="stable")[:, :5]
np.testing.assert_array_equal(ids, want_ids)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "x.mlvec")
    ix.save(path)
    s2, ids2 = mi.load(path, mmap=True).search(x[:10], 5)
    np.testing.assert_array_equal(ids2, ids)

# Errors cross the boundary as Python exceptions.
try:
    ix.search(x[:1, :3], 1)
except ValueError:
    pass
else:
    raise AssertionError("a wrong dimension must raise ValueError")

print(f"mlvec {mlvec.__version__} wheel OK on Python {sys.version.split()[0]} ({', '.join(mlvec.cpu_features()[:4])}, ...)")
