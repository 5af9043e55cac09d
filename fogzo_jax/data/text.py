"""Language-model data: tokenizers, document sources and packing into fixed-length sequences.

Tokenizers (``TOKENIZERS``): "byte" — UTF-8 bytes 0–255 plus EOS = 256 (vocabulary 257; needs
no file); "sentencepiece" — a SentencePiece model file given by path (the LLaMA recipe), EOS
from the model.

Documents: the shipped Tiny Shakespeare (one document, split 90 % / 10 % into train/validation
as usual), any UTF-8 text file or JSON Lines file with a "text" field (``data_dir`` / path), and
tfds ``c4/en`` read with ``tfds.data_source`` (prepared as array_record; no TensorFlow).

Packing: every document is tokenized and followed by EOS, documents are concatenated in order
and cut into rows of ``seq_len + 1`` tokens. Each row carries ``segment_ids`` (which document a
token belongs to, numbered within the row from 1), so attention never crosses documents
(``pack`` → model mask) and a position whose next token starts a new document has weight 0:
the EOS that ends a document is still predicted, nothing after it is predicted from it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
from importlib import resources
from typing import Iterable, Optional

import numpy as np

TOKENIZERS = ("byte", "sentencepiece")
SHIPPED_SHAKESPEARE = str(resources.files("fogzo_jax.data") / "text" / "tiny_shakespeare.txt")


class ByteTokenizer:
  """UTF-8 bytes as tokens 0–255, EOS = 256."""
  vocab_size = 257
  eos_id = 256

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
  """A SentencePiece model file (e.g. LLaMA's tokenizer.model)."""

  def __init__(self, path: str):
    from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
    if not path or not os.path.isfile(path):
      raise DataError(f"tokenizer_path {path!r} is not a file: tokenizer='sentencepiece' needs "
                      "a SentencePiece model file (e.g. the LLaMA tokenizer.model); use "
                      "tokenizer='byte' to train without one")
    import sentencepiece as spm  # pylint: disable=g-import-not-at-top
    self.sp = spm.SentencePieceProcessor(model_file=path)
    self.vocab_size = self.sp.get_piece_size()
    self.eos_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else self.vocab_size - 1

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self.sp.encode(text), np.int32)

  def decode(self, ids) -> str:
    return self.sp.decode([int(i) for i in ids])


def get_tokenizer(name: str, path: str = ""):
  if name not in TOKENIZERS:
    raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}; got {name!r}")
  return ByteTokenizer() if name == "byte" else SentencePieceTokenizer(path)


def pack(docs: Iterable[np.ndarray], seq_len: int, eos_id: int) -> dict[str, np.ndarray]:
  """Packs token documents into rows of seq_len + 1 tokens (module docstring).

  Returns dict of int32 arrays [rows, seq_len + 1]: ``tokens`` and ``segment_ids`` (the
  document index of each token; ``row_segments`` renumbers them per row). The last partial row
  is dropped.
  """
  tokens, segments = [], []
  for d, doc in enumerate(docs):
    tokens.append(np.append(np.asarray(doc, np.int32), np.int32(eos_id)))
    segments.append(np.full(len(tokens[-1]), d, np.int32))
  if not tokens:
    raise ValueError("no documents to pack")
  tokens, segments = np.concatenate(tokens), np.concatenate(segments)
  rows = len(tokens) // (seq_len + 1)
  tokens = tokens[:rows * (seq_len + 1)].reshape(rows, seq_len + 1)
  segments = segments[:rows * (seq_len + 1)].reshape(rows, seq_len + 1)
  return {"tokens": tokens, "segment_ids": segments}


def lm_example(row_tokens: np.ndarray, row_segments: np.ndarray) -> dict[str, np.ndarray]:
  """Rows [..., T + 1] → model inputs/targets [..., T] with weights and segment ids."""
  inputs, targets = row_tokens[..., :-1], row_tokens[..., 1:]
  seg_in, seg_out = row_segments[..., :-1], row_segments[..., 1:]
  return {"inputs": inputs, "targets": targets, "segment_ids": seg_in,
          "weights": (seg_in == seg_out).astype(np.float32)}


def read_documents(path: str) -> list[str]:
  """A .txt file (one document), or .jsonl[.gz] with one {"text": ...} document a line."""
  from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise DataError(f"text file {path!r} does not exist")
  opener = gzip.open if path.endswith(".gz") else open
  docs, number = [], 0
  try:
    with opener(path, "rt", encoding="utf-8") as f:
      if ".jsonl" not in path:
        docs = [f.read()]
      else:
        for number, line in enumerate(f, 1):
          if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
              raise DataError(f"{path}, line {number}: expected an object with a \"text\" "
                              "string")
            docs.append(row["text"])
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text (byte {e.start}{f', line {number + 1}' if number else ''}"
                    f": {e.reason})") from None
  except json.JSONDecodeError as e:
    raise DataError(f"{path}, line {number}: not JSON ({e.msg})") from None
  except (OSError, EOFError) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
  if not any(d.strip() for d in docs):
    raise DataError(f"{path} holds no text")
  return docs


def split_documents(docs: list[str], valid_fraction: float = 0.1) -> dict[str, list[str]]:
  """train/validation split: by documents when there are ≥ 10, else by characters (the last
  ``valid_fraction`` of the text, Tiny Shakespeare's usual 90/10 split)."""
  if len(docs) >= 10:
    n_valid = max(1, int(round(len(docs) * valid_fraction)))
    return {"train": docs[:-n_valid], "validation": docs[-n_valid:]}
  text = "\n".join(docs)
  cut = int(len(text) * (1 - valid_fraction))
  return {"train": [text[:cut]], "validation": [text[cut:]]}


