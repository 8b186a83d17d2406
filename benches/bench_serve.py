"""Load test of ``mlvec serve``: HTTP searches against in-process searches on the same index.

On loopback only, with bounded request loops that stop by themselves. It builds an index over
100k x 384 e5-like vectors (every Bible verse of ``../shared/data/bible_e5_passage.npz``,
English and Spanish, embedded with multilingual-e5-small, topped up with mixtures of two verses;
random clustered vectors if that file is missing), checks its recall@10 against exact search,
imports it into a service data folder, then for each ASGI server (uvicorn, granian) and
micro-batching on/off sends single-query searches at concurrency 1, 8 and 32 from an async
client and reports queries/s, p50/p95/p99 latency and errors, beside the in-process rate of the
same index searched from threads (one query per call). With ``--text`` it also measures text
queries (encoded by the server's e5) against the encoder's own rate.

The server and the load generator are pinned to different CPUs (``taskset``) where there are
at least two; the in-process rate is measured on the server's CPUs.

    python benches/bench_serve.py                     # the table of docs/serve.md
    python benches/bench_serve.py --quick             # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
E5_DATA = ROOT.parent / "shared" / "data" / "bible_e5_passage.npz"


# --------------------------------------------------------------------------- data and index
def e5_like(n: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(base [n, 384], queries [nq, 384], source)``, L2-normalised float32."""
    rng = np.random.default_rng(seed)
    if E5_DATA.is_file():
        z = np.load(E5_DATA)
        real = np.concatenate([z["en_web"], z["es_rv1909"]]).astype(np.float32)
        real /= np.maximum(np.linalg.norm(real, axis=1, keepdims=True), 1e-12)
        order = rng.permutation(len(real))
        queries, pool = real[order[:nq]], real[order[nq:]]
        extra = max(0, n - len(pool))
        a, b = rng.integers(0, len(pool), extra), rng.integers(0, len(pool), extra)
        w = rng.uniform(0.3, 0.7, (extra, 1)).astype(np.float32)
        mixed = w * pool[a] + (1 - w) * pool[b] + 0.02 * rng.standard_normal((extra, pool.shape[1])).astype(np.float32)
        base = np.concatenate([pool, mixed])[:n]
        source = f"{E5_DATA.name}: {min(n, len(pool)):,} e5 verse vectors + {extra:,} two-verse mixtures"
    else:
        dim = 384
        centers = rng.standard_normal((max(16, n // 100), dim)).astype(np.float32)
        base = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
        queries = centers[rng.integers(0, len(centers), nq)] + 0.7 * rng.standard_normal((nq, dim)).astype(np.float32)
        source = "random clustered vectors (the shared e5 embeddings are missing)"
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return np.ascontiguousarray(base, np.float32), np.ascontiguousarray(queries, np.float32), source


def build(base: np.ndarray, factory: str, seed: int):
    from mlvec.index import index_factory

    index = index_factory(base.shape[1], factory, metric="ip", seed=seed)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        index.train(base[rng.choice(len(base), min(len(base), 50_000), replace=False)])
    index.add(base)
    return index


def recall_at_10(index, base, queries, params) -> float:
    exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    _, got = index.search(queries, 10, **params)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact, strict=True)]))


