"""Data sources: demo generators, folder layouts, TFDS (mock data), and every bad-input error."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from jaxgan import config as config_lib
from jaxgan.data import DataError, create_pipeline
from jaxgan.data import demo, demo_facades, sources
from jaxgan.data.image_io import to_model_range
from jaxgan.images import batch_to_float, to_model_range_np


def _cfg(model="pix2pix", **kw):
  c = config_lib.get_base_config() if model == "pix2pix" else config_lib.get_cyclegan_base_config()
  c.update(dict(load_size=12, crop_size=8, batch_size=2, netG="resnet_6blocks", num_workers=0))
  c.update(kw)
  return c


def _pipe(config, **kw):
  kw.setdefault("process_index", 0)
  kw.setdefault("process_count", 1)
  return create_pipeline(config, **kw)


def _batches(pipeline, n):
  it = pipeline.iterator()
  out = [next(it) for _ in range(n)]
  it.close()
  return out


def _ident(x: np.ndarray) -> int:
  """The id encoded in channel 0 of a constant image (value id in 0..255), whatever dtype it ships in."""
  return int(round((float(to_model_range_np(x)[..., 0].mean()) + 1) * 127.5))


def _const(path, value: int, tag: int, size=(10, 10)):
  img = np.zeros(size + (3,), np.uint8)
  img[..., 0], img[..., 1], img[..., 2] = value, tag, 255 - value
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(img).save(path)


def _snapshot(root):
  return sorted((p, os.path.getsize(os.path.join(d, p)), os.path.getmtime(os.path.join(d, p)))
                for d, _, fs in os.walk(root) for p in fs)


def _l1(a, b):
  return float(np.abs(a - b).mean())


def _psnr(a, b):
  return float(10 * np.log10(4.0 / np.mean((a - b) ** 2)))


# ----------------------------------------------------------------------------- demo


def test_demo_is_deterministic_and_varies():
  lab, photo = demo.facades_example(3, size=40)
  lab2, photo2 = demo.facades_example(3, size=40)
  np.testing.assert_array_equal(lab, lab2)
  np.testing.assert_array_equal(photo, photo2)
  assert lab.shape == photo.shape == (40, 40, 3) and lab.dtype == photo.dtype == np.uint8
  colours = {tuple(c) for c in lab.reshape(-1, 3)}
  assert colours <= {tuple(c) for c in demo_facades.LABEL_COLORS} and len(colours) >= 4
  assert not np.array_equal(photo, demo.facades_example(4, size=40)[1])
  assert not np.array_equal(photo, demo.facades_example(3, size=40, seed=1)[1])
  assert not np.array_equal(photo, demo.facades_example(3, size=40, split="test")[1])
  w1 = demo.seasons_example(2, style="winter", size=40)
  np.testing.assert_array_equal(w1, demo.seasons_example(2, style="winter", size=40))
  assert not np.array_equal(w1, demo.seasons_example(3, style="winter", size=40))
  with pytest.raises(DataError, match="style"):
    demo.seasons_example(0, style="autumn")


def test_demo_pipelines_give_the_generated_images():
  c = _cfg(dataset="demo:facades", load_size=32, crop_size=32, demo_train_size=6, demo_test_size=3)
  p = _pipe(c, split="test", num_epochs=1)
  assert p.paired and p.num_examples == 3 and p.steps_per_epoch == 2
  batches = _batches(p, 2)
  assert batches[1]["A"].shape == (1, 32, 32, 3)            # the last, partial eval batch is kept
  lab, photo = demo.facades_example(1, split="test", size=32)
  np.testing.assert_array_equal(batches[0]["A"][1], lab)      # 8-bit pixels ship as they are (uint8)
  np.testing.assert_array_equal(batches[0]["B"][1], photo)
  # Both directions are usable: BtoA makes the photo the input.
  c.direction = "BtoA"
  swapped = _batches(_pipe(c, split="test", num_epochs=1), 1)[0]
  np.testing.assert_array_equal(swapped["A"], batches[0]["B"])
  np.testing.assert_array_equal(swapped["B"], batches[0]["A"])


def test_demo_seasons_unpaired_train_and_aligned_test():
  c = _cfg("cyclegan", dataset="demo:seasons", load_size=32, crop_size=32, demo_train_size=4, demo_test_size=2)
  train = _pipe(c)
  assert not train.paired and train.num_examples == 4
  test = _pipe(c, split="test", num_epochs=1)
  assert test.paired
  b = _batches(test, 1)[0]
  for i in range(2):   # the test split pairs each summer scene with its own winter rendering
    np.testing.assert_array_equal(b["A"][i], demo.seasons_example(i, style="summer", split="test", size=32))
    np.testing.assert_array_equal(b["B"][i], demo.seasons_example(i, style="winter", split="test", size=32))
  # Train A and train B come from disjoint scenes (even / odd scene ids).
  data = demo.open_demo("seasons", "train", c)
  np.testing.assert_array_equal(data.domain_b.load(0), demo.seasons_example(1, style="winter", size=32))
  assert not np.array_equal(data.domain_b.load(0), demo.seasons_example(0, style="winter", size=32))
  np.testing.assert_array_equal(data.domain_a.load(1), demo.seasons_example(2, style="summer", size=32))
  np.testing.assert_array_equal(data.domain_a[1], data.domain_a.load(1))   # Grain random-access protocol
  assert _pipe(_cfg("cyclegan", dataset="demo:seasons", max_dataset_size=3)).num_examples == 3
  with pytest.raises(DataError, match="demo:cityscapes"):
    _pipe(_cfg(dataset="demo:cityscapes"))


def test_every_dataset_kind_has_a_registered_backend():
  """The backends register themselves at import (jaxgan.data imports them); only config's kinds are accepted."""
  assert sorted(sources._OPENERS) == sorted(config_lib.DATASET_KINDS)   # pylint: disable=protected-access
  assert sources._OPENERS["demo"] is demo.open_demo                      # pylint: disable=protected-access
  with pytest.raises(ValueError, match="DATASET_KINDS"):
    sources.register("http")


