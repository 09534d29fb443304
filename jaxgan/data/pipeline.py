"""The Grain input pipeline: sources -> examples -> per-process batches, resumable exactly.

Owns: :func:`create_pipeline`, :class:`Pipeline` and its checkpointable
iterator.

How it is built (Grain ``MapDataset`` API, random access all the way):

1. A global *example stream*: position ``g`` belongs to epoch ``g // N`` (N =
   ``num_examples``: the number of pairs, or ``max(len A, len B)`` unpaired, as
   the reference) and names record ``perm_epoch[g % N]``, a permutation seeded
   by (seed, epoch) -- a new shuffle every epoch; no shuffle: identity. Finite
   for ``num_epochs``, endless for ``None`` (a length of 2**53 positions: Grain
   takes ``len()`` of every stage, computes batch counts through float
   division and refuses lengths above ``sys.maxsize``, so the length must stay
   exact as a float; 2**53 examples is centuries of reading).
2. Process ``p`` of ``k`` reads block ``p`` of every global batch: with
   ``b = B / k``, step ``s`` of process ``p`` is positions
   ``[s*B + p*b, s*B + (p+1)*b)``. Disjoint shards, and the processes' batches
   side by side (process order is device order in the mesh) are exactly the
   global batch ``[s*B, (s+1)*B)`` of a one-process run, in the same order:
   every device sees the same images as in a one-process run.
3. Each position becomes an example ``{"A", "B"}`` of HxWxC *pixels*: load,
   channel conversion, reference preprocessing; its randomness (crop, flip,
   the B image drawn for an unpaired A) comes from a generator seeded by
   (seed, g) alone, so neither worker count nor threads nor resuming change it.
4. Batches of ``batch_size // process_count`` are formed *before* the data
   goes to threads/worker processes, so batches are identical for any
   ``num_workers``.

What a batch holds (the shipping format, :mod:`jaxgan.data.feed`, config key
``data_dtype``): ``uint8`` pixels for 8-bit data, ``uint16`` for 16-bit data,
float32 in [-1, 1] for float sources -- decided once per side from the split's
first image (``"auto"``), so every batch of a pipeline has one dtype and the
train step compiles once. The train steps make pixels [-1, 1] on the device
(:func:`jaxgan.images.to_model_range`); host code that wants floats calls
:func:`jaxgan.images.batch_to_float`. An image of another depth later in the
stream is converted: 8 -> 16 bits exactly (x 257), anything -> float32 exactly,
and wider -> narrower rounded, with a warning naming the file and the fix.

How the host work is spread (:func:`jaxgan.data.feed.data_parallelism`): ``num_workers=-1``
(the default) sizes it to the host -- for the training split on a process
that drives accelerators, Grain worker processes (one reader thread each);
otherwise (CPU devices, which share the cores with the step; evaluation
splits) reader threads in the training process, which run in parallel because
Pillow's decode and resize release the GIL.

The iterator's state is the global stream position ``{"next_position": g}``
(plus a few fields to detect a different dataset), so a resumed run sees
exactly the next batches, whatever ``num_workers`` it resumes with. It is a
``grain.DatasetIterator``: ``grain.checkpoint.CheckpointSave/Restore`` and
Orbax's ``Composite`` save it next to the train state.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
from typing import Any, Sequence

import grain
import numpy as np

from jaxgan import objectives
from jaxgan.data import feed, sizes
from jaxgan.data.feed import to_ship
from jaxgan.data.image_io import DataError, convert_channels
from jaxgan.data.preprocess import PreprocessOptions, preprocess_images
from jaxgan.data.sources import SplitData, open_split


ENDLESS = 2 ** 53   # the length of a num_epochs=None stream (see the module docstring)


class _Stream(grain.MapDataset):
  """Global stream position g -> (g, record index), shuffled per epoch (see the module docstring)."""

  def __init__(self, num_examples: int, num_epochs: int | None, seed: int, shuffle: bool):
    super().__init__()
    self.n, self.num_epochs, self.seed, self.shuffle = int(num_examples), num_epochs, int(seed), bool(shuffle)
    self._lock = threading.Lock()
    self._perms: dict[int, np.ndarray] = {}

  def __len__(self) -> int:
    return ENDLESS if self.num_epochs is None else self.n * int(self.num_epochs)

  def __getstate__(self):
    state = self.__dict__.copy()
    state.pop("_lock")
    state["_perms"] = {}
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def _perm(self, epoch: int) -> np.ndarray:
    with self._lock:
      perm = self._perms.get(epoch)
      if perm is None:
        perm = np.random.default_rng([self.seed & 0xFFFFFFFF, 0x5EED, epoch]).permutation(self.n)
        if len(self._perms) >= 2:
          self._perms.pop(min(self._perms))
        self._perms[epoch] = perm
      return perm

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    g = int(index)
    epoch, pos = divmod(g, self.n)
    record = int(self._perm(epoch)[pos]) if self.shuffle else pos
    return g, record

  def __str__(self) -> str:
    return f"_Stream(n={self.n}, num_epochs={self.num_epochs}, shuffle={self.shuffle})"


class _ProcessBlocks(grain.MapDataset):
  """Process ``p``'s positions of a stream from ``start``: block ``p`` (of ``block`` items) of every
  global batch of ``count * block`` items (see the module docstring). A last, partial global batch of
  ``r`` items (finite streams) is split into blocks of ``ceil(r / count)``."""

  def __init__(self, parent: grain.MapDataset, start: int, block: int, index: int, count: int):
    super().__init__(parent)
    self.start, self.block, self.index, self.count = int(start), int(block), int(index), int(count)
    left = max(len(parent) - self.start, 0)
    self._full, rest = divmod(left, self.block * self.count)
    self._tail_block = -(-rest // self.count)
    self._tail = min(max(rest - self.index * self._tail_block, 0), self._tail_block)

  def __len__(self) -> int:
    return self._full * self.block + self._tail

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, within = divmod(int(index), self.block)
    if batch < self._full:
      return self._parent[self.start + (batch * self.count + self.index) * self.block + within]
    tail_start = self.start + self._full * self.block * self.count
    return self._parent[tail_start + self.index * self._tail_block + within]

  def __str__(self) -> str:
    return f"_ProcessBlocks(start={self.start}, block={self.block}, process={self.index} of {self.count})"


@dataclasses.dataclass
class _MakeExample:
  """Stream item (g, record) -> {"A": HxWxCa, "B": HxWxCb} in the shipping dtypes ``ship_a`` / ``ship_b``."""
  data: SplitData
  paired: bool
  swap: bool            # direction == "BtoA"
  random_b: bool        # unpaired: B drawn at random for each A (else record % len B)
  train: bool
  seed: int
  opt: PreprocessOptions
  nc_a: int
  nc_b: int
  ship_a: str = "float32"
  ship_b: str = "float32"

  def __call__(self, item: tuple[int, int]) -> dict[str, np.ndarray]:
    g, record = item
    rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 0xDA7A, g])
    if self.paired:
      a, b = self.data.pairs.load(record)
      name = self.data.pairs.name(record)
      if self.swap:
        a, b = b, a
      a = convert_channels(a, self.nc_a, name=f"{name} (A, input_nc={self.nc_a})")
      b = convert_channels(b, self.nc_b, name=f"{name} (B, output_nc={self.nc_b})")
      out_a, out_b = preprocess_images([a, b], self.opt, rng, train=self.train, names=[f"{name} A", f"{name} B"],
                                       as_float=False)
      return {"A": to_ship(out_a, self.ship_a, name=f"{name} A", side="A"),
              "B": to_ship(out_b, self.ship_b, name=f"{name} B", side="B")}
    dom_a, dom_b = (self.data.domain_b, self.data.domain_a) if self.swap else (self.data.domain_a, self.data.domain_b)
    ia = record % len(dom_a)
    ib = int(rng.integers(len(dom_b))) if self.random_b else record % len(dom_b)
    a = convert_channels(dom_a.load(ia), self.nc_a, name=f"{dom_a.name(ia)} (input_nc={self.nc_a})")
    b = convert_channels(dom_b.load(ib), self.nc_b, name=f"{dom_b.name(ib)} (output_nc={self.nc_b})")
    out_a, = preprocess_images([a], self.opt, rng, train=self.train, names=[dom_a.name(ia)], as_float=False)
    out_b, = preprocess_images([b], self.opt, rng, train=self.train, names=[dom_b.name(ib)], as_float=False)
    return {"A": to_ship(out_a, self.ship_a, name=dom_a.name(ia), side="A"),
            "B": to_ship(out_b, self.ship_b, name=dom_b.name(ib), side="B")}


def _stack(examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Stack examples into a batch; a clear error when their sizes differ."""
  out = {}
  for key in ("A", "B"):
    shapes = {e[key].shape for e in examples}
    if len(shapes) > 1:
      raise DataError(f"images of one batch have different sizes {sorted(shapes)} (key {key!r}); with "
                      "preprocess='none' or 'scale_width' images keep their aspect ratio, so use batch_size "
                      "per process 1 or a cropping preprocess")
    out[key] = np.stack([e[key] for e in examples])
  return out