# --------------------------------------------------------------------------- in-process rate
def in_process_rate(index, queries, params, threads: int, seconds: float) -> float:
    """Single-query searches per second from ``threads`` Python threads (the GIL is released)."""
    stop = time.perf_counter() + seconds
    done = [0] * threads

    def loop(t: int) -> None:
        i = t
        while time.perf_counter() < stop:
            index.search(queries[i % len(queries)], 10, **params)
            i += threads
            done[t] += 1

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return sum(done) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    return (["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []) + cmd


class Server:
    def __init__(self, data: Path, server: str, micro_batch: bool, cpus: str | None, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mlvec", "serve", "--data", str(data), "--port", str(self.port),
               "--server", server, "--log-level", "warning", *extra]
        if not micro_batch:
            cmd.append("--no-micro-batch")
        self.log = open(data.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(pinned(cmd, cpus), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its workers too
                self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- load generator
# The load generator runs in its own process. "raw" keeps one HTTP/1.1 keep-alive connection
# per concurrent client on asyncio streams with pre-encoded requests (a few tens of microseconds
# of Python per request); "httpx" uses httpx.AsyncClient, which on these machines spends more
# CPU per request than the server does and so measures itself (see docs/serve.md).
LOAD_SCRIPT = r'''
import asyncio, json, sys, time

async def raw_worker(host, port, path, bodies, state):
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: "
    reqs = [head.encode() + str(len(b)).encode() + b"\r\n\r\n" + b for b in bodies]
    try:
        while state["next"] < state["requests"] and time.perf_counter() < state["stop"]:
            i = state["next"]
            state["next"] += 1
            t = time.perf_counter()
            writer.write(reqs[i % len(reqs)])
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            state["lat"].append(time.perf_counter() - t)
            state["errors"] += status != 200
    finally:
        writer.close()

async def httpx_worker(client, path, bodies, state):
    import httpx
    while state["next"] < state["requests"] and time.perf_counter() < state["stop"]:
        i = state["next"]
        state["next"] += 1
        t = time.perf_counter()
        try:
            ok = (await client.post(path, content=bodies[i % len(bodies)],
                                    headers={"content-type": "application/json"})).status_code == 200
        except httpx.HTTPError:
            ok = False
        state["lat"].append(time.perf_counter() - t)
        state["errors"] += not ok

async def main(kind, url, path, bodies, concurrency, requests, seconds):
    host, port = url.split("//")[1].split(":")
    warm = {"next": 0, "requests": min(50, len(bodies)), "stop": time.perf_counter() + 30, "lat": [], "errors": 0}
    state = {"next": 0, "requests": requests, "stop": 0.0, "lat": [], "errors": 0}
    if kind == "raw":
        await raw_worker(host, int(port), path, bodies, warm)
        state["stop"] = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(raw_worker(host, int(port), path, bodies, state) for _ in range(concurrency)))
    else:
        import httpx
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            await httpx_worker(client, path, bodies, warm)
            state["stop"] = time.perf_counter() + seconds
            t0 = time.perf_counter()
            await asyncio.gather(*(httpx_worker(client, path, bodies, state) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    print(json.dumps({"n": len(state["lat"]), "errors": state["errors"], "wall": wall, "lat": state["lat"]}))

kind, url, path, bodies_file, concurrency, requests, seconds = sys.argv[1:8]
bodies = [line.encode() for line in open(bodies_file).read().splitlines()]
asyncio.run(main(kind, url, path, bodies, int(concurrency), int(requests), float(seconds)))
'''


def load(url: str, path: str, bodies_file: Path, concurrency: int, requests: int, seconds: float,
         cpus: str | None, client: str = "raw") -> dict:
    """Run the async client in its own process (pinned away from the server) and summarise."""
    out = subprocess.run(pinned([sys.executable, "-c", LOAD_SCRIPT, client, url, path, str(bodies_file),
                                 str(concurrency), str(requests), str(seconds)], cpus),
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    r = json.loads(out.stdout)
    lat = np.asarray(r["lat"]) * 1e3
    return {"concurrency": concurrency, "requests": r["n"], "errors": r["errors"], "qps": r["n"] / r["wall"],
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99))}


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the index (default 100000)")
    ap.add_argument("--queries", type=int, default=1000, help="distinct query vectors (default 1000)")
    ap.add_argument("--index", default="IVF1024,SQ8,rescore", help="index description (default IVF1024,SQ8,rescore)")
    ap.add_argument("--nprobe", type=int, default=128, help="lists visited per query (IVF; default 128: recall@10 ~0.96)")
    ap.add_argument("--ef-search", type=int, default=None, help="candidate list size (HNSW)")
    ap.add_argument("--servers", default="uvicorn,granian", help="ASGI servers to compare")
    ap.add_argument("--micro-batch", default="on,off", help="micro-batching settings to compare")
    ap.add_argument("--concurrency", default="1,8,32", help="client concurrency levels")
    ap.add_argument("--requests", type=int, default=6000, help="requests per level at most")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per level at most")
    ap.add_argument("--search-threads", type=int, default=2, help="server search threads")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (default raw)")
    ap.add_argument("--text", action="store_true", help="also measure text queries (server-side e5)")
    ap.add_argument("--server-cpus", default=None, help="taskset CPU list of the server (default: all but CPU 0)")
    ap.add_argument("--client-cpus", default=None, help="taskset CPU list of the load generator (default: CPU 0)")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--summarize", nargs="+", metavar="JSON", help="print the median table of earlier --json runs")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(Path(f).read_text()) for f in args.summarize]))
        return {}
    if args.quick:
        args.n, args.queries, args.requests, args.seconds = 5000, 200, 300, 2.0
        args.index = "IVF64,SQ8,rescore" if args.index == "IVF1024,SQ8,rescore" else args.index
        args.nprobe = min(args.nprobe, 16)
    ncpu = len(os.sched_getaffinity(0))
    server_cpus = args.server_cpus or (f"1-{ncpu - 1}" if ncpu >= 2 else None)
    client_cpus = args.client_cpus or ("0" if ncpu >= 2 else None)

    from mlvec.index import load as load_index
    from mlvec.serve import import_index

    base, queries, source = e5_like(args.n, args.queries, args.seed)
    params = {k: v for k, v in (("nprobe", args.nprobe if args.index.upper().startswith("IVF") else None),
                                ("ef_search", args.ef_search)) if v is not None}
    t0 = time.perf_counter()
    index = build(base, args.index, args.seed)
    build_s = time.perf_counter() - t0
    recall = recall_at_10(index, base, queries, params)
    print(f"data: {source}; index {index.kind} over {len(index):,} x {index.dim} built in {build_s:.1f} s; "
          f"recall@10 {recall:.3f} at {params}", flush=True)
    if recall < 0.95:
        print("warning: recall@10 below 0.95; raise --nprobe / --ef-search", file=sys.stderr)
    report: dict = {"source": source, "index": index.kind, "n": len(index), "dim": index.dim, "params": params,
                    "recall@10": recall, "server_cpus": server_cpus, "client_cpus": client_cpus, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import_index(data, "bench", index, encoder="e5" if args.text else None)
        del index
        served = load_index(next((data / "collections" / "bench" / "snapshots").iterdir()) / "index.mlvec", mmap=True)

        # In-process: the same index file, 8 threads on the server's CPUs, measured right before
        # each server's runs (the machine's load drifts; a ratio compares like with like).
        def in_process() -> float:
            if server_cpus and shutil.which("taskset"):
                before = os.sched_getaffinity(0)
                os.sched_setaffinity(0, _cpu_set(server_cpus))
                try:
                    return in_process_rate(served, queries, params, 8, min(args.seconds, 4.0))
                finally:
                    os.sched_setaffinity(0, before)
            return in_process_rate(served, queries, params, 8, min(args.seconds, 4.0))

        bodies = Path(tmp) / "bodies.jsonl"
        with open(bodies, "w") as f:
            for q in queries:
                f.write(json.dumps({"vector": q.tolist(), "k": 10, "params": params, "with_payload": False}) + "\n")
        levels = [int(c) for c in args.concurrency.split(",")]
        for server in args.servers.split(","):
            for mb in args.micro_batch.split(","):
                inproc = in_process()
                print(f"in-process, 8 threads on the server's CPUs: {inproc:,.0f} single-query searches/s", flush=True)
                srv = Server(data, server, mb == "on", server_cpus, ["--search-threads", str(args.search_threads)])
                try:
                    srv.wait_ready()
                    for c in levels:
                        r = load(srv.url, "/v1/collections/bench/search", bodies, c, args.requests, args.seconds,
                                 client_cpus, args.client)
                        r.update(server=server, micro_batch=mb, kind="vector", in_process_qps=inproc,
                                 ratio=r["qps"] / inproc)
                        report["runs"].append(r)
                        print(f"{server:8s} micro-batch {mb:3s} c={c:<3d} {r['qps']:8,.0f} q/s ({r['ratio']:.0%} of "
                              f"in-process)  p50 {r['p50_ms']:6.2f}  p95 {r['p95_ms']:6.2f}  p99 {r['p99_ms']:6.2f} ms  "
                              f"errors {r['errors']}", flush=True)
                finally:
                    srv.stop()
        if args.text:
            report["text"] = text_queries(args, data, server_cpus, client_cpus, Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


ENCODER_SCRIPT = r'''
import json, sys, time
from mlvec.data import load_bible_en_es
from mlvec.encoders import load_e5
texts = load_bible_en_es(400).en
enc = load_e5()
enc.encode(texts[:8], is_query=True, show_progress=False)
t0 = time.perf_counter()
for t in texts[:60]:
    enc.encode([t], is_query=True, show_progress=False)
one = 60 / (time.perf_counter() - t0)
t0 = time.perf_counter()
for lo in range(0, 160, 8):
    enc.encode(texts[lo : lo + 8], is_query=True, show_progress=False)
print(json.dumps({"one": one, "batch8": 160 / (time.perf_counter() - t0), "texts": texts}))
'''


def text_queries(args, data: Path, server_cpus, client_cpus, tmp: Path) -> dict:
    """Text searches over HTTP at concurrency 8 against the encoder alone, in a process on the
    server's CPUs (torch sizes its thread pool from them, as in the server)."""
    out = subprocess.run(pinned([sys.executable, "-c", ENCODER_SCRIPT], server_cpus), capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    enc = json.loads(out.stdout.splitlines()[-1])
    bodies = tmp / "texts.jsonl"
    bodies.write_text("\n".join(json.dumps({"text": t, "k": 10, "with_payload": False}) for t in enc["texts"]) + "\n")
    server = args.servers.split(",")[0]
    srv = Server(data, server, True, server_cpus, ["--encoder", "e5"])
    try:
        srv.wait_ready()
        r = load(srv.url, "/v1/collections/bench/search", bodies, 8, min(args.requests, 400), args.seconds * 2,
                 client_cpus, args.client)
    finally:
        srv.stop()
    r.update(server=server, encoder_qps_one=enc["one"], encoder_qps_batch8=enc["batch8"])
    print(f"text queries c=8 ({server}): {r['qps']:,.0f} q/s  p50 {r['p50_ms']:.1f}  p99 {r['p99_ms']:.1f} ms  errors "
          f"{r['errors']}; encoder alone on the server's CPUs: {enc['one']:,.0f} texts/s one at a time, "
          f"{enc['batch8']:,.0f} texts/s in batches of 8", flush=True)
    return r


def summarize(reports: list[dict]) -> str:
    """A markdown table of the medians over several runs."""
    med = lambda xs: float(np.median(xs))  # noqa: E731
    first = reports[0]
    lines = [f"{first['index']} over {first['n']:,} x {first['dim']} ({first['source']}), {first['params']}, "
             f"recall@10 {first['recall@10']:.3f}; server on CPUs {first['server_cpus']}, load generator on "
             f"{first['client_cpus']}; medians of {len(reports)} runs.", "",
             "| server | micro-batch | concurrency | queries/s | of in-process | p50 ms | p95 ms | p99 ms | p99/p50 | errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = sorted({(r["server"], r["micro_batch"], r["concurrency"]) for rep in reports for r in rep["runs"]},
                  key=lambda k: (k[0] != "uvicorn", k[1] != "on", k[2]))
    for key in keys:
        rs = [r for rep in reports for r in rep["runs"] if (r["server"], r["micro_batch"], r["concurrency"]) == key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {med([r['qps'] for r in rs]):,.0f} | "
                     f"{med([r['ratio'] for r in rs]):.0%} | {med([r['p50_ms'] for r in rs]):.2f} | "
                     f"{med([r['p95_ms'] for r in rs]):.2f} | {med([r['p99_ms'] for r in rs]):.2f} | "
                     f"{med([r['p99_ms'] / r['p50_ms'] for r in rs]):.1f} | {sum(r['errors'] for r in rs)} |")
    inproc = [r["in_process_qps"] for rep in reports for r in rep["runs"]]
    lines += ["", f"In-process (8 threads, one query per call, server's CPUs): median {med(inproc):,.0f} searches/s."]
    texts = [rep["text"] for rep in reports if "text" in rep]
    if texts:
        lines.append(f"Text queries at concurrency 8: {med([t['qps'] for t in texts]):,.0f} queries/s (p50 "
                     f"{med([t['p50_ms'] for t in texts]):.0f} ms, p99 {med([t['p99_ms'] for t in texts]):.0f} ms); "
                     f"the encoder alone on the same CPUs: {med([t['encoder_qps_one'] for t in texts]):,.0f} texts/s "
                     f"one at a time, {med([t['encoder_qps_batch8'] for t in texts]):,.0f} in batches of 8.")
    return "\n".join(lines)


def _cpu_set(spec: str) -> set[int]:
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


if __name__ == "__main__":
    main()
