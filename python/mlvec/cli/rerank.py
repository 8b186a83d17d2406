"""``mlvec rerank``: order each query's candidate texts by late-interaction MaxSim."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import mlvec
from mlvec.cli._common import (
    CliError,
    add_encoder_args,
    check_output,
    load_encoder_from_args,
    read_lines,
    write_atomically,
)


def _read_requests(path: str) -> list[tuple[str, list[tuple[Any, str]]]]:
    """``[(query, [(candidate id or None, text), ...]), ...]`` from the JSONL input."""
    if Path(path).suffix.lower() != ".jsonl":
        raise CliError(f"input: expected a .jsonl file of {{\"query\": ..., \"candidates\": [...]}}, got '{Path(path).name}'")
    out = []
    for lineno, line in enumerate(read_lines(path, "input"), 1):
        if not line.strip():
            continue
        where = f"input: {path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CliError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), str) or not isinstance(obj.get("candidates"), list):
            raise CliError(f'{where}: expected {{"query": "...", "candidates": ["...", ...]}}')
        cands = []
        for j, c in enumerate(obj["candidates"]):
            if isinstance(c, str):
                cands.append((None, c))
            elif isinstance(c, dict) and isinstance(c.get("text"), str):
                cands.append((c.get("id"), c["text"]))
            else:
                raise CliError(f'{where}: candidate {j} must be a string or {{"id": ..., "text": "..."}}')
        out.append((obj["query"], cands))
    if not out:
        raise CliError(f"input: {path} holds no queries")
    return out


def run(args: argparse.Namespace) -> int:
    import numpy as np

    if args.k is not None and args.k < 1:
        raise CliError(f"-k must be >= 1, got {args.k}")
    out = check_output(args.output, "--output", (".jsonl",)) if args.output else None
    requests = _read_requests(args.input)
    enc = load_encoder_from_args(args)
    show = False if args.quiet else None
    q_tokens = enc.encode_tokens([q for q, _ in requests], is_query=True, batch_size=args.batch_size,
                                 show_progress=show)
    texts = [t for _, cands in requests for _, t in cands]
    d_tokens = enc.encode_tokens(texts, batch_size=args.batch_size, show_progress=show)
    results = []
    start = 0
    for i, (query, cands) in enumerate(requests):
        sel = d_tokens.select(np.arange(start, start + len(cands)))
        start += len(cands)
        scores = (mlvec.maxsim(q_tokens[i], sel.data, document_offsets=sel.offsets) if len(cands)
                  else np.zeros(0, np.float32))  # fmt: skip
        order = np.argsort(-scores, kind="stable")[: args.k]
        ranked = [{"rank": r + 1, **({"id": cands[j][0]} if cands[j][0] is not None else {}),
                   "score": float(scores[j]), "text": cands[j][1]} for r, j in enumerate(order)]  # fmt: skip
        results.append({"query": query, "results": ranked})
    if out is not None:
        write_atomically(out, lambda tmp: tmp.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8"))
    else:
        for r in results:
            print(f"query: {r['query']}")
            for hit in r["results"]:
                ident = f"{hit['id']} " if "id" in hit else ""
                print(f"  {hit['rank']:>3}. {ident}{hit['score']:>8.4f}  {hit['text'][:100]}")
    if not args.quiet:
        print(f"reranked {len(texts)} candidates of {len(requests)} queries", file=sys.stderr)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerank", help="order candidate texts of each query by late-interaction MaxSim",
        description="Read INPUT (.jsonl, one query per line: {\"query\": \"...\", \"candidates\": [\"...\" or "
                    "{\"id\": ..., \"text\": \"...\"}, ...]}), embed queries and candidates as token sets "
                    "(ColBERT-style late interaction) and order each query's candidates by MaxSim score. "
                    "Prints the ranking, or writes JSONL with --output ({\"query\", \"results\": [{\"rank\", "
                    "\"id\", \"score\", \"text\"}]}).",
        epilog="example: mlvec rerank bm25_top100.jsonl -k 10 -o reranked.jsonl",
    )
    p.add_argument("input", help="JSONL of queries with their candidate texts")
    p.add_argument("-o", "--output", help="write the rankings as JSONL instead of printing")
    p.add_argument("-k", type=int, default=None, help="keep the best K candidates per query (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    add_encoder_args(p)
    p.set_defaults(func=run)
