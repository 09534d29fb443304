"""What the benchmark modes share: paths, timing, peak RSS, the matmul peak, the PyTorch worker process.

Imports nothing heavy at module level: the PyTorch worker (spawned) imports
this module and must never import JAX.
"""
from __future__ import annotations

import importlib
import os
import resource
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def rss_mb() -> float:
  """Peak resident memory of this process so far, MiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(field: str) -> float:
  """A ``VmRSS``/``VmHWM`` line of /proc/self/status, MiB."""
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise KeyError(field)


def step_rss_mb(fn: Callable[[], Any]) -> dict:
  """Resident memory around one call of ``fn`` (Linux): ``rss_before_mb`` and ``step_peak_mb``, the peak
  during the call above that (the high-water mark reset through /proc/self/clear_refs first); ``{}``
  where the kernel allows no reset."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    before = _status_mb("VmRSS")
    fn()
    return {"rss_before_mb": round(before, 1), "step_peak_mb": round(_status_mb("VmHWM") - before, 1)}
  except (OSError, KeyError):
    return {}


def block(x):
  """``jax.block_until_ready(x)``."""
  import jax
  return jax.block_until_ready(x)


def timed(fn: Callable[[], Any]) -> float:
  """Seconds one call of ``fn`` takes."""
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def xla_flops(compiled) -> float:
  """XLA's FLOP count of a compiled computation (per device when sharded); NaN when XLA gives none."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def measure_peak(n: int = 2048, reps: int = 6, torch_too: bool = True, dtype: str = "float32") -> dict:
  """GFLOP/s of an n x n x n ``dtype`` matmul (best of ``reps``) in JAX and, if importable, PyTorch (CPU,
  float32). On an accelerator take n >= 8192 for a figure near its peak."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.dtype(dtype))
  f = jax.jit(lambda x, y: x @ y)
  block(f(a, a))
  best = min(timed(lambda: block(f(a, a))) for _ in range(reps))
  out = {"peak_jax_gflops": round(2 * n ** 3 / best / 1e9, 1)}
  if torch_too and jax.default_backend() == "cpu":
    try:
      import torch
      t = torch.randn(n, n)
      torch.mm(t, t)
      best_t = min(timed(lambda: torch.mm(t, t)) for _ in range(reps))
      out["peak_torch_gflops"] = round(2 * n ** 3 / best_t / 1e9, 1)
    except ImportError:
      pass
  out["peak_gflops"] = max(out.values())
  return out


def _torch_worker(conn, threads: int, keep_freed_memory: bool = False) -> None:
  """Child process: builds PyTorch thunks on request and times them one at a time.

  Messages: ("build", "module:function", *args) calls that builder (a mode's,
  e.g. ``bench.ops:torch_thunks``), which returns ``(thunks, answer)``: the
  thunks are kept (added to those of earlier builds) and the answer sent back; ("run", name) runs one thunk and
  answers its seconds; ("stop",) ends. Keeping torch in its own process keeps
  its OpenMP threads and JAX's thread pool from spinning against each other.
  ``keep_freed_memory``: the malloc setting of ``jaxgan.cpu.host`` (``--torch-tuned``).
  """
  if keep_freed_memory:
    from jaxgan.cpu import host  # pylint: disable=import-outside-toplevel
    host.keep_freed_memory()
  import torch
  torch.set_num_threads(threads)
  thunks: dict[str, Callable] = {}
  while True:
    msg = conn.recv()
    if msg[0] == "stop":
      break
    if msg[0] == "build":
      module, _, function = msg[1].partition(":")
      new, answer = getattr(importlib.import_module(module), function)(*msg[2:])
      thunks.update(new)   # several builds (models) live side by side, each thunk under its own name
      conn.send(answer)
    elif msg[0] == "run":
      conn.send(timed(thunks[msg[1]]))


class TorchWorker:
  """Handle of a :func:`_torch_worker` process (spawned, so it never imports JAX)."""

  def __init__(self, threads: int, keep_freed_memory: bool = False):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_torch_worker, args=(child, threads, keep_freed_memory), daemon=True)
    self.proc.start()

  def call(self, *msg):
    self.conn.send(msg)
    return self.conn.recv()

  def close(self) -> None:
    self.conn.send(("stop",))
    self.proc.join(timeout=30)
