"""Example-image grids of the built-in demo datasets, for the docs (``docs/demo_*.png``).

``python scripts/write_demo_examples.py [DIR]`` writes them; this module only draws.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from jaxgan.data.demo import facades_example, seasons_example


def _grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 4) -> np.ndarray:
  h, w = rows[0][0].shape[:2]
  ncol = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, im in enumerate(row):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = im
  return out


def write_examples(out_dir: str, *, size: int = 160, n: int = 5) -> list[str]:
  """Write ``demo_facades.png`` and ``demo_seasons.png`` (example grids) into ``out_dir``."""
  os.makedirs(out_dir, exist_ok=True)
  fac = [facades_example(i, split="train", size=size) for i in range(n)]
  rows = [[lab for lab, _ in fac], [ph for _, ph in fac]]
  summer = [seasons_example(i, style="summer", split="test", size=size) for i in range(n)]
  winter = [seasons_example(i, style="winter", split="test", size=size) for i in range(n)]
  paths = []
  for fname, grid in (("demo_facades.png", _grid(rows)), ("demo_seasons.png", _grid([summer, winter]))):
    path = os.path.join(out_dir, fname)
    Image.fromarray(grid).save(path)
    paths.append(path)
  return paths
