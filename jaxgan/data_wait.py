"""Time the training loop spends waiting for data: measured per logging interval, warned about.

Owns :class:`DataWait`, used by :mod:`jaxgan.train`'s loop: the fraction of
each logging interval spent in ``next(iterator)`` (TensorBoard
``train/data_wait_fraction``, ``data_wait`` on the progress line) and a
warning, past :attr:`DataWait.WARN_FRACTION`, that says how to give the input
pipeline more of the host.
"""
from __future__ import annotations

import math
import time
from typing import Any

import jax


class DataWait:
  """How much of the loop's time goes to waiting for the next batch, and a warning when it is too much.

  The loop keeps at most ``IN_FLIGHT`` steps dispatched ahead of the devices
  (it blocks on an older step's metrics), so time spent in ``next(iterator)``
  is time the devices had nothing queued, not time the loop ran ahead. The
  first fetch of a loop (worker start-up on a resume) is not counted.
  """
  IN_FLIGHT = 2
  WARN_FRACTION = 0.2       # warn when an interval's steps waited on data longer than this
  WARN_EVERY_S = 600.0      # and then at most this often

  def __init__(self, pipeline: Any, progress: Any):
    self.pipeline, self.progress = pipeline, progress
    self.wait_s, self.fetches = 0.0, 0
    self._inflight: list = []
    self._warned_at = -math.inf

  def next(self, iterator: Any) -> Any:
    t0 = time.perf_counter()
    batch = next(iterator)
    if self.fetches:
      self.wait_s += time.perf_counter() - t0
    self.fetches += 1
    return batch

  def dispatched(self, metrics: Any) -> None:
    self._inflight.append(metrics)
    if len(self._inflight) > self.IN_FLIGHT:
      jax.block_until_ready(self._inflight.pop(0))

  def interval_fraction(self, seconds: float, steps: int) -> float:
    """The fraction of the last ``seconds`` (``steps`` steps) spent waiting for data; warns past the threshold."""
    fraction = min(self.wait_s / max(seconds, 1e-9), 1.0)
    now = time.perf_counter()
    if fraction > self.WARN_FRACTION and now - self._warned_at >= self.WARN_EVERY_S:
      self._warned_at = now
      p = self.pipeline
      from jaxgan.data.feed import host_cores  # pylint: disable=import-outside-toplevel
      self.progress.write(
          f"warning: the last {steps} steps waited for data {fraction:.0%} of the time ({self.wait_s:.1f} s of "
          f"{seconds:.1f} s): the input pipeline is slower than the devices. It reads with {p.num_workers} worker "
          f"process(es) x {p.num_threads} thread(s) on a host with {host_cores()} cores; give it more "
          "with --config.num_workers=N (worker processes) or --config.data_threads=N, or make each example cheaper "
          "(images stored near load_size, ArrayRecord/TFDS instead of many small files); docs/data.md says how "
          "many host cores each accelerator needs.")
    self.wait_s = 0.0
    return fraction
