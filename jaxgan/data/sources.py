"""Random-access image sources and how a dataset split is described to the pipeline.

Owns: the two source shapes every backend (demo, folder, tfds) produces --
``Domain`` (a list of images of one domain) and ``Pairs`` (a list of aligned
A/B images) -- the :class:`SplitData` bundle of one split, adapters between
them (one side of a pair list as a domain, two name-matched domains as pairs),
the ``max_dataset_size`` cap, parsing of the ``dataset`` string, and the
registry of backends: each backend module (:mod:`~jaxgan.data.demo`,
:mod:`~jaxgan.data.folder`, :mod:`~jaxgan.data.tfds_source`) registers its
opener for its kind of ``dataset`` with :func:`register` when it is imported
(``jaxgan/data/__init__.py`` imports them all), and :func:`open_split` asks the
registry, so this module imports no backend. The valid kinds are
:data:`jaxgan.config.DATASET_KINDS`.

Sources return images in their own bit depth (HxWxC uint8/uint16/float32 in
[0, 1]); they hold only picklable state (paths, names, small tables), so Grain
worker processes can receive them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from jaxgan.config import DATASET_KINDS
from jaxgan.data.image_io import DataError


class Domain(Protocol):
  """A random-access list of images of one domain."""

  def __len__(self) -> int: ...

  def load(self, index: int) -> np.ndarray:
    """Image ``index`` as HxWxC uint8 / uint16 / float32 [0, 1]."""

  def name(self, index: int) -> str:
    """A human-readable name (file path, dataset record) for error messages."""


class Pairs(Protocol):
  """A random-access list of aligned (A, B) image pairs."""

  def __len__(self) -> int: ...

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair ``index`` as two HxWxC arrays (same spatial size for aligned data)."""

  def name(self, index: int) -> str: ...


class RandomAccess:
  """Mixin: ``source[i]`` is ``source.load(i)``, the Grain random-access source protocol."""

  def __getitem__(self, index: int):
    return self.load(int(index))


@dataclasses.dataclass
class SplitData:
  """What one split of a dataset offers.

  ``pairs`` is set when A and B are aligned (pix2pix data, an aligned test
  split); ``domain_a``/``domain_b`` are always set (unpaired use).
  ``why_unpaired`` says, for error messages, why a source is not aligned.
  """
  description: str
  domain_a: Domain
  domain_b: Domain
  pairs: Pairs | None = None
  why_unpaired: str = ""


class PairSide(RandomAccess):
  """One side (0 = A, 1 = B) of a :class:`Pairs` list, as a :class:`Domain`."""

  def __init__(self, pairs: Pairs, side: int):
    self.pairs, self.side = pairs, side

  def __len__(self) -> int:
    return len(self.pairs)

  def load(self, index: int) -> np.ndarray:
    return self.pairs.load(index)[self.side]

  def name(self, index: int) -> str:
    return f"{self.pairs.name(index)} [{'AB'[self.side]}]"

  def image_size(self, index: int) -> tuple[int, int] | None:
    """(w, h) without decoding when the pairs can tell (see :mod:`jaxgan.data.sizes`), else None."""
    sizes = getattr(self.pairs, "image_sizes", None)
    return sizes(index)[self.side] if sizes is not None else None


class ZippedPairs(RandomAccess):
  """Two domains whose images are aligned index by index, as :class:`Pairs`."""

  def __init__(self, domain_a: Domain, domain_b: Domain):
    if len(domain_a) != len(domain_b):
      raise DataError(f"paired domains differ in length: {len(domain_a)} vs {len(domain_b)}")
    self.domain_a, self.domain_b = domain_a, domain_b

  def __len__(self) -> int:
    return len(self.domain_a)

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    return self.domain_a.load(index), self.domain_b.load(index)

  def name(self, index: int) -> str:
    return f"{self.domain_a.name(index)} | {self.domain_b.name(index)}"


class Capped(RandomAccess):
  """The first ``n`` items of a Domain or Pairs (the reference ``max_dataset_size``)."""

  def __init__(self, inner: Any, n: int):
    self.inner, self.n = inner, min(int(n), len(inner))

  def __len__(self) -> int:
    return self.n

  def load(self, index: int):
    return self.inner.load(index)

  def name(self, index: int) -> str:
    return self.inner.name(index)

  def image_size(self, index: int) -> tuple[int, int] | None:
    size = getattr(self.inner, "image_size", None)
    return size(index) if size is not None else None


def cap(split: SplitData, max_size: int) -> SplitData:
  """Apply ``max_dataset_size`` (<= 0 or None: no cap) to every list of a split."""
  if max_size is None or int(max_size) <= 0:
    return split
  m = int(max_size)
  pairs = Capped(split.pairs, m) if split.pairs is not None else None
  return SplitData(split.description, Capped(split.domain_a, m), Capped(split.domain_b, m), pairs,
                   split.why_unpaired)


def split_from_pairs(description: str, pairs: Pairs) -> SplitData:
  """A split whose domains are the two sides of an aligned pair list."""
  return SplitData(description, PairSide(pairs, 0), PairSide(pairs, 1), pairs)


Opener = Callable[[str, str, Any], SplitData]   # (rest of "kind:rest", split, config) -> SplitData
_OPENERS: dict[str, Opener] = {}


def register(kind: str) -> Callable[[Opener], Opener]:
  """Decorator of a backend's opener: ``dataset="<kind>:<rest>"`` is opened by ``opener(rest, split, config)``.

  ``kind`` must be one of :data:`jaxgan.config.DATASET_KINDS` (ValueError otherwise).
  """
  if kind not in DATASET_KINDS:
    raise ValueError(f"dataset kind {kind!r} is not one of jaxgan.config.DATASET_KINDS {DATASET_KINDS}")

  def add(opener: Opener) -> Opener:
    _OPENERS[kind] = opener
    return opener
  return add


def parse_dataset(spec: str) -> tuple[str, str]:
  """``"kind:rest"`` -> (kind, rest) for kind in demo, folder, tfds; DataError otherwise."""
  if not isinstance(spec, str) or ":" not in spec:
    raise DataError(f"dataset={spec!r}: expected 'demo:<name>', 'folder:<path>' or 'tfds:<name>[/<config>]'")
  kind, rest = spec.split(":", 1)
  if kind not in DATASET_KINDS or not rest:
    raise DataError(f"dataset={spec!r}: expected 'demo:<name>', 'folder:<path>' or 'tfds:<name>[/<config>]'")
  return kind, rest


def open_split(config: Any, split: str) -> SplitData:
  """Open split ``split`` of ``config.dataset`` (capped by ``config.max_dataset_size``)."""
  kind, rest = parse_dataset(config.dataset)
  if kind not in _OPENERS:   # the backends register when jaxgan.data is imported
    raise DataError(f"dataset={config.dataset!r}: no data backend registered for {kind!r}")
  data = cap(_OPENERS[kind](rest, split, config), config.get("max_dataset_size", -1))
  for label, dom in (("A", data.domain_a), ("B", data.domain_b)):
    if len(dom) == 0:
      raise DataError(f"dataset={config.dataset!r} split {split!r}: domain {label} has no images")
  return data