def _demo_sets(name: str, direction: str, split: str, n: int, size: int):
  """(inputs, targets, oracle targets) as float [-1, 1] arrays of one demo dataset and direction."""
  inputs, truth, oracle = [], [], []
  for i in range(n):
    if name == "facades":
      a, b = demo.facades_example(i, split=split, size=size)
      b2 = demo.facades_example(i, split=split, size=size, noise=1)[1]
    else:
      src, dst = ("summer", "winter") if direction == "AtoB" else ("winter", "summer")
      a = demo.seasons_example(i, style=src, split=split, size=size)
      b = demo.seasons_example(i, style=dst, split=split, size=size)
      b2 = demo.seasons_example(i, style=dst, split=split, size=size, noise=1)
    inputs.append(a)
    truth.append(b)
    oracle.append(b2)
  return tuple(to_model_range(np.stack(x)) for x in (inputs, truth, oracle))


@pytest.mark.parametrize("name,direction", [("facades", "AtoB"), ("seasons", "AtoB"), ("seasons", "BtoA")])
def test_demo_oracle_beats_mean_image_beats_copying_the_input(name, direction):
  """A perfect model (same scene, other noise) is far better than the mean target image, itself far
  better than returning the input: the metrics have room to show what a model learned."""
  inputs, truth, oracle = _demo_sets(name, direction, "test", 16, 64)
  mean = np.broadcast_to(truth.mean(axis=0), truth.shape)   # the best input-ignoring constant (in-sample)
  assert _l1(truth, truth) == 0.0 and not np.array_equal(oracle, truth)
  good, const, copy = _l1(oracle, truth), _l1(mean, truth), _l1(inputs, truth)
  assert good < 0.4 * const and const < 0.6 * copy, (good, const, copy)
  assert _psnr(oracle, truth) > _psnr(mean, truth) + 8.0 > _psnr(inputs, truth) + 12.0


def _quantised(x: np.ndarray, levels: int = 16) -> np.ndarray:
  """[-1, 1] RGB -> one integer per pixel: the colour quantised to ``levels`` per channel."""
  q = np.clip(((x + 1) / 2 * levels).astype(np.int64), 0, levels - 1)
  return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


