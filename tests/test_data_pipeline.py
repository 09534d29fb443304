"""The Grain pipeline: determinism, worker processes, exact resume, per-process shards, epochs."""
from __future__ import annotations

import os
import shutil

import grain
import numpy as np
import pytest
from etils import epath
from PIL import Image

from jaxgan import config as config_lib
from jaxgan.data import DataError, create_pipeline


def _cfg(model="pix2pix", **kw):
  c = config_lib.get_base_config() if model == "pix2pix" else config_lib.get_cyclegan_base_config()
  c.update(dict(dataset="demo:facades", load_size=20, crop_size=16, batch_size=2, netG="resnet_6blocks",
                num_workers=0, demo_train_size=5, demo_test_size=3))
  c.update(kw)
  return c


def _pipe(config, **kw):
  kw.setdefault("process_index", 0)
  kw.setdefault("process_count", 1)
  return create_pipeline(config, **kw)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _same(xs, ys):
  return len(xs) == len(ys) and all(np.array_equal(x[k], y[k]) for x, y in zip(xs, ys) for k in ("A", "B"))


@pytest.fixture
def id_folder(tmp_path):
  """10 constant side-by-side images; channel 0 of A holds the image id (10..19)."""
  os.makedirs(tmp_path / "train")
  for i in range(10):
    img = np.zeros((6, 12, 3), np.uint8)
    img[:, :6, 0] = 10 + i
    img[:, 6:, 1] = 10 + i
    Image.fromarray(img).save(tmp_path / "train" / f"{i:02d}.png")
  return tmp_path


def _ids(batch):
  return [int(round(float(a[..., 0].mean()))) for a in batch["A"]]   # uint8 pixels


def test_deterministic_for_a_seed():
  c = _cfg()
  first = _take(_pipe(c).iterator(), 3)
  assert _same(first, _take(_pipe(c).iterator(), 3))
  assert first[0]["A"].shape == (2, 16, 16, 3) and first[0]["A"].dtype == np.uint8   # shipped as pixels
  assert not _same(first, _take(_pipe(c, seed=1).iterator(), 3))
  # Evaluation: test-time preprocessing (no random crop or flip), no shuffle -- the seed does not matter.
  ev = _take(_pipe(c, split="test", num_epochs=1).iterator(), 2)
  assert _same(ev, _take(_pipe(c, split="test", seed=5, num_epochs=1).iterator(), 2))


def test_resume_mid_epoch_and_across_epochs_gives_identical_batches():
  c = _cfg()
  p = _pipe(c)
  it = p.iterator()
  _take(it, 2)                               # position 4: epoch 0 has 5 examples
  state = it.get_state()
  assert state["next_position"] == 4
  expected = _take(it, 4)                    # crosses into epochs 1 and 2
  resumed = p.iterator()
  resumed.set_state(state)
  assert _same(_take(resumed, 4), expected)
  fresh = _pipe(_cfg()).iterator()           # a new process: pipeline rebuilt from the config
  fresh.set_state(state)
  assert _same(_take(fresh, 4), expected)
  with pytest.raises(DataError, match="next_position"):
    fresh.set_state({"foo": 1})


def test_grain_checkpoint_handler_roundtrip(tmp_path):
  p = _pipe(_cfg())
  it = p.iterator()
  _take(it, 3)
  handler = grain.checkpoint.CheckpointHandler()
  handler.save(epath.Path(tmp_path), item=it)
  expected = _take(it, 2)
  restored = handler.restore(epath.Path(tmp_path), item=p.iterator())
  assert _same(_take(restored, 2), expected)


def test_workers_give_identical_batches_and_portable_state():
  c0, c2 = _cfg("cyclegan", dataset="demo:seasons"), _cfg("cyclegan", dataset="demo:seasons", num_workers=2)
  it0, it2 = _pipe(c0).iterator(), _pipe(c2).iterator()
  try:
    assert _same(_take(it0, 3), _take(it2, 3))
    state = it2.get_state()
    expected = _take(it2, 2)
    back = _pipe(c0).iterator()              # resume a 2-worker run without workers ...
    back.set_state(state)
    assert _same(_take(back, 2), expected)
    forth = _pipe(c2).iterator()             # ... and a 0-worker run with 2 workers
    forth.set_state(it0.get_state())
    assert _same(_take(forth, 2), _take(it0, 2))
    forth.close()
  finally:
    it2.close()