def _ensure_absl_flags() -> None:
  """Grain worker processes read absl flags: mark them parsed when no absl app did."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@dataclasses.dataclass
class Pipeline:
  """One split of a dataset as batches for this process.

  ``num_examples``: examples per epoch (pairs, or max(len A, len B) unpaired);
  ``steps_per_epoch``: global batches per epoch; ``paired``: A and B are
  aligned; ``batch_size``: the local (per-process) batch size; ``dtypes``:
  the numpy dtype of each side's batches (uint8, uint16 or float32);
  ``num_workers`` / ``num_threads``: worker processes and reader threads
  per process, as :func:`jaxgan.data.feed.data_parallelism` chose them.
  """
  num_examples: int
  steps_per_epoch: int
  paired: bool
  batch_size: int
  global_batch_size: int
  process_index: int
  process_count: int
  split: str
  description: str
  num_workers: int
  num_threads: int
  prefetch: int
  drop_remainder: bool
  stream: _Stream
  make_example: _MakeExample

  @property
  def dtypes(self) -> dict[str, np.dtype]:
    """``{"A": dtype, "B": dtype}`` of this pipeline's batches (see the module docstring)."""
    return {"A": np.dtype(self.make_example.ship_a), "B": np.dtype(self.make_example.ship_b)}

  def dataset(self, start: int = 0) -> grain.IterDataset:
    """The Grain dataset of this process's batches from global stream position ``start``."""
    ds = _ProcessBlocks(self.stream, start, self.batch_size, self.process_index, self.process_count)
    ds = ds.map(self.make_example)
    ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder, batch_fn=_stack)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch))
    if self.num_workers > 0:
      _ensure_absl_flags()
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.num_workers, per_worker_buffer_size=2))
    return it

  def iterator(self) -> "PipelineIterator":
    """A fresh checkpointable iterator over batches ``{"A", "B"}`` from the start of the stream."""
    return PipelineIterator(self)

  def __iter__(self):
    return self.iterator()


