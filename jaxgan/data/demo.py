"""Built-in demo datasets, generated procedurally and offline (``dataset="demo:<name>"``).

Owns: ``demo:facades`` (paired: a colour-coded label map of a building facade
as A, the photo-like rendering as B) and ``demo:seasons`` (unpaired: landscapes
rendered as summer (A) and winter (B); the test split is aligned), their
sources (registered as the ``demo`` backend of :mod:`jaxgan.data.sources`) and
the oracle (:func:`oracle_config`). The example-image grids are
:mod:`jaxgan.data.demo_examples` (written by ``scripts/write_demo_examples.py``).

Every image is a pure function of (demo_seed, split, index, size, noise):
generated on the fly with vectorised numpy in a few milliseconds, so nothing is
downloaded or stored. Scene geometry and materials come from a "scene"
generator; texture and sensor noise come from a separate "noise" generator.
The target is a function of the input up to that noise (every scene-level
property of the target is visible in the input), so a second rendering of the
same scene with other noise (``noise=1``) is what a perfect model could about
produce -- ``jaxgan evaluate`` reports it as ``oracle_*`` next to copying the
input and predicting the mean image.

Config keys read (all optional): ``demo_seed`` (0), ``demo_train_size`` (400),
``demo_test_size`` (50), ``demo_image_size`` (default: ``load_size`` for the
train split, or ``crop_size`` for ``preprocess='none'``; ``crop_size`` for the
other splits, the size the model sees there, so the test-time resize to
``crop_size`` leaves them unchanged), ``demo_noise`` (0: the
dataset's own noise draw; 1: the oracle's).
"""
from __future__ import annotations

import zlib
from typing import Any

import ml_collections
import numpy as np

from jaxgan.config import DEMO_DATASETS
from jaxgan.data import demo_facades, demo_seasons
from jaxgan.data.image_io import DataError
from jaxgan.data.sources import RandomAccess, SplitData, register, split_from_pairs


def _split_code(split: str) -> int:
  return zlib.crc32(str(split).encode()) & 0x7FFFFFFF


def _key(seed: int, split: str, index: int, stream: int) -> list[int]:
  return [int(seed) & 0xFFFFFFFF, _split_code(split), int(index), int(stream)]