def test_epochs_are_permutations_reshuffled_each_epoch(id_folder):
  c = _cfg(dataset=f"folder:{id_folder}", load_size=6, crop_size=6, batch_size=5)
  p = _pipe(c)
  assert p.num_examples == 10 and p.steps_per_epoch == 2
  it = p.iterator()
  epochs = [sum((_ids(b) for b in _take(it, 2)), []) for _ in range(3)]
  for e in epochs:
    assert sorted(e) == list(range(10, 20))
  assert epochs[0] != epochs[1] != epochs[2]
  ordered = sum((_ids(b) for b in _take(_pipe(c, shuffle=False).iterator(), 2)), [])
  assert ordered == list(range(10, 20))


def test_finite_epochs_end_and_train_drops_only_the_final_remainder(id_folder):
  c = _cfg(dataset=f"folder:{id_folder}", load_size=6, crop_size=6, batch_size=4)
  train = list(_pipe(c, num_epochs=1).iterator())
  assert [len(b["A"]) for b in train] == [4, 4]            # train drops the remainder
  ev = _pipe(c, split="train", shuffle=False, num_epochs=2)
  assert len(list(ev.iterator())) == 5                    # 20 examples in batches of 4
  with pytest.raises(DataError, match="num_epochs"):
    _pipe(c, num_epochs=0)


def test_process_shards_side_by_side_are_the_one_process_batches_in_order(id_folder):
  c = _cfg(dataset=f"folder:{id_folder}", load_size=6, crop_size=6, batch_size=4)
  single = _take(_pipe(c).iterator(), 5)
  shards = [_take(_pipe(c, process_index=i, process_count=2).iterator(), 5) for i in range(2)]
  assert all(b["A"].shape[0] == 2 for s in shards for b in s)        # local batch = 4 // 2
  # Step s of process 0 then process 1 (the mesh's device order) is global batch s of a one-process run,
  # image for image: every device sees what it would see in one process.
  for s in range(5):
    assert _ids(shards[0][s]) + _ids(shards[1][s]) == _ids(single[s])
    np.testing.assert_array_equal(np.concatenate([shards[0][s]["A"], shards[1][s]["A"]]), single[s]["A"])
  # A finite split's last, partial global batch is shared out as evenly as it can be.
  shutil.copytree(id_folder / "train", id_folder / "test")
  one = sum((_ids(b) for b in _pipe(c, split="test", num_epochs=1).iterator()), [])
  parts = [list(_pipe(c, split="test", num_epochs=1, process_index=i, process_count=2).iterator()) for i in range(2)]
  assert [[len(b["A"]) for b in p] for p in parts] == [[2, 2, 1], [2, 2, 1]]     # 10 = 4 + 4 + 2
  assert sum((_ids(a) + _ids(b) for a, b in zip(*parts)), []) == one
  with pytest.raises(DataError, match="multiple of the process count"):
    _pipe(_cfg(batch_size=3), process_index=0, process_count=2)
  with pytest.raises(DataError, match="process_index"):
    _pipe(c, process_index=2, process_count=2)


@pytest.mark.parametrize("netG,mode,want", [
    ("resnet_6blocks", "none", (20, 20)),
    ("unet_32", "none", (32, 32)),
    ("resnet_6blocks", "scale_width", (20, 20)),
    ("resnet_6blocks", "scale_width_and_crop", (16, 16)),
    ("resnet_6blocks", "crop", (16, 16)),
])
def test_preprocess_modes_through_the_pipeline(netG, mode, want):
  c = _cfg(netG=netG, preprocess=mode, demo_image_size=21)
  b = _take(_pipe(c).iterator(), 1)[0]
  assert b["A"].shape[1:3] == want and b["B"].shape[1:3] == want
  assert b["A"].dtype == b["B"].dtype == np.uint8


def test_config_errors_name_the_option():
  with pytest.raises(DataError, match="direction='up'"):
    _pipe(_cfg(direction="up"))
  with pytest.raises(DataError, match="preprocess='zoom'"):
    _pipe(_cfg(preprocess="zoom"))
  with pytest.raises(DataError, match="load_size >= crop_size"):
    _pipe(_cfg(load_size=8, crop_size=16))