@pytest.mark.parametrize("name,direction", [("facades", "AtoB"), ("seasons", "AtoB"), ("seasons", "BtoA")])
def test_demo_target_is_predictable_from_the_input(name, direction):
  """Every scene-level property of the target shows in the input: a per-pixel colour lookup table
  fitted on training pairs (colour of an input pixel -> mean target colour) already closes most of
  the gap between the mean image and the oracle on the test split (here 0.70 facades, 0.83 / 0.53
  seasons; on the earlier facades, whose wall colour was drawn at random and not labelled, 0.28)."""
  size = 48
  train_in, train_out, _ = _demo_sets(name, direction, "train", 40, size)
  inputs, truth, oracle = _demo_sets(name, direction, "test", 16, size)
  keys = _quantised(train_in).ravel()
  sums = np.zeros((16 ** 3, 3))
  counts = np.zeros(16 ** 3)
  np.add.at(sums, keys, train_out.reshape(-1, 3))
  np.add.at(counts, keys, 1)
  table = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], train_out.mean(axis=(0, 1, 2)))
  lookup = table[_quantised(inputs)]
  mean = np.broadcast_to(truth.mean(axis=0), truth.shape)
  closed = (_l1(mean, truth) - _l1(lookup, truth)) / (_l1(mean, truth) - _l1(oracle, truth))
  assert closed > 0.45, closed


def test_demo_oracle_config_renders_the_same_scenes_with_other_noise():
  c = _cfg("cyclegan", dataset="demo:seasons", load_size=16, crop_size=16, demo_test_size=3)
  oracle = demo.oracle_config(c)
  assert oracle.demo_noise == 1 and c.get("demo_noise", 0) == 0 and oracle.dataset == c.dataset
  real, second = (batch_to_float(_batches(_pipe(cfg, split="test"), 1)[0]) for cfg in (c, oracle))
  for key, style in (("A", "summer"), ("B", "winter")):
    np.testing.assert_array_equal(second[key][0], to_model_range(
        demo.seasons_example(0, style=style, split="test", size=16, noise=1)))
    assert 0 < _l1(second[key], real[key]) < 0.1
  assert demo.oracle_config(_cfg(dataset="folder:/data/x")) is None


def test_demo_test_split_is_rendered_at_crop_size():
  """Non-train splits are generated at crop_size, so the test-time resize to crop_size changes nothing."""
  c = _cfg(dataset="demo:facades", load_size=40, crop_size=32, demo_test_size=2, demo_train_size=2)
  assert demo.open_demo("facades", "test", c).pairs.load(0)[0].shape == (32, 32, 3)
  assert demo.open_demo("facades", "train", c).pairs.load(0)[0].shape == (40, 40, 3)
  assert demo.open_demo("facades", "test", _cfg(demo_image_size=24)).pairs.load(0)[0].shape == (24, 24, 3)


def test_demo_facade_materials_are_label_classes():
  """Each facade's wall and roof material is a class of its own in the label map."""
  seen_walls = set()
  for i in range(24):
    lab, _ = demo.facades_example(i, size=32)
    classes = {demo_facades.LABEL_COLORS.tolist().index(list(c)) for c in np.unique(lab.reshape(-1, 3), axis=0)}
    walls = classes & set(demo_facades.WALLS)
    assert len(walls) == 1 and len(classes & set(demo_facades.ROOFS)) == 1, classes
    seen_walls |= walls
  assert seen_walls == set(demo_facades.WALLS)


# ----------------------------------------------------------------------------- folders


@pytest.fixture
def unpaired_dir(tmp_path):
  for i in range(5):
    _const(tmp_path / "trainA" / f"a{i}.png", 10 + i, 50)
  for j in range(3):
    _const(tmp_path / "trainB" / "sub" / f"b{j}.jpg" if j == 2 else tmp_path / "trainB" / f"b{j}.png", 100 + j, 200)
  for i in range(2):
    _const(tmp_path / "testA" / f"t{i}.png", 30 + i, 50)
    _const(tmp_path / "testB" / f"u{i}.png", 130 + i, 200)
  return tmp_path