class PipelineIterator(grain.DatasetIterator):
  """Batches of a :class:`Pipeline`; state = the global stream position (portable across worker counts)."""

  def __init__(self, pipeline: Pipeline):
    super().__init__()
    self._pipeline = pipeline
    self._position = 0
    self._inner = None

  def _fingerprint(self) -> dict[str, Any]:
    p = self._pipeline
    return {"num_examples": p.num_examples, "seed": p.stream.seed, "shuffle": p.stream.shuffle, "split": p.split}

  def __next__(self) -> dict[str, np.ndarray]:
    self._assert_not_closed()
    if self._inner is None:
      with feed.workers_skip_main(self._pipeline.num_workers):
        self._inner = iter(self._pipeline.dataset(self._position))
        batch = next(self._inner)   # worker processes start here
    else:
      batch = next(self._inner)
    if self._pipeline.num_workers > 0:   # out of the workers' shared memory now (freed at once, not at exit)
      batch = {k: np.array(v, copy=True) for k, v in batch.items()}
    self._position += self._pipeline.global_batch_size
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"next_position": int(self._position), **self._fingerprint()}

  def set_state(self, state: dict[str, Any]) -> None:
    if "next_position" not in state:
      raise DataError(f"not a jaxgan data iterator state (no 'next_position'): {sorted(state)}")
    mine = self._fingerprint()
    diff = {k: (state.get(k), v) for k, v in mine.items() if k in state and state.get(k) != v}
    if diff:
      logging.warning("restoring a data iterator saved with different settings (saved, now): %s; "
                      "continuing from stream position %d", diff, state["next_position"])
    self._close_inner()
    self._position = int(state["next_position"])

  def start_prefetch(self) -> None:
    with feed.workers_skip_main(self._pipeline.num_workers):
      if self._inner is None:
        self._inner = iter(self._pipeline.dataset(self._position))
      if hasattr(self._inner, "start_prefetch"):
        self._inner.start_prefetch()

  def _close_inner(self) -> None:
    if self._inner is not None and hasattr(self._inner, "close"):
      self._inner.close()
    self._inner = None

  def close(self) -> None:
    self._close_inner()
    super().close()

  def __str__(self) -> str:
    return f"PipelineIterator({self._pipeline.description}, position={self._position})"


