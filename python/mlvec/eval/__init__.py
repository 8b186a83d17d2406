"""Retrieval evaluation: ranking metrics and a benchmark runner.

- :func:`recall_at_k`, :func:`mrr_at_k`, :func:`ndcg_at_k`, :func:`evaluate` over a score matrix or
  ranked ids and relevance judgements (vectorised numpy; checked against ranx in the tests).
- :func:`run_benchmark` encodes a corpus and queries, searches with each retrieval method (exact
  single-vector; MaxSim late-interaction rerank of the top candidates), and reports quality and
  speed; :func:`format_table`, :func:`save_json` and :func:`plot` present the result.
"""

from mlvec.eval.metrics import evaluate, mrr_at_k, ndcg_at_k, ranked_ids, recall_at_k
from mlvec.eval.runner import (
    METHODS,
    BenchmarkResult,
    MethodResult,
    exact_search,
    format_table,
    maxsim_rerank,
    plot,
    run_benchmark,
    save_json,
)

__all__ = [
    "evaluate",
    "mrr_at_k",
    "ndcg_at_k",
    "ranked_ids",
    "recall_at_k",
    "METHODS",
    "BenchmarkResult",
    "MethodResult",
    "exact_search",
    "maxsim_rerank",
    "run_benchmark",
    "format_table",
    "save_json",
    "plot",
]
