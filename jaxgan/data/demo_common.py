"""Small numpy helpers shared by the procedural demo scenes (noise fields, gradients, finishing)."""
from __future__ import annotations

import numpy as np
from PIL import Image


def upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
  """A small float32 grid resized bicubically to HxW (a smooth field)."""
  return np.asarray(Image.fromarray(np.asarray(grid, np.float32), "F").resize((w, h), Image.BICUBIC))


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int, aspect: float = 1.0) -> np.ndarray:
  """Smooth random field in about [0, 1], float32 HxW: a (cells x cells*aspect) grid upsampled bicubically."""
  gy = max(2, int(cells))
  gx = max(2, int(round(cells * aspect)))
  return upsample(rng.random((gy, gx), dtype=np.float32), h, w)


def vertical_gradient(h: int, w: int, top, bottom) -> np.ndarray:
  """HxWx3 float32 blending colour ``top`` (row 0) to ``bottom`` (last row)."""
  t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
  top = np.asarray(top, np.float32)
  bottom = np.asarray(bottom, np.float32)
  return np.broadcast_to(top + (bottom - top) * t, (h, w, 3)).copy()


def finish(img: np.ndarray, noise_rng: np.random.Generator, amplitude: int = 4) -> np.ndarray:
  """Add sensor noise (uniform integers in [-amplitude, amplitude]), clip and round to uint8."""
  noise = noise_rng.integers(-amplitude, amplitude + 1, img.shape, dtype=np.int16)
  out = img.astype(np.int16) + noise
  return np.clip(out, 0, 255).astype(np.uint8)
