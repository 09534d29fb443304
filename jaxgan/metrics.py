"""Image-quality metrics for evaluation: L1, PSNR and SSIM against a target.

Inputs are images in the library's range [-1, 1] (NHWC, any channel count);
every metric is computed after mapping to [0, 1] (``(x + 1) / 2``, clipped),
so L1 is the mean absolute error as a fraction of the intensity range, PSNR is
in dB with peak 1, and SSIM is the Gaussian-window SSIM of Wang et al. (2004)
(11x11 window, sigma 1.5, K1 = 0.01, K2 = 0.03, averaged over channels), as
computed by ``dm_pix``. Per-image values are averaged over images.
"""
from __future__ import annotations

from typing import Mapping

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("l1", "psnr", "ssim")
PSNR_CAP_DB = 100.0   # identical images would give +inf, which JSON cannot hold


def to_unit_range(images: jax.Array) -> jax.Array:
  """[-1, 1] -> [0, 1], clipped, float32."""
  return jnp.clip((jnp.asarray(images, jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def _check(pred: jax.Array, target: jax.Array) -> None:
  if pred.ndim != 4 or pred.shape != target.shape:
    raise ValueError(f"metrics need two NHWC arrays of equal shape, got {tuple(pred.shape)} and "
                     f"{tuple(target.shape)}")


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-image mean absolute error in [0, 1] units: [N] float32."""
  _check(pred, target)
  return jnp.mean(jnp.abs(to_unit_range(pred) - to_unit_range(target)), axis=(1, 2, 3))


def psnr(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-image PSNR in dB (peak 1 after mapping to [0, 1]), capped at 100 dB: [N] float32."""
  _check(pred, target)
  value = dm_pix.psnr(to_unit_range(pred), to_unit_range(target))
  return jnp.minimum(value, PSNR_CAP_DB)


def ssim(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-image SSIM in [-1, 1] (1: identical): [N] float32.

  The window is 11x11 (sigma 1.5); images smaller than that use a window as
  large as their smaller side.
  """
  _check(pred, target)
  size = int(min(11, pred.shape[1], pred.shape[2]))
  return dm_pix.ssim(to_unit_range(pred), to_unit_range(target), max_val=1.0, filter_size=size,
                     filter_sigma=1.5, k1=0.01, k2=0.03)


@jax.jit
def image_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  """All metrics per image: ``{"l1": [N], "psnr": [N], "ssim": [N]}``."""
  return {"l1": l1(pred, target), "psnr": psnr(pred, target), "ssim": ssim(pred, target)}


class MeanAccumulator:
  """Running per-image means of named metrics over batches (host side)."""

  def __init__(self) -> None:
    self._sums: dict[str, float] = {}
    self._count: dict[str, int] = {}

  def add(self, per_image: Mapping[str, jax.Array], prefix: str = "") -> None:
    """Add per-image values ``{name: [N]}`` (names get ``prefix``)."""
    for name, values in per_image.items():
      v = np.asarray(values, np.float64).reshape(-1)
      key = prefix + name
      self._sums[key] = self._sums.get(key, 0.0) + float(v.sum())
      self._count[key] = self._count.get(key, 0) + int(v.size)

  def result(self) -> dict[str, float]:
    """Mean of each metric over every image added."""
    return {k: self._sums[k] / self._count[k] for k in self._sums if self._count[k]}

  @property
  def num_images(self) -> int:
    return max(self._count.values(), default=0)


def periodic_pattern(images: np.ndarray, period: int = 4) -> float:
  """Mean amplitude of the ``period``-periodic pattern in images [N,H,W,C] in [-1, 1] (on the [0, 1] scale).

  Each image and channel is folded into one ``period`` x ``period`` tile (the
  average of its tiles); the figure is the mean absolute deviation of that tile
  from its own mean, averaged over images and channels. A generator's
  checkerboard (a pattern tied to pixel positions, from strided transposed
  convs; period 4 after two of them) survives the folding, whatever its sign
  in each image, while content that is not periodic averages out. Compare with
  the same figure for the target images (what their own content leaves).
  """
  x = np.asarray(images, np.float64)
  if x.ndim != 4 or x.shape[1] % period or x.shape[2] % period:
    raise ValueError(f"periodic_pattern needs [N,H,W,C] with H and W multiples of period={period}, "
                     f"got shape {x.shape}")
  n, h, w, c = x.shape
  tile = x.reshape(n, h // period, period, w // period, period, c).mean(axis=(1, 3))   # [N, p, p, C]
  return float(np.abs(tile - tile.mean(axis=(1, 2), keepdims=True)).mean() / 2)