def tfds_documents(name: str, split: str, data_dir: Optional[str]):
  """Documents (field "text") of a prepared tfds data set, read in order with
  ``tfds.data_source`` (array_record; a prepared data set is read from its files, so reading
  needs no TensorFlow — preparing C4 does, through its builder code: ``pip install
  tensorflow-cpu``)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f"tensorflow-datasets has no prepared {name!r} ({type(e).__name__}: {e}). Prepare it "
        f"once with `pip install tensorflow-cpu` and `tfds build {name.split('/')[0]} "
        f"--config={name.split('/')[-1]} --data_dir=<data_dir> --file_format=array_record` "
        f"(C4 en is ~800 GB; `--max_examples_per_split=N` prepares a part), then pass "
        f"config.data_dir=<data_dir>; or train on a local text file with config.dataset='text' "
        f"and config.data_dir=<file>") from None
  for i in range(len(source)):
    text = source[i]["text"]
    yield text.decode("utf-8") if isinstance(text, bytes) else str(text)


class TokenCache:
  """A token stream on disk: ``<stem>.tokens`` (int32, documents each followed by EOS) and
  ``<stem>.docs`` (int32 document index of every token), memory-mapped.

  ``write`` streams documents through the tokenizer with bounded memory and stops after
  ``max_tokens``; ``<stem>.done`` records how many tokens were written and whether the source
  ran out first (``complete``). Each writer uses its own temporary files (process id and host
  in the name) and moves them into place atomically, so concurrent writers cannot mix.
  """

  def __init__(self, stem: str):
    self.stem = stem

  def written(self) -> tuple[int, bool]:
    """(tokens in the cache, whether that is the whole source); (0, False) without a cache."""
    try:
      with open(self.stem + ".done") as f:
        record = json.loads(f.read())
      return int(record["tokens"]), bool(record["complete"])
    except (OSError, ValueError, KeyError, TypeError):
      return 0, False

  def write(self, docs: Iterable[str], tokenizer, max_tokens: int) -> None:
    os.makedirs(os.path.dirname(self.stem) or ".", exist_ok=True)
    tmp = f".tmp{os.getpid()}_{socket.gethostname()}"
    count, complete = 0, True
    with open(self.stem + ".tokens" + tmp, "wb") as ft, open(self.stem + ".docs" + tmp, "wb") as fd:
      for d, text in enumerate(docs):
        ids = np.append(tokenizer.encode(text), np.int32(tokenizer.eos_id)).astype(np.int32)
        ft.write(ids.tobytes())
        fd.write(np.full(len(ids), d, np.int32).tobytes())
        count += len(ids)
        if count >= max_tokens:
          complete = False
          break
    for ext in (".tokens", ".docs"):  # atomic: a killed preparation leaves no half cache
      os.replace(self.stem + ext + tmp, self.stem + ext)
    with open(self.stem + ".done" + tmp, "w") as f:
      json.dump({"tokens": count, "complete": complete}, f)
    os.replace(self.stem + ".done" + tmp, self.stem + ".done")

  def rows(self, seq_len: int) -> dict[str, np.ndarray]:
    tokens = np.memmap(self.stem + ".tokens", np.int32, "r")
    docs = np.memmap(self.stem + ".docs", np.int32, "r")
    n = len(tokens) // (seq_len + 1) * (seq_len + 1)
    return {"tokens": tokens[:n].reshape(-1, seq_len + 1),
            "segment_ids": docs[:n].reshape(-1, seq_len + 1)}


def tokenizer_id(tokenizer: str, tokenizer_path: str) -> str:
  """Names a tokenizer by content: "bytes", or the SHA-256 prefix of the model file."""
  if tokenizer == "byte":
    return "bytes"
  with open(tokenizer_path, "rb") as f:
    return "sp" + hashlib.sha256(f.read()).hexdigest()[:16]


def tfds_token_rows(name: str, data_dir: str, tokenizer, tokenizer_kind: str,
                    tokenizer_path: str, seq_len: int, needed: dict, process_index: int = 0
                    ) -> tuple[dict, str]:
  """{"train", "validation"} rows of a tfds text data set (C4) through a token cache.

  The cache is keyed by the data set, the split and the tokenizer's content, and holds at least
  ``needed[split]`` tokens (a cache that is too short is rebuilt larger, never silently
  repeated); it lives in ``<data_dir>/fogzo_token_cache``.
  """
  cache_dir = os.path.join(data_dir or os.path.expanduser("~/tensorflow_datasets"),
                           "fogzo_token_cache")
  tid = tokenizer_id(tokenizer_kind, tokenizer_path)
  out = {}
  for split in ("train", "validation"):
    cache = TokenCache(os.path.join(cache_dir, f"{name.replace('/', '_')}_{split}_{tid}"))
    tokens, complete = cache.written()
    if tokens < needed[split] and not complete:
      if tokens:
        logging.info("token cache %s holds %d tokens, %d needed: rebuilding", cache.stem,
                     tokens, needed[split])
      cache.write(tfds_documents(name, split, data_dir or None), tokenizer, needed[split])
    out[split] = cache.rows(seq_len)
  return out, f"tfds {name} (token cache {cache_dir}, tokenizer {tid})"


def row_segments(segment_ids: np.ndarray) -> np.ndarray:
  """Document indices [..., T + 1] → segment ids numbered within each row from 1."""
  return (segment_ids - segment_ids[..., :1] + 1).astype(np.int32)
