"""Tokenizers, packing without cross-document leakage, Tiny Shakespeare, the tfds token cache."""

import hashlib
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fogzo_jax.data import DataError, text


def test_byte_tokenizer_round_trip():
  tok = text.ByteTokenizer()
  ids = tok.encode("héllo\n")
  assert ids.dtype == np.int32 and ids.max() < 256 and tok.vocab_size == 257
  assert tok.decode(np.append(ids, tok.eos_id)) == "héllo\n"


def test_packing_has_no_leakage_beyond_eos():
  docs = [np.arange(1, 6), np.arange(10, 13), np.arange(20, 30)]
  rows = text.pack(docs, seq_len=7, eos_id=99)
  flat = rows["tokens"].reshape(-1)
  np.testing.assert_array_equal(flat[:10], [1, 2, 3, 4, 5, 99, 10, 11, 12, 99])
  ex = text.lm_example(rows["tokens"], text.row_segments(rows["segment_ids"]))
  seg, w = ex["segment_ids"], ex["weights"]
  # Each target is predicted only from its own document: inside a document, or its own EOS.
  for r in range(len(seg)):
    for t in range(seg.shape[1]):
      same_doc = rows["segment_ids"][r, t] == rows["segment_ids"][r, t + 1]
      assert w[r, t] == float(same_doc)
  assert ex["targets"][0, 4] == 99 and w[0, 4] == 1.0   # "5" → EOS of document 1 is learned
  assert ex["targets"][0, 5] == 10 and w[0, 5] == 0.0   # EOS → first token of document 2 is not
  assert seg[0, 0] == 1 and seg.min() >= 1


def test_shipped_tiny_shakespeare_is_the_real_file_and_splits_90_10():
  with open(text.SHIPPED_SHAKESPEARE, "rb") as f:
    data = f.read()
  assert hashlib.sha256(data).hexdigest() == (
      "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
  split = text.split_documents(text.read_documents(text.SHIPPED_SHAKESPEARE))
  assert len(split["train"][0]) == int(len(data) * 0.9)
  assert split["validation"][0].startswith(data.decode()[int(len(data) * 0.9):][:20])


def test_sentencepiece_tokenizer(tmp_path):
  spm = pytest.importorskip("sentencepiece")
  with open(text.SHIPPED_SHAKESPEARE) as f:
    corpus = f.read()[:200_000]
  (tmp_path / "corpus.txt").write_text(corpus)
  spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"),
                                 model_prefix=str(tmp_path / "sp"), vocab_size=300,
                                 minloglevel=2)
  tok = text.get_tokenizer("sentencepiece", str(tmp_path / "sp.model"))
  ids = tok.encode("First Citizen: speak.")
  assert tok.vocab_size == 300 and 0 < len(ids) < 21 and tok.eos_id >= 0
  assert tok.decode(ids) == "First Citizen: speak."


def test_missing_tokenizer_file_is_a_clear_error(tmp_path):
  with pytest.raises(DataError, match="tokenizer_path .* is not a file"):
    text.get_tokenizer("sentencepiece", str(tmp_path / "missing.model"))
  with pytest.raises(ValueError, match="tokenizer must be one of 'byte', 'sentencepiece'"):
    text.get_tokenizer("bpe")


def test_token_cache_streams_tfds_documents_once(tmp_path):
  """The tfds path (c4 in real use) with mock documents: written once, then reused."""
  tok = text.ByteTokenizer()
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    docs = list(text.tfds_documents("lm1b", "train", None))
    cache = text.TokenCache(str(tmp_path / "cache" / "lm1b_train"))
    cache.write(iter(docs), tok, max_tokens=10**9)
  assert cache.written() == (sum(len(d.encode()) + 1 for d in docs), True)
  assert not any(".tmp" in p for p in os.listdir(tmp_path / "cache"))
  rows = cache.rows(seq_len=16)
  expected = text.pack([tok.encode(d) for d in docs], 16, tok.eos_id)
  np.testing.assert_array_equal(rows["tokens"], expected["tokens"])
  np.testing.assert_array_equal(rows["segment_ids"], expected["segment_ids"])
  limited = text.TokenCache(str(tmp_path / "small"))
  limited.write(iter(docs), tok, max_tokens=50)
  assert 50 <= len(np.memmap(str(tmp_path / "small.tokens"), np.int32, "r")) < 50 + max(
      len(d) + 1 for d in docs) + 1


def test_unprepared_tfds_text_names_the_steps(tmp_path):
  with pytest.raises(DataError, match="tfds build c4 --config=en"):
    next(text.tfds_documents("c4/en", "train", str(tmp_path)))


def test_token_cache_is_keyed_by_tokenizer_content_and_grows_when_too_short(tmp_path):
  """Two different SentencePiece files with one basename get two caches; a cache shorter than a
  run needs is rebuilt larger instead of silently repeating epochs."""
  spm = pytest.importorskip("sentencepiece")
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(f"line {i} of some text about cats and dogs" for i in range(300)))
  models = []
  for size in (40, 60):
    folder = tmp_path / f"v{size}"
    folder.mkdir()
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"),
                                   vocab_size=size, minloglevel=3)
    models.append(str(folder / "tokenizer.model"))
  ids = {text.tokenizer_id("sentencepiece", m) for m in models}
  assert len(ids) == 2 and text.tokenizer_id("byte", "") == "bytes"
  tok = text.ByteTokenizer()
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    short, _ = text.tfds_token_rows("lm1b", str(tmp_path), tok, "byte", "", 8,
                                    {"train": 100, "validation": 50})
    long, _ = text.tfds_token_rows("lm1b", str(tmp_path), tok, "byte", "", 8,
                                   {"train": 2000, "validation": 50})
  # 40 mock documents hold fewer than 2000 tokens: the second call rebuilt the cache whole.
  assert len(long["train"]["tokens"]) > len(short["train"]["tokens"]) >= 100 // 9
  cache = text.TokenCache(str(tmp_path / "fogzo_token_cache" / "lm1b_train_bytes"))
  assert cache.written()[1] is True  # complete: the whole source is cached