def test_unpaired_folder_samples_both_domains(unpaired_dir):
  before = _snapshot(unpaired_dir)
  c = _cfg("cyclegan", dataset=f"folder:{unpaired_dir}", batch_size=1)
  p = _pipe(c)
  assert not p.paired and p.num_examples == 5          # an epoch is max(len A, len B)
  batches = _batches(p, 20)
  ids_a = [_ident(b["A"]) for b in batches]
  ids_b = [_ident(b["B"]) for b in batches]
  for e in range(4):
    assert sorted(ids_a[5 * e:5 * e + 5]) == [10, 11, 12, 13, 14]    # every A once per epoch
  assert set(ids_b) == {100, 101, 102}                               # B drawn at random, all reached
  assert ids_a[:5] != ids_a[5:10]                                    # a new shuffle each epoch
  serial = _batches(_pipe(c, shuffle=False), 5)
  assert [_ident(b["A"]) for b in serial] == [10, 11, 12, 13, 14]
  assert [_ident(b["B"]) for b in serial] == [100, 101, 102, 100, 101]
  c.direction = "BtoA"                                               # domains swap
  assert {_ident(b["A"]) for b in _batches(_pipe(c), 6)} <= {100, 101, 102}
  test = _pipe(_cfg("cyclegan", dataset=f"folder:{unpaired_dir}"), split="test")
  assert not test.paired                                             # names differ: not aligned
  with pytest.raises(DataError, match=r"needs aligned A/B pairs.*do not match.*only in trainA: \['a0'"):
    _pipe(_cfg(dataset=f"folder:{unpaired_dir}"))
  assert _snapshot(unpaired_dir) == before                           # nothing written into the data folder


def _side_by_side(path, seed, h=14, w=18):
  a = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
  a[..., 0] = np.linspace(0, 255, w).astype(np.uint8)[None, :]    # a left-to-right ramp shows flips
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.concatenate([a, a[..., ::-1]], axis=1)).save(path)   # B = A with channels reversed


def test_side_by_side_folder_keeps_pairs_aligned_through_crop_and_flip(tmp_path):
  for i in range(4):
    _side_by_side(str(tmp_path / "train" / f"{i}.png"), i)
  _side_by_side(str(tmp_path / "val" / "v.png"), 9)
  before = _snapshot(tmp_path)
  c = _cfg(dataset=f"folder:{tmp_path}", load_size=16, crop_size=12, batch_size=2)
  p = _pipe(c)
  assert p.paired and p.num_examples == 4
  flipped = []
  for b in _batches(p, 6):
    assert b["A"].shape == (2, 12, 12, 3)
    np.testing.assert_array_equal(b["B"], b["A"][..., ::-1])
    flipped += [bool(a[:, -1, 0].mean() < a[:, 0, 0].mean()) for a in b["A"]]
  assert 0 < sum(flipped) < len(flipped)                             # both flipped and unflipped pairs seen
  t = _pipe(c, split="test")                                         # no test/: falls back to val/
  assert t.num_examples == 1
  assert _snapshot(tmp_path) == before


def test_paired_folders_matched_by_name(tmp_path):
  for i, name in enumerate(["x", "y", "z"]):
    rng = np.random.default_rng(i)
    a = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    (tmp_path / "trainA").mkdir(exist_ok=True)
    (tmp_path / "trainB").mkdir(exist_ok=True)
    Image.fromarray(a).save(tmp_path / "trainA" / f"{name}.png")
    Image.fromarray(a[..., ::-1]).save(tmp_path / "trainB" / f"{name}.bmp")   # other extension, same name
  c = _cfg(dataset=f"folder:{tmp_path}", load_size=12, crop_size=8, preprocess="crop", batch_size=1)
  p = _pipe(c)
  assert p.paired and p.num_examples == 3
  for b in _batches(p, 6):
    np.testing.assert_array_equal(b["B"], b["A"][..., ::-1])


