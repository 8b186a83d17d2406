"""ColBERT checkpoints written locally in the Stanford and PyLate layouts load with their trained
projection and options, checked against a plain transformers + torch re-implementation of how each
library encodes; encoders round-trip through Encoder.save; encode runs in eval mode."""

import json
import string

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from safetensors.torch import save_file  # noqa: E402

from mlvec.encoders import Encoder, load_encoder  # noqa: E402

WORDS = "the a in beginning god created heaven earth el principio dios cielo tierra y and where is rain".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"]
PUNCT = [".", ",", "!", "?", ";"]
QUERIES = ["where is the earth?", "rain", "in the beginning god created the heaven and the earth and the earth"]
DOCS = ["In the beginning, God created the heaven and the earth.", "Y la tierra!", "rain ; rain", "a"]
HIDDEN, DIM, QLEN, DLEN = 32, 8, 10, 12


def _tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + PUNCT + WORDS) + "\n")
    return transformers.BertTokenizerFast(str(vocab), do_lower_case=True)


def _bert(vocab_size, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    return transformers.BertModel(cfg, add_pooling_layer=False).eval()


def _reference(model, weight, tok, texts, marker, length, is_query, skip_words):
    """How ColBERT encodes, one text at a time: [CLS] marker text [SEP], truncated to ``length``
    positions; queries padded to ``length`` with [MASK] (not attended); projection, L2 norm;
    documents drop skiplist tokens."""
    vocab = tok.get_vocab()
    skip = {vocab[w] for w in skip_words if w in vocab}
    out = []
    for text in texts:
        body = tok(text, add_special_tokens=False)["input_ids"][: length - 3]
        ids = [vocab["[CLS]"], vocab[marker], *body, vocab["[SEP]"]]
        attn = [1] * len(ids)
        if is_query:
            pad = length - len(ids)
            ids, attn = ids + [vocab["[MASK]"]] * pad, attn + [0] * pad
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([attn])).last_hidden_state[0]
            h = torch.nn.functional.normalize(h.double() @ weight.double().T, dim=-1).numpy()
        keep = [j for j, t in enumerate(ids) if is_query or t not in skip]
        out.append(h[keep])
    return out


def _check(enc, model, weight, tok, qmarker, dmarker, skip_words):
    assert not enc.training and enc.token_dim == DIM
    for texts, marker, length, is_query in ((QUERIES, qmarker, QLEN, True), (DOCS, dmarker, DLEN, False)):
        got = enc.encode_tokens(texts, is_query=is_query)
        want = _reference(model, weight, tok, texts, marker, length, is_query, skip_words)
        assert len(got) == len(want)
        for i, w in enumerate(want):
            assert got[i].shape == w.shape, (is_query, i, got[i].shape, w.shape)
            np.testing.assert_allclose(got[i], w, atol=2e-5)


def test_stanford_colbert_checkpoint(tmp_path):
    tok = _tokenizer(tmp_path)
    model = _bert(len(tok))
    weight = torch.randn(DIM, HIDDEN)
    ckpt = tmp_path / "colbert"
    ckpt.mkdir()
    # HF_ColBERT: BertPreTrainedModel with `bert` and `linear` children, saved as one state dict.
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = weight
    save_file(state, str(ckpt / "model.safetensors"))
    cfg = model.config.to_dict()
    cfg["architectures"] = ["HF_ColBERT"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    tok.save_pretrained(ckpt)
    meta = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": QLEN, "doc_maxlen": DLEN,
            "mask_punctuation": True, "attend_to_mask_tokens": False, "dim": DIM}
    (ckpt / "artifact.metadata").write_text(json.dumps(meta))

    enc = load_encoder(ckpt)
    _check(enc, model, weight, tok, "[unused0]", "[unused1]", list(string.punctuation))
    np.testing.assert_array_equal(enc.token_proj.weight.detach().numpy(), weight.numpy())
    with pytest.raises(ValueError, match="token_dim=16 disagrees"):
        load_encoder(ckpt, token_dim=16)
    assert load_encoder(ckpt, token_dim=DIM).token_dim == DIM