def facades_example(index: int, *, split: str = "train", size: int = 256, seed: int = 0,
                    noise: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(label map, photo) of facade ``index``: two uint8 ``size``x``size``x3 arrays.

  ``noise`` selects the texture/sensor noise draw (0 is the dataset's own).
  """
  scene_rng = np.random.default_rng(_key(seed, split, index, 0))
  noise_rng = np.random.default_rng(_key(seed, split, index, 1000 + noise))
  return demo_facades.generate(scene_rng, noise_rng, size, size)


def seasons_example(scene: int, *, style: str, split: str = "train", size: int = 256, seed: int = 0,
                    noise: int = 0) -> np.ndarray:
  """Landscape ``scene`` rendered as ``style`` ('summer' or 'winter'): uint8 ``size``x``size``x3."""
  scene_rng = np.random.default_rng(_key(seed, split, scene, 0))
  layout = demo_seasons.make_scene(scene_rng, size, size)
  stream = {"summer": 2000, "winter": 3000}.get(style)
  if stream is None:
    raise DataError(f"seasons style must be 'summer' or 'winter', got {style!r}")
  # Texture fields are shared by the two styles (one stream per ``noise``), sensor noise is per style.
  texture_rng = np.random.default_rng(_key(seed, split, scene, 1000 + noise))
  sensor_rng = np.random.default_rng(_key(seed, split, scene, stream + noise))
  return demo_seasons.render(layout, style, texture_rng, sensor_rng)


class FacadePairs(RandomAccess):
  """``n`` (label map, photo) pairs of one split, as :class:`~jaxgan.data.sources.Pairs`."""

  def __init__(self, split: str, n: int, size: int, seed: int, noise: int = 0):
    self.split, self.n, self.size, self.seed, self.noise = split, int(n), int(size), int(seed), int(noise)

  def __len__(self) -> int:
    return self.n

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    return facades_example(index, split=self.split, size=self.size, seed=self.seed, noise=self.noise)

  def name(self, index: int) -> str:
    return f"demo:facades[{self.split}][{index}]"

  def image_sizes(self, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (self.size, self.size), (self.size, self.size)


class SeasonDomain(RandomAccess):
  """One style of the seasons landscapes; scene ids ``index * stride + offset``."""

  def __init__(self, split: str, n: int, size: int, seed: int, style: str, stride: int = 1, offset: int = 0,
               noise: int = 0):
    self.split, self.n, self.size, self.seed, self.style = split, int(n), int(size), int(seed), style
    self.stride, self.offset, self.noise = int(stride), int(offset), int(noise)

  def __len__(self) -> int:
    return self.n

  def load(self, index: int) -> np.ndarray:
    return seasons_example(index * self.stride + self.offset, style=self.style, split=self.split,
                           size=self.size, seed=self.seed, noise=self.noise)

  def name(self, index: int) -> str:
    return f"demo:seasons[{self.split}][{self.style} {index}]"

  def image_size(self, index: int) -> tuple[int, int]:
    return self.size, self.size


class SeasonPairs(RandomAccess):
  """Aligned (summer, winter) renderings of the same scenes (the test split)."""

  def __init__(self, split: str, n: int, size: int, seed: int, noise: int = 0):
    self.a = SeasonDomain(split, n, size, seed, "summer", noise=noise)
    self.b = SeasonDomain(split, n, size, seed, "winter", noise=noise)

  def __len__(self) -> int:
    return len(self.a)

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    return self.a.load(index), self.b.load(index)

  def name(self, index: int) -> str:
    return f"demo:seasons[{self.a.split}][scene {index}]"


def demo_image_size(config: Any, split: str = "train") -> int:
  """Side of the generated images: ``demo_image_size``; else load_size for train (crop_size for
  preprocess='none') and crop_size for every other split."""
  size = config.get("demo_image_size", None)
  if size:
    return int(size)
  if str(split) != "train" or config.get("preprocess", "") == "none":
    return int(config.crop_size)
  return int(config.load_size)


@register("demo")
def open_demo(name: str, split: str, config: Any) -> SplitData:
  """The :class:`SplitData` of ``demo:<name>`` for ``split`` (train: 400 examples, others: 50)."""
  seed = int(config.get("demo_seed", 0))
  noise = int(config.get("demo_noise", 0))
  n = int(config.get("demo_train_size", 400) if split == "train" else config.get("demo_test_size", 50))
  size = demo_image_size(config, split)
  if n < 1 or size < 8:
    raise DataError(f"demo:{name}: need demo_*_size >= 1 and demo_image_size >= 8, got n={n}, size={size}")
  tag = f"[{split}]" + (f"[noise {noise}]" if noise else "")
  if name == "facades":
    return split_from_pairs(f"demo:facades{tag}", FacadePairs(split, n, size, seed, noise))
  if name == "seasons":
    if split == "train":   # disjoint scenes: A from even scene ids, B from odd ones
      a = SeasonDomain(split, n, size, seed, "summer", stride=2, offset=0, noise=noise)
      b = SeasonDomain(split, n, size, seed, "winter", stride=2, offset=1, noise=noise)
      return SplitData(f"demo:seasons{tag}", a, b)
    return split_from_pairs(f"demo:seasons{tag}", SeasonPairs(split, n, size, seed, noise))
  raise DataError(f"dataset='demo:{name}': unknown demo dataset; expected one of "
                  f"{', '.join('demo:' + d for d in DEMO_DATASETS)}")


def oracle_config(config: Any) -> ml_collections.ConfigDict | None:
  """For demo data, a copy of ``config`` whose pipeline gives the oracle; ``None`` for other datasets.

  Its pipeline yields, batch for batch, the same examples as ``config``'s (same
  scenes, preprocessing and direction) rendered with the second noise draw: its
  ``"B"`` scored against the real ``"B"`` is the oracle of A->B, its ``"A"``
  against the real ``"A"`` that of B->A.
  """
  if not str(config.get("dataset", "")).startswith("demo:"):
    return None
  oracle = ml_collections.ConfigDict(config.to_dict())
  oracle.demo_noise = int(config.get("demo_noise", 0)) + 1
  return oracle
