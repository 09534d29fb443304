"""Built-in demo datasets, generated procedurally and offline (``dataset="demo:<name>"``).

Owns: ``demo:facades`` (paired: a colour-coded label map of a building facade
as A, the photo-like rendering as B) and ``demo:seasons`` (unpaired: landscapes
rendered as summer (A) and winter (B); the test split is aligned), their
sources (registered as the ``demo`` backend of :mod:`jaxgan.data.sources`).
The example images are drawn by :mod:`jaxgan.data.demo_examples` (``python scripts/write_demo_examples.py``).

Every image is a pure function of (demo_seed, split, index, size): generated on
the fly with vectorised numpy in a few milliseconds, so nothing is downloaded
or stored. Scene geometry and materials come from a "scene" generator; texture
and sensor noise come from a separate "noise" generator, so a second rendering
of the same scene with other noise (:func:`facades_example` /
:func:`seasons_example` with ``noise=1``) is what a perfect model could at best
produce -- the tests use it to check that the metrics separate a good
translation from copying the input or predicting a constant.

Config keys read (all optional): ``demo_seed`` (0), ``demo_train_size`` (400),
``demo_test_size`` (50), ``demo_image_size`` (default ``load_size``, or
``crop_size`` for ``preprocess='none'``).
"""
from __future__ import annotations

import zlib
from typing import Any

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
  noise_rng = np.random.default_rng(_key(seed, split, scene, stream + noise))
  return demo_seasons.render(layout, style, noise_rng)


class FacadePairs(RandomAccess):
  """``n`` (label map, photo) pairs of one split, as :class:`~jaxgan.data.sources.Pairs`."""

  def __init__(self, split: str, n: int, size: int, seed: int):
    self.split, self.n, self.size, self.seed = split, int(n), int(size), int(seed)

  def __len__(self) -> int:
    return self.n

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    return facades_example(index, split=self.split, size=self.size, seed=self.seed)

  def name(self, index: int) -> str:
    return f"demo:facades[{self.split}][{index}]"

  def image_sizes(self, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (self.size, self.size), (self.size, self.size)


class SeasonDomain(RandomAccess):
  """One style of the seasons landscapes; scene ids ``index * stride + offset``."""

  def __init__(self, split: str, n: int, size: int, seed: int, style: str, stride: int = 1, offset: int = 0):
    self.split, self.n, self.size, self.seed, self.style = split, int(n), int(size), int(seed), style
    self.stride, self.offset = int(stride), int(offset)

  def __len__(self) -> int:
    return self.n

  def load(self, index: int) -> np.ndarray:
    return seasons_example(index * self.stride + self.offset, style=self.style, split=self.split,
                           size=self.size, seed=self.seed)

  def name(self, index: int) -> str:
    return f"demo:seasons[{self.split}][{self.style} {index}]"

  def image_size(self, index: int) -> tuple[int, int]:
    return self.size, self.size


class SeasonPairs(RandomAccess):
  """Aligned (summer, winter) renderings of the same scenes (the test split)."""

  def __init__(self, split: str, n: int, size: int, seed: int):
    self.a = SeasonDomain(split, n, size, seed, "summer")
    self.b = SeasonDomain(split, n, size, seed, "winter")

  def __len__(self) -> int:
    return len(self.a)

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    return self.a.load(index), self.b.load(index)

  def name(self, index: int) -> str:
    return f"demo:seasons[{self.a.split}][scene {index}]"


def demo_image_size(config: Any) -> int:
  """Side of the generated images: ``demo_image_size``, else load_size (crop_size for 'none')."""
  size = config.get("demo_image_size", None)
  if size:
    return int(size)
  return int(config.crop_size if config.get("preprocess", "") == "none" else config.load_size)


@register("demo")
def open_demo(name: str, split: str, config: Any) -> SplitData:
  """The :class:`SplitData` of ``demo:<name>`` for ``split`` (train: 400 examples, others: 50)."""
  seed = int(config.get("demo_seed", 0))
  n = int(config.get("demo_train_size", 400) if split == "train" else config.get("demo_test_size", 50))
  size = demo_image_size(config)
  if n < 1 or size < 8:
    raise DataError(f"demo:{name}: need demo_*_size >= 1 and demo_image_size >= 8, got n={n}, size={size}")
  if name == "facades":
    return split_from_pairs(f"demo:facades[{split}]", FacadePairs(split, n, size, seed))
  if name == "seasons":
    if split == "train":   # disjoint scenes: A from even scene ids, B from odd ones
      a = SeasonDomain(split, n, size, seed, "summer", stride=2, offset=0)
      b = SeasonDomain(split, n, size, seed, "winter", stride=2, offset=1)
      return SplitData(f"demo:seasons[{split}]", a, b)
    return split_from_pairs(f"demo:seasons[{split}]", SeasonPairs(split, n, size, seed))
  raise DataError(f"dataset='demo:{name}': unknown demo dataset; expected one of "
                  f"{', '.join('demo:' + d for d in DEMO_DATASETS)}")
