"""jaxgan.metrics against values computed by hand from the definitions."""
from __future__ import annotations

import numpy as np
import pytest

from jaxgan import metrics


def _const(value_unit: float, shape=(1, 16, 16, 3)) -> np.ndarray:
  """An image of constant intensity ``value_unit`` in [0, 1], expressed in [-1, 1]."""
  return np.full(shape, 2.0 * value_unit - 1.0, np.float32)


def test_l1_is_in_unit_range():
  got = metrics.l1(_const(0.0), _const(0.5))
  np.testing.assert_allclose(got, [0.5], rtol=1e-6)
  np.testing.assert_allclose(metrics.l1(_const(1.0), _const(0.0)), [1.0], rtol=1e-6)


def test_psnr_hand_computed():
  # MSE = 0.1^2 = 0.01 in [0, 1] units -> PSNR = -10 log10(0.01) = 20 dB.
  np.testing.assert_allclose(metrics.psnr(_const(0.6), _const(0.5)), [20.0], rtol=1e-5)
  # A mix: half the pixels off by 0.2 -> MSE 0.02 -> 16.9897 dB.
  a = _const(0.5)
  b = a.copy()
  b[:, :8] = 2 * 0.7 - 1
  np.testing.assert_allclose(metrics.psnr(b, a), [-10 * np.log10(0.02)], rtol=1e-5)
  assert float(metrics.psnr(a, a)[0]) == metrics.PSNR_CAP_DB


def test_ssim_of_constant_images_is_the_luminance_term():
  x, y = 0.2, 0.6
  c1 = 0.01 ** 2
  want = (2 * x * y + c1) / (x * x + y * y + c1)
  np.testing.assert_allclose(metrics.ssim(_const(x), _const(y)), [want], rtol=1e-4)


def _gaussian_window(size=11, sigma=1.5):
  g = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
  g /= g.sum()
  return np.outer(g, g)


def _ssim_one_window(x: np.ndarray, y: np.ndarray) -> float:
  """SSIM of two 11x11xC images in [0, 1]: one Gaussian window, mean over channels."""
  w = _gaussian_window()[..., None]
  mx, my = (w * x).sum((0, 1)), (w * y).sum((0, 1))
  vx = (w * x * x).sum((0, 1)) - mx ** 2
  vy = (w * y * y).sum((0, 1)) - my ** 2
  cxy = (w * x * y).sum((0, 1)) - mx * my
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
  return float(s.mean())


def test_ssim_matches_the_formula_on_random_images():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (11, 11, 3))
  y = np.clip(x + rng.normal(0, 0.15, x.shape), 0, 1)
  got = metrics.ssim((2 * x - 1)[None].astype(np.float32), (2 * y - 1)[None].astype(np.float32))
  np.testing.assert_allclose(got, [_ssim_one_window(x, y)], rtol=2e-4)
  assert 0.0 < float(got[0]) < 1.0


def test_ssim_identity_and_anticorrelation():
  rng = np.random.default_rng(1)
  x = rng.uniform(-1, 1, (2, 24, 20, 1)).astype(np.float32)
  np.testing.assert_allclose(metrics.ssim(x, x), [1.0, 1.0], rtol=1e-5)
  assert np.all(np.asarray(metrics.ssim(x, -x)) < 0)


def test_small_images_use_a_smaller_window():
  rng = np.random.default_rng(2)
  x = rng.uniform(-1, 1, (1, 6, 8, 3)).astype(np.float32)
  v = np.asarray(metrics.ssim(x, x * 0.5))
  assert np.all(np.isfinite(v)) and v.shape == (1,)


def test_image_metrics_and_mismatched_shapes():
  m = metrics.image_metrics(_const(0.6, (3, 16, 16, 3)), _const(0.5, (3, 16, 16, 3)))
  assert set(m) == set(metrics.METRICS)
  assert all(np.asarray(v).shape == (3,) for v in m.values())
  with pytest.raises(ValueError, match=r"equal shape.*\(1, 16, 16, 3\).*\(1, 16, 16, 1\)"):
    metrics.l1(_const(0.5), _const(0.5, (1, 16, 16, 1)))


def test_accumulator_weights_by_image():
  acc = metrics.MeanAccumulator()
  acc.add({"l1": np.array([0.1, 0.3])})
  acc.add({"l1": np.array([0.8])}, prefix="")
  acc.add({"l1": np.array([0.5])}, prefix="BtoA_")
  np.testing.assert_allclose(acc.result()["l1"], (0.1 + 0.3 + 0.8) / 3)
  assert acc.result()["BtoA_l1"] == 0.5
  assert acc.num_images == 3


def test_periodic_pattern_finds_a_checkerboard_whatever_its_sign():
  from helpers import smooth_images
  rng = np.random.default_rng(0)
  base = smooth_images(rng, 6, size=32) * 0.8
  i, j = np.mgrid[0:32, 0:32]
  board = np.where((i % 4 < 2) ^ (j % 4 < 2), 1.0, -1.0)[None, :, :, None]      # period 4, +-1
  signs = rng.choice([-1.0, 1.0], size=(6, 1, 1, 1))                               # flips between images
  clean = metrics.periodic_pattern(base, 4)
  marked = metrics.periodic_pattern(base + 0.1 * signs * board, 4)
  assert clean < 0.01 and abs(marked - 0.05) < 0.01      # 0.1 on [-1, 1] is 0.05 on [0, 1]
  with pytest.raises(ValueError, match="period=4"):
    metrics.periodic_pattern(base[:, :30], 4)
