"""``jaxgan prepare tfds:NAME``: a TFDS dataset prepared as ArrayRecord, then read back by jaxgan (no TensorFlow).

TensorFlow is not a test dependency, and TFDS needs it to encode image
features, so the dataset here is a tiny local builder whose features are plain
uint8 tensors (TFDS writes those without TensorFlow). What runs for real: the
command line, TFDS's builder and writer asked for ArrayRecord, the files on
disk, and jaxgan's tfds source reading them through ``tfds.data_source``. What
does not: TensorFlow's image encoding and any download (cycle_gan's archives).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxgan import cli
from jaxgan import config as config_lib
from jaxgan.data import create_pipeline, tfds_source

tfds = pytest.importorskip("tensorflow_datasets")

NAME = "jaxgan_prepare_tiny"


def _photo(split: str, i: int) -> np.ndarray:
  return np.random.default_rng([len(split), i]).integers(0, 256, (8, 8, 3)).astype(np.uint8)


class JaxganPrepareTiny(tfds.core.GeneratorBasedBuilder):
  """Registered as ``jaxgan_prepare_tiny``: 4 train and 2 test records of an 8x8 photo and its 1-channel mask."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "photo": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
        "mask": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples("train", 4), "test": self._generate_examples("test", 2)}

  def _generate_examples(self, split, n):
    for i in range(n):
      photo = _photo(split, i)
      yield f"{split}{i}", {"photo": photo, "mask": photo[..., :1] // 2}


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache"))


def _prepare(*argv: str) -> int:
  """The command line ``jaxgan prepare ARGV...``: its exit status."""
  return cli.main(["prepare", *argv])


def _json_line(capsys) -> dict:
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _files(root):
  return sorted((os.path.relpath(os.path.join(d, f), root), os.path.getmtime(os.path.join(d, f)))
                for d, _, fs in os.walk(root) for f in fs)


def test_prepare_writes_array_record_that_jaxgan_reads(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: True)   # this builder needs no TensorFlow
  data_dir = str(tmp_path / "tfds")
  assert _prepare(f"tfds:{NAME}", "--data_dir", data_dir) == 0
  out = _json_line(capsys)
  assert out["splits"] == {"train": 4, "test": 2} and not out["already_prepared"]
  names = [f for f, _ in _files(data_dir)]
  assert any(".array_record-" in f for f in names) and not any("tfrecord" in f for f in names), names
  c = config_lib.get_base_config()
  c.update(dict(dataset=f"tfds:{NAME}", tfds_data_dir=data_dir, tfds_download=False, tfds_features="photo,mask",
                output_nc=1, load_size=8, crop_size=8, batch_size=1, netG="resnet_6blocks"))
  test = create_pipeline(c, split="test", num_epochs=1, process_index=0, process_count=1)
  assert test.paired and test.num_examples == 2
  got = sorted(b["A"][0].tobytes() for b in test.iterator() if b["A"].dtype == np.uint8)   # shipped as pixels
  assert got == sorted(_photo("test", i).tobytes() for i in range(2))         # the very images written
  b = next(create_pipeline(c, process_index=0, process_count=1).iterator())
  assert b["A"].shape == (1, 8, 8, 3) and b["B"].shape == (1, 8, 8, 1)
  before = _files(data_dir)
  assert _prepare(f"tfds:{NAME}", "--data_dir", data_dir) == 0               # a second run changes nothing
  assert _json_line(capsys)["already_prepared"]
  assert _files(data_dir) == before


def test_prepare_without_tensorflow_says_how_and_writes_nothing(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: False)
  assert _prepare(f"tfds:{NAME}", "--data_dir", str(tmp_path)) == 1
  err = capsys.readouterr().err
  assert "needs TensorFlow (only for this step" in err and 'pip install -e ".[tfds]"' in err, err
  assert _files(tmp_path) == []
  assert _prepare("tfds:no_such_dataset_xyz", "--data_dir", str(tmp_path)) == 1
  assert "TFDS does not know 'no_such_dataset_xyz'" in capsys.readouterr().err
  assert _prepare("folder:/data/x") == 2
  assert "only tfds:NAME[/CONFIG] datasets are prepared" in capsys.readouterr().err


def test_prepare_refuses_and_keeps_a_tfrecord_copy(tmp_path, monkeypatch, capsys):
  """A dataset prepared by plain ``download_and_prepare()`` (TFRecord) is neither read nor replaced."""
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: True)
  assert _prepare(f"tfds:{NAME}", "--data_dir", str(tmp_path)) == 0
  (info,) = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f == "dataset_info.json"]
  with open(info) as f:
    meta = json.load(f)
  meta["fileFormat"] = "tfrecord"                                         # as TFDS's default writes it
  with open(info, "w") as f:
    json.dump(meta, f)
  before = _files(tmp_path)
  assert _prepare(f"tfds:{NAME}", "--data_dir", str(tmp_path)) == 1
  err = capsys.readouterr().err
  assert "is stored as tfrecord" in err and "jaxgan does not replace it" in err, err
  assert _files(tmp_path) == before