def test_formats_bit_depths_and_channels_in_a_folder(tmp_path):
  root = tmp_path / "trainA"
  root.mkdir()
  _const(str(root / "0.png"), 10, 0)
  Image.fromarray(np.full((10, 10, 3), 20, np.uint8)).save(root / "1.jpg", quality=100)
  Image.fromarray(np.full((10, 10, 3), 30, np.uint8)).save(root / "2.bmp")
  Image.fromarray(np.full((10, 10, 3), 40, np.uint8)).save(root / "3.tiff")
  Image.fromarray(np.full((10, 10, 3), 50, np.uint8)).save(root / "4.webp", lossless=True)
  Image.fromarray(np.full((10, 10), 60 * 257, np.uint16)).save(root / "5.png")     # 16-bit gray
  Image.fromarray(np.full((10, 10), 70, np.uint8), "L").save(root / "6.png")        # 8-bit gray
  Image.fromarray(np.full((10, 10, 4), 80, np.uint8), "RGBA").save(root / "7.png")  # with alpha
  (root / "notes.txt").write_text("not an image")
  _const(str(tmp_path / "trainB" / "b.png"), 1, 1)
  c = _cfg("cyclegan", dataset=f"folder:{tmp_path}", preprocess="crop", load_size=10, crop_size=10, batch_size=1)
  p = _pipe(c, shuffle=False)
  assert p.num_examples == 8
  values = [_ident(b["A"]) for b in _batches(p, 8)]
  assert values == [10, 20, 30, 40, 50, 60, 70, 80]
  c.input_nc = 1
  gray = _batches(_pipe(c, shuffle=False), 8)
  assert gray[5]["A"].shape == (1, 10, 10, 1)
  # The split's first image is 8-bit, so batches ship uint8: the 16-bit image is rounded, with a warning that
  # names it and the fix; data_dtype="uint16" keeps every bit (8-bit images widened exactly, x 257).
  assert gray[5]["A"].dtype == np.uint8 and gray[5]["A"].max() == 60
  c.data_dtype = "uint16"
  wide = _batches(_pipe(c, shuffle=False), 8)
  assert wide[5]["A"].dtype == np.uint16 and wide[5]["A"].max() == 60 * 257 and wide[6]["A"].max() == 70 * 257
  np.testing.assert_allclose(batch_to_float(wide[5])["A"], 60 * 257 / 65535 * 2 - 1, atol=1e-6)