def _write_pylate(tmp_path, activation="torch.nn.modules.linear.Identity"):
    tok = _tokenizer(tmp_path)
    tok.add_tokens(["[Q] ", "[D] "])
    model = _bert(len(tok), seed=1)
    weight = torch.randn(DIM, HIDDEN)
    ckpt = tmp_path / "pylate"
    (ckpt / "1_Dense").mkdir(parents=True)
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]
    (ckpt / "modules.json").write_text(json.dumps(modules))
    (ckpt / "1_Dense" / "config.json").write_text(json.dumps(
        {"in_features": HIDDEN, "out_features": DIM, "bias": False, "activation_function": activation}))
    save_file({"linear.weight": weight}, str(ckpt / "1_Dense" / "model.safetensors"))
    skip = [".", "!", "?"]  # a custom skiplist: "," and ";" stay
    (ckpt / "config_sentence_transformers.json").write_text(json.dumps(
        {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": QLEN, "document_length": DLEN,
         "attend_to_expansion_tokens": False, "skiplist_words": skip, "do_query_expansion": True}))
    return ckpt, model, weight, tok, skip


def test_pylate_colbert_checkpoint(tmp_path):
    ckpt, model, weight, tok, skip = _write_pylate(tmp_path)
    enc = load_encoder(ckpt)
    _check(enc, model, weight, tok, "[Q] ", "[D] ", skip)
    with pytest.raises(ValueError, match="disagrees"):
        load_encoder(ckpt, token_dim=4)


def test_pylate_checkpoint_with_an_activation_is_refused(tmp_path):
    ckpt, *_ = _write_pylate(tmp_path, activation="torch.nn.modules.activation.Tanh")
    with pytest.raises(ValueError, match="Tanh"):
        load_encoder(ckpt)


@pytest.fixture
def tiny_fast(tmp_path):
    tok = _tokenizer(tmp_path)
    return _bert(len(tok), seed=2), tok


TEXTS = DOCS + QUERIES


@pytest.mark.parametrize("raw_tokenizer", [False, True])
def test_save_round_trips_every_part(tiny_fast, tmp_path, raw_tokenizer):
    model, tok = tiny_fast
    tokenizer = tok.backend_tokenizer if raw_tokenizer else tok
    enc = Encoder(model, tokenizer, pooling="cls", pooled_dim=6, token_dim=DIM, query_prefix="where ",
                  passage_prefix="in ", document_marker="[unused1]", skiplist=[".", ","], query_augment=True,
                  query_length=9, max_length=20)
    with torch.no_grad():  # as if fine-tuned: heads and encoder weights differ from any initialisation
        for p in enc.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = enc.save(tmp_path / "saved")
    back = load_encoder(out)
    assert back.options() == enc.options() and not back.training
    np.testing.assert_array_equal(back.encode(TEXTS), enc.encode(TEXTS))
    np.testing.assert_array_equal(back.encode(TEXTS, is_query=True), enc.encode(TEXTS, is_query=True))
    for is_query in (False, True):
        a, b = enc.encode_tokens(TEXTS, is_query=is_query), back.encode_tokens(TEXTS, is_query=is_query)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_array_equal(a.data, b.data)


def test_a_directory_without_the_models_tokenizer_is_refused(tiny_fast, tmp_path):
    model, tok = tiny_fast
    model.save_pretrained(tmp_path / "model_only")
    with pytest.raises(ValueError, match="no tokenizer"):
        load_encoder(tmp_path / "model_only")
    # A tokenizer of another model: 30 entries for an embedding table of 300 rows.
    big = _bert(300)
    big.save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="not this model's tokenizer"):
        load_encoder(tmp_path / "other")


def test_encode_runs_in_eval_mode_and_restores_the_callers_mode(tiny_fast):
    model, tok = tiny_fast
    enc = Encoder(model, tok, token_dim=4)
    assert not enc.training  # follows the model (loaded in eval mode)
    want = enc.encode(TEXTS)
    want_tokens = enc.encode_tokens(TEXTS).data
    enc.train()
    # Dropout is on in train mode: the differentiable forward differs from eval...
    assert not np.allclose(enc(TEXTS).detach().numpy(), want, atol=1e-4)
    # ...but encode* do not, and leave every module as the caller set it.
    np.testing.assert_array_equal(enc.encode(TEXTS), want)
    np.testing.assert_array_equal(enc.encode_tokens(TEXTS).data, want_tokens)
    np.testing.assert_array_equal(enc.encode_with_tokens(TEXTS)[0], want)
    assert enc.training and all(m.training for m in enc.modules())