def test_benchmark_command_reports_each_setting():
  import importlib.util  # pylint: disable=import-outside-toplevel
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "benchmark_data.py")
  spec = importlib.util.spec_from_file_location("benchmark_data", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  rows = bench.main(["--grid", "--sources", "demo:facades,tfds", "--batch-sizes", "1,2", "--workers", "0",
                     "--steps", "1", "--warmup", "0", "--json"])
  assert [(r["source"], r["batch_size"]) for r in rows] == [("demo:facades", 1), ("demo:facades", 2),
                                                           ("tfds", 1), ("tfds", 2)]
  assert all(r["images_per_s"] > 0 for r in rows)
  scan, = bench.main(["--scan", "20"])                      # the folder-scan mode, tiny
  assert scan["files_per_domain"] == 20 and scan["open_folder_s"] >= 0 and "create_pipeline_scale_width_s" in scan


@pytest.mark.parametrize("model,dataset", [("pix2pix", "demo:facades"), ("cyclegan", "demo:seasons")])
def test_create_pipeline_with_its_defaults_on_every_split(model, dataset):
  """The public call with its defaults (batch_size 1, num_epochs=None, JAX's processes) iterates endlessly."""
  c = config_lib.get_base_config() if model == "pix2pix" else config_lib.get_cyclegan_base_config()
  c.update(dict(dataset=dataset, load_size=20, crop_size=16, netG="resnet_6blocks", demo_train_size=3,
                demo_test_size=2))
  assert c.batch_size == 1
  for split in ("test", "train"):
    it = create_pipeline(c, split=split).iterator()
    batches = _take(it, 5)                     # past the end of the 2- and 3-image splits
    it.close()
    assert all(b["A"].shape == b["B"].shape == (1, 16, 16, 3) for b in batches)
    if split == "test":                        # no shuffle: every epoch is the same images in order
      assert _same(batches[:2], batches[2:4]) and not _same(batches[:1], batches[1:2])


def test_test_split_is_resized_whole_to_crop_size(tmp_path):
  """The reference tests with load_size = crop_size: a test image is resized to 16, not resized to 24 and cropped."""
  os.makedirs(tmp_path / "train")
  os.makedirs(tmp_path / "test")
  halves = []
  for i, split in enumerate(("train", "test", "test")):
    a = np.random.default_rng(i).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    b = np.random.default_rng(10 + i).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(tmp_path / split / f"{i}.png")
    if split == "test":
      halves.append((a, b))
  c = _cfg(dataset=f"folder:{tmp_path}", load_size=24, crop_size=16, batch_size=1)
  batches = _take(_pipe(c, split="test", num_epochs=1).iterator(), 2)
  for batch, (a, b) in zip(batches, halves):
    for key, half in (("A", a), ("B", b)):
      want = np.asarray(Image.fromarray(half).resize((16, 16), Image.BICUBIC))
      np.testing.assert_array_equal(batch[key][0], want)


# ----------------------------------------------------------------------------- shipping format and host sizing


def _gray16(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((8, 8), value, np.uint16)).save(path)


def test_16bit_data_ships_uint16_exactly_and_a_narrower_stream_warns(tmp_path, monkeypatch, caplog):
  from jaxgan.data import feed  # pylint: disable=import-outside-toplevel
  from jaxgan.images import batch_to_float  # pylint: disable=import-outside-toplevel
  for i in range(3):
    _gray16(str(tmp_path / "deep" / "trainA" / f"{i}.png"), 1000 * i + 1)     # not a multiple of 257: 16 bits used
    _gray16(str(tmp_path / "deep" / "trainB" / f"{i}.png"), 65535 - i)
  c = _cfg("cyclegan", dataset=f"folder:{tmp_path / 'deep'}", input_nc=1, output_nc=1, load_size=8, crop_size=8,
           preprocess="crop", no_flip=True, batch_size=3)
  p = _pipe(c, shuffle=False)
  b = _take(p.iterator(), 1)[0]
  assert p.dtypes == {"A": np.uint16, "B": np.uint16} and b["A"].dtype == b["B"].dtype == np.uint16
  assert [int(a.max()) for a in b["A"]] == [1, 1001, 2001]                  # every bit kept
  np.testing.assert_array_equal(batch_to_float(b)["A"][1], np.float32((1001 / 65535 - 0.5) / 0.5))
  # A folder that starts 8-bit ships uint8; a later 16-bit image is rounded with a warning naming it and the fix.
  Image.fromarray(np.full((8, 8), 7, np.uint8), "L").save(tmp_path / "deep" / "trainA" / "0.png")
  monkeypatch.setattr(feed, "_WARNED", set())
  with caplog.at_level("WARNING"):
    b = _take(_pipe(c, shuffle=False).iterator(), 1)[0]
  assert b["A"].dtype == np.uint8 and [int(a.max()) for a in b["A"]] == [7, 4, 8]   # 1001/257, 2001/257 rounded
  assert "1.png" in caplog.text and "data_dtype=uint16" in caplog.text
  c.data_dtype = "float32"                                                  # the override: host floats in [-1, 1]
  b = _take(_pipe(c, shuffle=False).iterator(), 1)[0]
  assert b["A"].dtype == np.float32 and b["A"][1].max() == np.float32((1001 / 65535 - 0.5) / 0.5)
  with pytest.raises(DataError, match="data_dtype='int8'"):
    _pipe(_cfg(data_dtype="int8"))


def test_host_work_is_sized_to_the_host_and_the_config_overrides_it(monkeypatch):
  from jaxgan.data import feed  # pylint: disable=import-outside-toplevel
  sizing = feed.data_parallelism
  # A process driving 8 accelerators on a 16-core host: worker processes, one core left to training.
  assert sizing(-1, 0, train=True, cores=16, accelerators=8) == (15, 1)
  assert sizing(-1, 0, train=True, cores=64, accelerators=1) == (4, 1)
  assert sizing(-1, 0, train=True, cores=2, accelerators=1) == (1, 1)
  # CPU devices (they share the cores with the step) and evaluation splits: threads in the process.
  assert sizing(-1, 0, train=True, cores=16, accelerators=0) == (0, 8)
  assert sizing(-1, 0, train=False, cores=16, accelerators=8) == (0, 8)
  assert sizing(-1, 0, train=True, cores=1, accelerators=0) == (0, 1)
  assert sizing(3, 0, train=True, cores=16, accelerators=8) == (3, 1) and sizing(0, 5, cores=16) == (0, 5)
  with pytest.raises(DataError, match="num_workers=-2"):
    sizing(-2, 0)
  # Through create_pipeline with the recipe's default (num_workers=-1) on a pretend 16-core, 8-GPU host.
  monkeypatch.setattr(feed, "host_cores", lambda: 16)
  monkeypatch.setattr(feed, "local_accelerators", lambda: 8)
  c = config_lib.get_cyclegan_base_config()
  assert c.num_workers == -1
  c.update(dict(dataset="demo:seasons", load_size=20, crop_size=16, netG="resnet_6blocks", demo_train_size=3))
  p = _pipe(c)
  assert (p.num_workers, p.num_threads) == (15, 1)
  assert _pipe(c, split="test").num_workers == 0
  c.num_workers, c.data_threads = 0, 3                                      # the override keys
  assert (_pipe(c).num_workers, _pipe(c).num_threads) == (0, 3)
  monkeypatch.setattr(feed, "local_accelerators", lambda: 0)
  c.num_workers, c.data_threads = -1, 0
  assert (_pipe(c).num_workers, _pipe(c).num_threads) == (0, 8)


def test_worker_processes_do_not_run_an_unguarded_script_again(tmp_path):
  """Grain spawns its workers; they must not re-run a user's script that has no ``if __name__ == "__main__":``
  (with auto sizing, accelerator hosts start workers by default)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  script = tmp_path / "train_script.py"
  script.write_text(
      "print('script body', flush=True)\n"
      "from jaxgan import config as config_lib\n"
      "from jaxgan.data import create_pipeline\n"
      "c = config_lib.get_cyclegan_base_config()\n"
      "c.update(dict(dataset='demo:seasons', load_size=20, crop_size=16, batch_size=2, netG='resnet_6blocks',\n"
      "              demo_train_size=3, num_workers=1))\n"
      "it = create_pipeline(c, process_index=0, process_count=1).iterator()\n"
      "print('batch', next(it)['A'].dtype, flush=True)\n"
      "it.close()\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.count("script body") == 1 and "batch uint8" in out.stdout, out.stdout
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