def test_folder_layout_errors(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    _pipe(_cfg(dataset=f"folder:{tmp_path / 'missing'}"))
  (tmp_path / "trainA").mkdir()
  (tmp_path / "trainB").mkdir()
  with pytest.raises(DataError, match="trainA.* contains no images"):
    _pipe(_cfg("cyclegan", dataset=f"folder:{tmp_path}"))
  only_a = tmp_path / "only"
  _const(str(only_a / "trainA" / "a.png"), 1, 1)
  with pytest.raises(DataError, match="found .*trainA.* but not .*trainB"):
    _pipe(_cfg("cyclegan", dataset=f"folder:{only_a}"))
  flat = tmp_path / "flat"
  _const(str(flat / "img.png"), 1, 1)
  with pytest.raises(DataError, match=r"no 'train' split in a known layout; it contains: img.png"):
    _pipe(_cfg(dataset=f"folder:{flat}"))
  with pytest.raises(DataError, match="expected 'demo:<name>'"):
    _pipe(_cfg(dataset="images/"))


def test_undecodable_file_errors_or_is_skipped(tmp_path):
  for i in range(3):
    _const(str(tmp_path / "trainA" / f"{i}.png"), 10 + i, 0)
    _const(str(tmp_path / "trainB" / f"{i}.png"), 20 + i, 0)
  (tmp_path / "trainA" / "1.png").write_bytes(b"garbage")
  c = _cfg("cyclegan", dataset=f"folder:{tmp_path}", batch_size=1)
  with pytest.raises(DataError, match=r"cannot decode image file .*trainA/1.png.*skip_bad_images"):
    _batches(_pipe(c, shuffle=False), 3)
  c.skip_bad_images = True
  with pytest.warns(RuntimeWarning, match="1.png"):
    ids = [_ident(b["A"]) for b in _batches(_pipe(c, shuffle=False), 3)]
  assert ids == [10, 12, 12]                     # the bad file is replaced by the next readable one


def test_crop_on_small_image_names_the_file(tmp_path):
  _const(str(tmp_path / "trainA" / "tiny.png"), 1, 1, size=(6, 6))
  _const(str(tmp_path / "trainB" / "tiny.png"), 1, 1, size=(6, 6))
  c = _cfg(dataset=f"folder:{tmp_path}", preprocess="crop", crop_size=8, batch_size=1)
  with pytest.raises(DataError, match=r"tiny.png.*6x6.*smaller than crop_size=8"):
    _batches(_pipe(c), 1)


# ----------------------------------------------------------------------------- TFDS

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def test_tfds_cycle_gan_through_random_access(mock_tfds):
  c = _cfg("cyclegan", dataset="tfds:cycle_gan/horse2zebra", load_size=16, crop_size=12)
  p = _pipe(c)
  assert not p.paired and p.num_examples == 4
  b = _batches(p, 1)[0]
  assert b["A"].shape == b["B"].shape == (2, 12, 12, 3) and b["A"].dtype == np.uint8
  assert b["A"].std() > 5
  with pytest.raises(DataError, match="needs aligned A/B pairs.*unpaired"):
    _pipe(_cfg(dataset="tfds:cycle_gan/horse2zebra"))


def test_tfds_size_check_decodes_a_sample(mock_tfds):
  """TFDS records have no cheap size: the one-size check decodes the first few (mock images vary in size)."""
  c = _cfg("cyclegan", dataset="tfds:cycle_gan/horse2zebra", load_size=16, crop_size=12, preprocess="scale_width")
  with pytest.raises(DataError, match=r"horse2zebra\[trainA\]\[0\] \(\d+x\d+, WxH\) becomes .*image pools"):
    _pipe(c)


def test_tfds_user_chosen_feature_pair(mock_tfds):
  c = _cfg(dataset="tfds:oxford_iiit_pet", tfds_features="image,segmentation_mask", output_nc=1)
  p = _pipe(c)
  assert p.paired and p.num_examples == 4
  b = _batches(p, 1)[0]
  assert b["A"].shape == (2, 8, 8, 3) and b["B"].shape == (2, 8, 8, 1)
  with pytest.raises(DataError, match="tfds_features"):
    _pipe(_cfg(dataset="tfds:oxford_iiit_pet"))
  with pytest.raises(DataError, match="two feature names"):
    _pipe(_cfg(dataset="tfds:oxford_iiit_pet", tfds_features="image"))


def test_tfds_unknown_or_unprepared(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  with pytest.raises(DataError, match="TFDS does not know 'no_such_dataset_xyz'"):
    _pipe(_cfg(dataset="tfds:no_such_dataset_xyz", tfds_data_dir=str(tmp_path)))
  with pytest.raises(DataError, match="TFDS does not know 'cycle_gan/no_such_config'"):
    _pipe(_cfg("cyclegan", dataset="tfds:cycle_gan/no_such_config", tfds_data_dir=str(tmp_path)))
  c = _cfg("cyclegan", dataset="tfds:cycle_gan/facades", tfds_data_dir=str(tmp_path), tfds_download=False)
  with pytest.raises(DataError, match=r"not prepared in .*tfds_download=False.*jaxgan prepare tfds:cycle_gan/facades "
                     r"--data_dir .*pip install -e \"\.\[tfds\]\""):
    _pipe(c)
  from jaxgan.data import tfds_source  # pylint: disable=import-outside-toplevel
  real = tfds_source.importlib.util.find_spec
  monkeypatch.setattr(tfds_source.importlib.util, "find_spec",
                      lambda name, *a: None if name == "tensorflow" else real(name, *a))
  c.tfds_download = True
  with pytest.raises(DataError, match=r'not prepared .*jaxgan prepare tfds:cycle_gan/facades .*needs TensorFlow '
                     r'for that step only: pip install -e "\.\[tfds\]"'):
    _pipe(c)
  assert os.listdir(tmp_path) == [] or not any(f.endswith(".array_record") for _, _, fs in os.walk(tmp_path) for f in fs)


class _CountingStr(str):
  """A file stem that counts equality comparisons (the quadratic scan compared every pair)."""
  eq_calls = 0
  __hash__ = str.__hash__

  def __eq__(self, other):
    _CountingStr.eq_calls += 1
    return str.__eq__(self, other)


def test_unpaired_folder_scan_is_not_quadratic(tmp_path, monkeypatch):
  """Listing n unpaired files per domain compares stems O(n) times, not O(n^2) (speed: benchmark_data.py --scan)."""
  from jaxgan.data import folder
  n = 300
  for side in "AB":
    os.makedirs(tmp_path / f"train{side}")
    for i in range(n):
      (tmp_path / f"train{side}" / f"{side.lower()}{i:04d}.png").touch()   # never decoded when listing
  real_stem = folder._stem
  monkeypatch.setattr(folder, "_stem", lambda path, root: _CountingStr(real_stem(path, root)))
  _CountingStr.eq_calls = 0
  data = folder.open_folder(str(tmp_path), "train", _cfg("cyclegan"))
  assert data.pairs is None and len(data.domain_a) == len(data.domain_b) == n
  assert _CountingStr.eq_calls < 10 * n, _CountingStr.eq_calls        # was 2 n (n - 1) = 179,400


def test_folder_scan_reports_names_used_twice(tmp_path):
  """Same stems in the same order on both sides, but a stem used twice: not pairs, and the message says which."""
  for side, exts in (("A", ("png", "jpg")), ("B", ("png", "bmp"))):
    for ext in exts:
      _const(str(tmp_path / f"train{side}" / f"x.{ext}"), 1, 1)
    _const(str(tmp_path / f"train{side}" / "y.png"), 2, 2)
    _const(str(tmp_path / f"train{side}" / "z.png"), 3, 3)
  _const(str(tmp_path / "trainA" / "w.png"), 3, 3)
  from jaxgan.data import folder
  data = folder.open_folder(str(tmp_path), "train", _cfg())
  assert data.pairs is None
  assert "names used twice: ['x']" in data.why_unpaired and "only in trainA: ['w']" in data.why_unpaired


def _sized(path, w, h):
  _const(str(path), 1, 1, size=(h, w))


@pytest.mark.parametrize("mode", ["scale_width", "none"])
def test_cyclegan_refuses_images_of_several_sizes_before_training(tmp_path, monkeypatch, mode):
  """scale_width / none keep each image's shape; CycleGAN's pools need one: refused before init, with the fix."""
  _sized(tmp_path / "trainA" / "square.png", 16, 16)
  _sized(tmp_path / "trainA" / "wide.png", 16, 12)
  _sized(tmp_path / "trainB" / "b.png", 16, 16)
  c = _cfg("cyclegan", dataset=f"folder:{tmp_path}", preprocess=mode, load_size=16, crop_size=8, batch_size=1)
  from jaxgan import train
  monkeypatch.setattr(train, "init_state", lambda *a, **k: pytest.fail("reached model init"))
  with pytest.raises(DataError, match=r"domain A.*square\.png \(16x16, WxH\) becomes 16x16 but .*wide\.png "
                     r"\(16x12\) becomes 16x12; CycleGAN's image pools.*scale_width_and_crop"):
    train.train_and_evaluate(c, tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists() or not os.listdir(tmp_path / "run" / "checkpoints")
  c.preprocess = "scale_width_and_crop"                              # the suggested fix trains
  assert _batches(_pipe(c), 2)[1]["A"].shape == (1, 8, 8, 3)


def test_size_check_accepts_one_output_size_and_pix2pix_batches_of_one(tmp_path):
  _sized(tmp_path / "trainA" / "small.png", 16, 12)                 # same aspect ratio: both -> 16x12
  _sized(tmp_path / "trainA" / "large.png", 32, 24)
  _sized(tmp_path / "trainB" / "large.png", 32, 24)
  _sized(tmp_path / "trainB" / "small.png", 16, 12)
  c = _cfg("cyclegan", dataset=f"folder:{tmp_path}", preprocess="scale_width", load_size=16, crop_size=8,
           batch_size=1)
  assert {b["A"].shape for b in _batches(_pipe(c), 3)} == {(1, 12, 16, 3)}
  _sized(tmp_path / "trainA" / "tall.png", 16, 24)                  # paired by name: pix2pix, batch 1 is fine
  _sized(tmp_path / "trainB" / "tall.png", 16, 24)
  p2p = _cfg(dataset=f"folder:{tmp_path}", preprocess="scale_width", load_size=16, crop_size=8, batch_size=1)
  assert _pipe(p2p).paired
  p2p.batch_size = 2                                                 # a batch of two stacks them: refused
  with pytest.raises(DataError, match=r"large\.png \(32x24, WxH\) becomes 16x12 but .*tall\.png \(16x24\) becomes "
                     r"16x24; a batch stacks 2 images"):
    _pipe(p2p)
