"""The standing fault suite: every fatal path of train.py ends promptly with its exit code and
one line; a corrupt checkpoint falls back to an older one; one run per workdir; bad data named.

Each train.py run here is a subprocess under a timeout: a hang (e.g. a library thread keeping
the interpreter alive after a failed save) fails the test instead of blocking the suite.
"""

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import mnist_mlp
from fogzo_jax.data import DataError, load_image_dataset, make_pipeline
from fogzo_jax.data import text as text_lib
from fogzo_jax.train import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["--config.estimator.kind=ste", "--config.num_train_steps=20",
        "--config.checkpoint_every_steps=5", "--config.eval_every_steps=10",
        "--config.keep_checkpoints=3", "--config.data.eval_train=False"]


def train(workdir, *args, timeout=240):
  """Runs train.py; returns (exit code, stdout, stderr, seconds). A hang fails the test."""
  start = time.time()
  proc = subprocess.run([sys.executable, "train.py", "--config=configs/mnist_mlp.py",
                         f"--workdir={workdir}", *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr, time.time() - start


def one_error_line(stderr):
  """The one line a fatal error prints (progress-bar lines aside)."""
  progress = re.compile(r"\d+/\d+ \[")  # tqdm: "12/50 [00:01<…, 8.1step/s]" or "1.6s/step"
  lines = [line for line in stderr.replace("\r", "\n").splitlines()
           if line.strip() and not progress.search(line)]
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
  return lines[0]


def test_checkpoint_path_that_is_a_file_exits_5_without_hanging(tmp_path):
  (tmp_path / "checkpoints").write_text("not a folder")
  code, _, err, _ = train(tmp_path, *FAST, timeout=120)
  assert code == 5
  assert "cannot write checkpoints to" in one_error_line(err)


def test_second_run_on_a_workdir_is_refused_while_the_first_runs(tmp_path):
  slow = ["--config.estimator.kind=fogzo", "--config.estimator.num_perturbations=300",
          "--config.num_train_steps=400", "--config.checkpoint_every_steps=5"]
  first = subprocess.Popen([sys.executable, "train.py", "--config=configs/mnist_mlp.py",
                            f"--workdir={tmp_path}", *slow], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 180
    while not (tmp_path / "checkpoints" / "5").exists():
      assert first.poll() is None and time.time() < deadline, first.communicate()
      time.sleep(0.1)
    code, _, err, _ = train(tmp_path, *slow, timeout=120)
    assert code == 4
    assert f"is in use by pid {first.pid}" in one_error_line(err)
  finally:
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
  assert first.returncode == 143  # SIGTERM: saved and stopped; the lock is released
  third = subprocess.Popen([sys.executable, "train.py", "--config=configs/mnist_mlp.py",
                            f"--workdir={tmp_path}", *slow], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
  try:  # the same command takes the lock and resumes (no need to train to the end)
    first_line = third.stdout.readline()
    while first_line.startswith("data:"):
      first_line = third.stdout.readline()
    assert first_line.startswith("resumed from step"), first_line
  finally:
    third.send_signal(signal.SIGTERM)
    third.communicate(timeout=120)


def _largest_file(folder):
  files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
  return max(files, key=os.path.getsize)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished FAST run (checkpoints 10, 15 and 20 kept) and its params_sha256."""
  work = tmp_path_factory.mktemp("finished")
  assert train(work, *FAST)[0] == 0
  return work, json.load(open(work / "summary.json"))["params_sha256"]


@pytest.mark.parametrize("damage", ["flip_one_bit", "truncate", "zero", "delete_metadata"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, finished_run,
                                                                  damage):
  template, sha = finished_run
  work = tmp_path / "run"
  shutil.copytree(template, work)
  os.remove(work / "summary.json")
  state_dir = work / "checkpoints" / "20" / "state"
  if damage == "delete_metadata":
    os.remove(state_dir / "_METADATA")
  else:
    path = _largest_file(state_dir)
    data = bytearray(open(path, "rb").read())
    if damage == "flip_one_bit":
      data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
      data = data[:len(data) // 3]
    else:
      data = bytearray(len(data))
    open(path, "wb").write(bytes(data))
  code, out, err, _ = train(work, *FAST)  # the same command again
  assert code == 0, err[-2000:]
  assert "checkpoint step 20 skipped: " in out and "resumed from step 15" in out
  assert json.load(open(work / "summary.json"))["params_sha256"] == sha  # still bit-exact
  reason = json.load(open(work / "checkpoints_rejected" / "20" / "REJECTED.json"))["reason"]
  assert reason.startswith(("its checksum does not match", "it cannot be read"))


def test_partial_metrics_line_and_unreadable_config_json(tmp_path):
  assert train(tmp_path, *FAST)[0] == 0
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 25, "test_lo')  # a kill in the middle of a write
  code, out, err, _ = train(tmp_path, *FAST)
  assert code == 0, err[-2000:]
  (tmp_path / "config.json").write_text("")
  code, _, err, _ = train(tmp_path, *FAST)
  assert code == 2 and "config.json cannot be read; use --force" in one_error_line(err)
  assert train(tmp_path, *FAST, "--force")[0] == 0


def test_divergence_names_what_went_non_finite_and_the_step(tmp_path):
  code, _, err, seconds = train(tmp_path, "--config.optimizer.learning_rate=1e30",
                                "--config.estimator.kind=ste", "--config.log_every_steps=1",
                                "--config.num_train_steps=50")
  line = one_error_line(err)
  assert code == 3 and "became" in line and "at step" in line and "step None" not in line
  assert ("the loss became" in line) or ("the update" in line)


def _write_idx(path, array, gz=True):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                  for d in array.shape)
  (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def _mnist_folder(folder, train_images=None, train_labels=None, test_labels=None):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (64, 28, 28)) if train_images is None else train_images
  labels = rng.integers(0, 10, len(images)) if train_labels is None else train_labels
  _write_idx(folder / "train-images-idx3-ubyte.gz", images)
  _write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
  _write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:16])
  _write_idx(folder / "t10k-labels-idx1-ubyte.gz",
             labels[:16] if test_labels is None else test_labels)


@pytest.mark.parametrize("case, message", [
    ("empty_file", "train-images-idx3-ubyte.gz is not an IDX file: 0 bytes"),
    ("six_bytes", "train-images-idx3-ubyte.gz is truncated: 6 bytes"),
    ("corrupt_gzip", "train-images-idx3-ubyte.gz cannot be read"),
    ("no_examples", "train-images-idx3-ubyte.gz holds no examples"),
    ("label_out_of_range", "train-labels-idx1-ubyte.gz: labels must be in 0 … 9; label 12"),
])
def test_bad_idx_files_are_named(tmp_path, case, message):
  folder = tmp_path / "idx"
  if case == "no_examples":
    _mnist_folder(folder, train_images=np.zeros((0, 28, 28)), train_labels=np.zeros(0))
  elif case == "label_out_of_range":
    labels = np.zeros(64)
    labels[5] = 12
    _mnist_folder(folder, train_labels=labels)
  else:
    _mnist_folder(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    content = {"empty_file": b"", "six_bytes": gzip.compress(b"\0\0\x08\x03\0\0"),
               "corrupt_gzip": b"\x1f\x8b\x08\x00garbage"}[case]
    path.write_bytes(content)
  with pytest.raises(DataError, match=message):
    load_image_dataset("mnist", str(folder))
  code, _, err, _ = train(tmp_path / "w", *FAST, f"--config.data.data_dir={folder}")
  assert code == 2 and message.split(":")[0].split(" ")[0] in one_error_line(err)


def test_bad_text_files_are_named_with_the_line(tmp_path):
  cases = {"latin1.txt": ("café".encode("latin-1"), "is not UTF-8 text"),
           "bad.jsonl": (b'{"text": "a"}\n{"text": \n', r"bad.jsonl, line 2: not JSON"),
           "notext.jsonl": (b'{"text": "a"}\n{"body": "b"}\n',
                            r'notext.jsonl, line 2: expected an object with a "text" string'),
           "empty.txt": (b"", "holds no text")}
  for name, (content, message) in cases.items():
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
      text_lib.read_documents(str(tmp_path / name))


def test_unprepared_tfds_never_downloads(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  with pytest.raises(DataError, match="tfds build mnist"):
    load_image_dataset("mnist", source="tfds", tfds_data_dir=str(tmp_path))
  assert not any(os.scandir(tmp_path))  # nothing was downloaded or prepared


def test_unreadable_images_are_skipped_counted_and_reported(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for c in ("a", "b"):
      os.makedirs(tmp_path / split / c)
      for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / split / c / f"{i}.jpg")
  (tmp_path / "train" / "a" / "1.jpg").write_bytes(b"not a jpeg")
  good = (tmp_path / "val" / "b" / "0.jpg").read_bytes()
  (tmp_path / "val" / "b" / "0.jpg").write_bytes(good[:40])  # truncated
  data = make_pipeline(name="imagefolder", data_dir=str(tmp_path), batch_size=8,
                       eval_batch_size=8, image_size=32, seed=0)
  batch = data.train[0]
  assert batch["image"].shape == (8, 32, 32, 3)  # the batch keeps its size
  (val,) = list(data.eval_sets["test"])
  assert val["weights"].sum() == 7  # the truncated validation image has weight 0
  assert {os.path.basename(p) for p in data.skipped} == {"1.jpg", "0.jpg"}
  config = mnist_mlp.get_config()
  config.model = {"name": "mlp", "features": (10, 2)}
  config.data.update(name="imagefolder", data_dir=str(tmp_path), batch_size=8,
                     eval_batch_size=8, eval_train=False, image_size=32)
  config.num_train_steps = 2
  summary = train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["skipped_examples"] == 2