def _process_defaults(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= int(process_index) < int(process_count):
    raise DataError(f"process_index={process_index} must be in [0, process_count={process_count})")
  return int(process_index), int(process_count)


def create_pipeline(config: Any, *, split: str = "train", seed: int | None = None, shuffle: bool | None = None,
                    process_index: int | None = None, process_count: int | None = None,
                    num_epochs: int | None = None) -> Pipeline:
  """The input pipeline of ``config.dataset`` for ``split``.

  ``split="train"``: random crop/flip, shuffled, B drawn at random for
  unpaired data; other splits: the reference's test-time preprocessing
  (load_size = crop_size: resized whole, no random crop, no flip), no
  shuffle unless asked, and aligned (``.paired``) where the data allow it.
  ``seed`` defaults to ``config.seed``; processes default to JAX's.
  ``num_epochs=None`` repeats forever with a new shuffle each epoch. Batches
  are ``{"A": [batch_size // process_count, H, W, input_nc], "B": [...,
  output_nc]}`` of uint8 (8-bit data) or uint16 (16-bit) pixels, or float32
  in [-1, 1] (float data, or ``config.data_dtype="float32"``): ``pipeline.dtypes``
  says which; :func:`jaxgan.images.batch_to_float` gives [-1, 1] floats, and
  the train steps take either. With ``direction="BtoA"`` the dataset's B side
  is the input "A". Host work: :func:`jaxgan.data.feed.data_parallelism` of
  ``config.num_workers`` (-1: automatic) and ``config.data_threads``.
  A training split whose images would come out in several sizes where the run
  needs one (CycleGAN, or batches of several images, with
  ``preprocess=scale_width`` or ``none``) is refused here, from the image
  headers (:mod:`jaxgan.data.sizes`).
  """
  split = str(split)
  train = split == "train"
  seed = int(config.seed if seed is None else seed)
  shuffle = train if shuffle is None else bool(shuffle)
  pidx, pcount = _process_defaults(process_index, process_count)
  batch_size = int(config.batch_size)
  if batch_size < 1 or batch_size % pcount:
    raise DataError(f"batch_size={batch_size} must be a positive multiple of the process count {pcount}")
  if num_epochs is not None and int(num_epochs) < 1:
    raise DataError(f"num_epochs={num_epochs} must be None (repeat forever) or >= 1")
  direction = str(config.get("direction", "AtoB"))
  if direction not in ("AtoB", "BtoA"):
    raise DataError(f"direction={direction!r}: expected 'AtoB' or 'BtoA'")
  opt = PreprocessOptions.from_config(config)
  data = open_split(config, split)
  model = str(config.get("model", "pix2pix"))
  # Pairs exist when the source says A and B are aligned (SplitData.pairs). A PAIRED objective trains only on
  # such data; any other split is aligned exactly when its source is (evaluation of an unaligned split: FID only).
  need_pairs = train and objectives.get(model).PAIRED
  paired = need_pairs or (not train and data.pairs is not None)
  if need_pairs and data.pairs is None:
    raise DataError(f"model={model!r} needs aligned A/B pairs, but dataset={config.dataset!r} split {split!r} is "
                    f"unpaired: {data.why_unpaired or 'it has two independent domains'}")
  why_one_size = sizes.needs_one_size(config, opt, batch_size // pcount) if train else ""
  if why_one_size:   # before any image is decoded, model initialised or step compiled
    sizes.check_one_size(data, opt, why=why_one_size, label=f"dataset={config.dataset!r} split {split!r}")
  n = len(data.pairs) if paired else max(len(data.domain_a), len(data.domain_b))
  num_workers, threads = feed.data_parallelism(int(config.get("num_workers", -1)),
                                               int(config.get("data_threads", 0) or 0), train=train)
  ship_a, ship_b = feed.ship_dtypes(config, data, paired=paired, swap=direction == "BtoA")
  make = _MakeExample(data=data, paired=paired, swap=direction == "BtoA", random_b=shuffle, train=train,
                      seed=seed, opt=opt, nc_a=int(config.input_nc), nc_b=int(config.output_nc),
                      ship_a=ship_a, ship_b=ship_b)
  drop = train
  global_steps = max(1, n // batch_size) if drop else math.ceil(n / batch_size)
  return Pipeline(num_examples=n, steps_per_epoch=global_steps, paired=paired, batch_size=batch_size // pcount,
                  global_batch_size=batch_size, process_index=pidx, process_count=pcount, split=split,
                  description=data.description, num_workers=num_workers, num_threads=threads,
                  prefetch=int(config.get("prefetch_batches", 4) or 4), drop_remainder=drop,
                  stream=_Stream(n, None if num_epochs is None else int(num_epochs), seed, shuffle),
                  make_example=make)
