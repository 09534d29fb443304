"""How batches are shipped and how much of the host reads them (used by :mod:`jaxgan.data.pipeline`).

Owns: the shipping format of a batch (:data:`DATA_DTYPES`, :func:`ship_dtypes`,
:func:`to_ship`: uint8 pixels for 8-bit data, uint16 for 16-bit, float32 in
[-1, 1] for float sources, made [-1, 1] on the device by
:func:`jaxgan.images.to_model_range`), the sizing of the host work
(:func:`host_cores`, :func:`local_accelerators`, :func:`data_parallelism`: worker
processes or reader threads), and starting Grain's spawned workers without
re-running the user's ``__main__`` (:func:`workers_skip_main`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import numpy as np

from jaxgan import config as config_lib
from jaxgan.data.image_io import DataError, max_value, to_model_range
from jaxgan.data.sources import SplitData

DATA_DTYPES = config_lib.DATA_DTYPES   # config.data_dtype: what a batch ships
MAX_AUTO_WORKERS = 32
_WARNED: set = set()   # (side, shipped dtype, image dtype) already warned about in this process


def to_ship(image: np.ndarray, ship: str, *, name: str = "image", side: str = "A") -> np.ndarray:
  """HxWxC pixels (uint8 / uint16 / float32 in [0, 1]) -> the shipping format ``ship``.

  ``"float32"``: [-1, 1] on the host (exact, :func:`jaxgan.data.image_io.to_model_range`);
  ``"uint16"`` from uint8: x 257 (exact: the same value in [-1, 1]); the same type: unchanged;
  to a narrower type: rounded, with a warning (once per process) naming ``name`` and the fix.
  """
  if ship == "float32":
    return to_model_range(image)
  dtype = np.dtype(ship)
  if image.dtype == dtype:
    return image
  if dtype == np.uint16 and image.dtype == np.uint8:
    return image.astype(np.uint16) * np.uint16(257)
  key = (side, ship, str(image.dtype))
  if key not in _WARNED:
    _WARNED.add(key)
    logging.warning("%s: a %s image in a stream that ships %s batches (decided from the split's first image, "
                    "config.data_dtype='auto'); its pixels are rounded to %s. Set --config.data_dtype=%s to keep "
                    "every bit (said once per process)", name, image.dtype, ship, ship,
                    "uint16" if image.dtype == np.uint16 else "float32")
  white = max_value(dtype)
  x = image.astype(np.float32) * np.float32(white / max_value(image.dtype))
  return np.clip(np.rint(x), 0, white).astype(dtype)


def host_cores() -> int:
  """CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except (AttributeError, OSError):
    return max(1, os.cpu_count() or 1)


def local_accelerators() -> int:
  """This process's non-CPU JAX devices; 0 when JAX's backends are not started (never starts them)."""
  if "jax" not in sys.modules:
    return 0
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    if not xla_bridge.backends_are_initialized():
      return 0
    import jax  # pylint: disable=import-outside-toplevel
    return sum(d.platform != "cpu" for d in jax.local_devices())
  except Exception:  # noqa: BLE001 - a JAX without this private helper: size as for CPU devices
    return 0


def data_parallelism(num_workers: int = -1, threads: int = 0, *, train: bool = True, cores: int | None = None,
                     accelerators: int | None = None) -> tuple[int, int]:
  """(worker processes, reader threads per process) for the config keys ``num_workers`` / ``data_threads``.

  ``num_workers >= 0`` and ``threads > 0`` are taken as given. Automatic
  (``num_workers=-1``, ``threads=0``), from ``cores`` (default
  :func:`host_cores`) and ``accelerators`` (default
  :func:`local_accelerators`): the training split of a process with
  accelerators gets ``min(cores - 1, 2 * accelerators + 2, 32)`` worker
  processes of one thread each (one core left to the training process; two
  workers per device covers pix2pix's ~200 examples/s per H100 at ~150 per
  core), at least 1; everything else (CPU devices, which share the cores with
  the step; evaluation splits, read once and short) reads in the training
  process with ``min(cores, 8)`` threads: Pillow's decode and resize release
  the GIL, so they run in parallel, and nothing waits for worker start-up.
  """
  num_workers, threads = int(num_workers), int(threads or 0)
  if num_workers < -1 or threads < 0:
    raise DataError(f"num_workers={num_workers} must be -1 (automatic), 0 (in the training process) or N > 0, "
                    f"and data_threads={threads} >= 0 (0: automatic)")
  cores = host_cores() if cores is None else max(1, int(cores))
  if num_workers == -1:
    accelerators = local_accelerators() if accelerators is None else int(accelerators)
    feeds_devices = train and accelerators > 0
    num_workers = max(1, min(cores - 1, 2 * accelerators + 2, MAX_AUTO_WORKERS)) if feeds_devices else 0
  if not threads:
    threads = 1 if num_workers else min(cores, 8)
  return num_workers, threads


def _first_dtype(source: Any) -> np.dtype | None:
  """The dtype of the first of a source's first few records that loads (None when none does)."""
  for i in range(min(len(source), 4)):
    try:
      item = source.load(i)
    except (DataError, OSError):
      continue
    return tuple(np.asarray(x).dtype for x in item) if isinstance(item, tuple) else np.asarray(item).dtype
  return None


def ship_dtypes(config: Any, data: SplitData, *, paired: bool, swap: bool) -> tuple[str, str]:
  """The shipping format of sides A and B (module docstring): ``config.data_dtype``, or from the first images."""
  choice = str(config.get("data_dtype", "auto") or "auto")
  if choice not in DATA_DTYPES:
    raise DataError(f"data_dtype={choice!r}: expected one of {DATA_DTYPES}")
  if choice != "auto":
    return choice, choice
  if paired and data.pairs is not None:
    pair = _first_dtype(data.pairs)
    dtypes = pair if isinstance(pair, tuple) else (None, None)
  else:
    dtypes = (_first_dtype(data.domain_a), _first_dtype(data.domain_b))
  if swap:
    dtypes = dtypes[::-1]
  names = {np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16"}
  return tuple(names.get(d, "float32") if d is not None else "float32" for d in dtypes)


@contextlib.contextmanager
def workers_skip_main(num_workers: int):
  """While Grain spawns worker processes: hide the ``__main__`` module's file and spec from
  ``multiprocessing``, so a worker does not run the user's script again (it needs nothing from it:
  the pipeline is jaxgan's own classes). A script that trains without ``if __name__ == "__main__":``
  would otherwise train again inside every worker, or fail there."""
  main = sys.modules.get("__main__")
  if num_workers <= 0 or main is None:
    yield
    return
  saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
  main.__dict__.pop("__file__", None)
  main.__spec__ = None
  try:
    yield
  finally:
    main.__dict__.pop("__spec__", None)
    main.__dict__.update(saved)
