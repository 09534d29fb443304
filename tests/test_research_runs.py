"""Defects found running jaxgan the way research runs do (pool off, many devices, batch-independent evaluation)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgan import cli, data, inference, metrics, pix2pix, train
from jaxgan.images import batch_to_float
from helpers import tiny_pix2pix_config

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32, "demo_train_size": 12,
        "demo_test_size": 2, "batch_size": 2, "num_train_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 2, "sample_every_steps": 0, "eval_batches": 1}


def _config(recipe: str, **overrides):
  config = cli.load_config_file(str(ROOT / "configs" / f"{recipe}.py"))
  return cli.apply_overrides(config, [(k, str(v)) for k, v in {**TINY, **overrides}.items()])


def test_cyclegan_without_pool_checkpoints_resumes_and_translates(tmp_path):
  """pool_size=0 used to crash at the first checkpoint (zero-size pool arrays cannot be saved)."""
  config = _config("cyclegan_demo", netG="resnet_6blocks", pool_size=0, input_nc=1, output_nc=1)
  first = train.train_and_evaluate(config, tmp_path / "run", stop_at_step=2)
  assert first.preempted and first.step == 2
  assert jax.tree.leaves(first.state.pools) == []
  second = train.train_and_evaluate(config, tmp_path / "run")
  assert second.step == 4 and int(second.state.step) == 4
  Image.fromarray(np.full((20, 24), 128, np.uint8)).save(tmp_path / "x.png")
  assert cli.main(["translate", "--workdir", str(tmp_path / "run"), "--input", str(tmp_path / "x.png"),
                   "--output", str(tmp_path / "out"), "--direction", "BtoA"]) == 0
  assert np.asarray(Image.open(tmp_path / "out" / "x.png")).shape == (20, 24)


def test_batch_size_is_checked_before_reading_data(tmp_path):
  """A batch that does not split over the devices is refused first (not after pipeline, init and compile)."""
  script = (
      "import sys; sys.path.insert(0, {root!r}); from jaxgan import cli\n"
      "sys.exit(cli.main(['train', '--config', {recipe!r}, '--workdir', {workdir!r}, '--config.batch_size=3',\n"
      "                   '--config.dataset=folder:/nonexistent/data', '--config.ngf=8']))\n"
  ).format(root=str(ROOT), recipe=str(ROOT / "configs" / "pix2pix_demo.py"), workdir=str(tmp_path / "w"))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
  proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr
  assert "batch_size (3)" in proc.stderr and "number of devices (2)" in proc.stderr, proc.stderr
  assert "nonexistent" not in proc.stderr   # the data was never opened


def test_float16_is_refused_by_the_library():
  config = tiny_pix2pix_config(dtype="float16")
  batch = {"A": np.zeros((1, 32, 32, 3), np.float32), "B": np.zeros((1, 32, 32, 3), np.float32)}
  with pytest.raises(ValueError, match="loss scaling"):
    pix2pix.init(jax.random.PRNGKey(0), config, batch)


@pytest.fixture(scope="module")
def dropout_model():
  """An untrained pix2pix with dropout on (its outputs are random) on 4 demo test images of 64x64
  (unet_64: its level next to the innermost has dropout; unet_32 has none)."""
  config = tiny_pix2pix_config(dataset="demo:facades", demo_test_size=4, demo_train_size=4, no_dropout=False,
                               batch_size=2, load_size=64, crop_size=64, netG="unet_64")
  batch = {"A": np.zeros((2, 64, 64, 3), np.float32), "B": np.zeros((2, 64, 64, 3), np.float32)}
  return config, pix2pix.init(jax.random.PRNGKey(1), config, batch)


def test_translate_keys_each_image_by_its_id_not_its_batch_position(dropout_model):
  config, state = dropout_model
  images = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
  whole = np.asarray(pix2pix.translate(state, images, config=config, ids=np.arange(4)))
  alone = np.asarray(pix2pix.translate(state, images[2:3], config=config, ids=np.array([2])))
  np.testing.assert_allclose(alone[0], whole[2], atol=1e-5)
  other_id = np.asarray(pix2pix.translate(state, images[2:3], config=config, ids=np.array([7])))
  assert np.abs(other_id[0] - whole[2]).max() > 1e-3   # dropout is on: the id really decides the randomness


def test_evaluate_does_not_depend_on_the_batch_size_and_reports_the_mean_image(dropout_model):
  config, state = dropout_model
  results = {}
  for batch_size in (1, 2, 4):
    cfg = config.copy_and_resolve_references()
    cfg.batch_size = batch_size
    results[batch_size] = inference.evaluate(cfg, state, split="test")
  for key in ("l1", "psnr", "ssim"):
    assert results[1][key] == pytest.approx(results[2][key], abs=1e-5), key
    assert results[1][key] == pytest.approx(results[4][key], abs=1e-5), key
  # The mean-image baseline: the split's mean target image predicted for every input.
  pipe = data.create_pipeline(config.copy_and_resolve_references(), split="test", num_epochs=1)
  targets = np.concatenate([batch_to_float(b)["B"] for b in pipe.iterator()])   # shipped pixels -> [-1, 1]
  mean = targets.mean(axis=0, keepdims=True)
  want_l1 = float(np.mean(np.abs(np.clip((mean + 1) / 2, 0, 1) - np.clip((targets + 1) / 2, 0, 1))))
  assert results[2]["mean_image_l1"] == pytest.approx(want_l1, abs=1e-5)
  want_psnr = float(np.mean(metrics.psnr(np.broadcast_to(mean, targets.shape), targets)))
  assert results[2]["mean_image_psnr"] == pytest.approx(want_psnr, abs=1e-3)
  assert {"mean_image_ssim", "copy_input_l1"} <= set(results[2])
