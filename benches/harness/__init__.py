"""What every benchmark in ``benches/`` shares, one module per concern.

- :mod:`harness.timing` — medians of repeated calls, round-robin timing of several methods (with a
  cache-evicting hook), one query per call from Python threads, CUDA-event timing.
- :mod:`harness.truth` — exact fp64 nearest neighbours (ip / l2 / cosine) and recall@k.
- :mod:`harness.data` — the data sets: the Bible e5 embeddings and texts under ``../shared/data``,
  the bundled 3,000-verse set, and the clustered Gaussian mixture.
- :mod:`harness.memory` — resident and peak memory, memory read bandwidth, CUDA peak memory.
- :mod:`harness.peers` — one adapter per index library (mlvec, faiss, hnswlib, usearch): build,
  search a batch, search one query, bytes; and the measurement of one search setting.

The scripts import it as ``harness`` (``benches/`` is the script's folder, so it is on
``sys.path``); the tests put ``benches/`` on ``sys.path`` in ``tests/conftest.py``.
"""
