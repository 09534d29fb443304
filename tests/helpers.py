"""Tiny configs and synthetic problems shared by the tests."""
from __future__ import annotations

import numpy as np

from jaxgan import config as config_lib


def tiny_pix2pix_config(**overrides):
  c = config_lib.get_base_config()
  c.update(dict(netG="unet_32", ngf=8, ndf=8, n_layers_D=2, crop_size=32, load_size=32,
                batch_size=2, num_train_steps=200, lr=2e-4))
  c.update(overrides)
  return c


def tiny_cyclegan_config(**overrides):
  c = config_lib.get_cyclegan_base_config()
  c.update(dict(netG="resnet_6blocks", ngf=8, ndf=8, n_layers_D=2, crop_size=32, load_size=32,
                batch_size=2, num_train_steps=200, lr=2e-4, pool_size=4))
  c.update(overrides)
  return c


def smooth_images(rng: np.random.Generator, n: int, size: int = 32, channels: int = 3) -> np.ndarray:
  """Random smooth images in [-1, 1]: a few random sinusoids per channel."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  out = np.zeros((n, size, size, channels), np.float32)
  for i in range(n):
    for c in range(channels):
      fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
      out[i, :, :, c] = np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
  return out * 0.9


def paired_problem(n: int = 8, size: int = 32, seed: int = 0):
  """A where B is a fixed function of A (channel reversal and negation)."""
  a = smooth_images(np.random.default_rng(seed), n, size)
  b = -a[..., ::-1]
  return a, b


def read_meta(wd, step: int = 0) -> dict:
  """The metadata saved with checkpoint ``step`` of workdir ``wd``."""
  from jaxgan import checkpoint  # pylint: disable=import-outside-toplevel
  ckpt = checkpoint.Checkpointer(wd, read_only=True)
  try:
    return ckpt.read_meta(step)
  finally:
    ckpt.close()
