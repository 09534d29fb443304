"""Process-wide settings that make the compiled train step faster on a CPU host, and a guard against
compiled programs exhausting the process's memory mappings (:func:`relieve_mapping_pressure`).

Neither changes any result; both are process-global, so library code never
applies them: the ``jaxgan`` program does (``cli.main`` run as a program) and
``scripts/benchmark.py`` does, as the very first thing, before JAX starts its
threads or its backend. Users with their own loop can call :func:`configure`
at the top of their script. ``JAXGAN_HOST_TUNING=0`` turns both off.

Both are for hosts whose JAX backend is the CPU. On a GPU/TPU host the
malloc setting only costs (freed host memory is never returned to the OS,
which hurts Colab's RAM and threaded input pipelines), so :func:`configure`
applies nothing when :func:`expected_backend` says an accelerator will be used:
``JAX_PLATFORMS`` names one first, or (``JAX_PLATFORMS`` unset) a JAX GPU/TPU
plugin or ``libtpu`` is installed. It must decide before JAX initialises its
backend, hence it reads the environment and the installed packages only.

* :func:`keep_freed_memory` -- glibc's malloc serves every block over 32 MiB
  (and every large block of a non-main thread) with ``mmap`` and returns it to
  the OS on ``free``. XLA:CPU allocates a step's temporary buffers fresh each
  step (0.5 GB for pix2pix and 2 GB for CycleGAN at 256x256), so every step
  page-faulted and zeroed them again: 130,000 faults and ~0.25 s of system CPU
  time per pix2pix step. With one arena, no ``mmap`` and no trimming, freed
  blocks are reused and a steady-state step takes no page faults. Memory that
  a process has freed stays reserved for it (its peak does not grow).
* :func:`add_xla_cpu_flags` -- ``--xla_cpu_copy_insertion_use_region_analysis``:
  XLA:CPU's default copy insertion copies each donated parameter and Adam
  moment before updating it in place (~440 MB per pix2pix step); the region
  analysis that the GPU compiler uses proves the copies unneeded.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8

XLA_CPU_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)


def _enabled() -> bool:
  return os.environ.get("JAXGAN_HOST_TUNING", "1").strip().lower() not in ("0", "false", "no", "off")


def _glibc():
  """glibc as a ctypes library, or None (other C libraries, other systems)."""
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.gnu_get_libc_version  # pylint: disable=pointless-statement  # glibc only (not musl)
  except (OSError, AttributeError):
    return None
  return libc


def keep_freed_memory() -> bool:
  """Make malloc reuse freed memory instead of unmapping it (see module doc). True if applied.

  Call before JAX creates its threads (before the first computation): a thread
  that has already allocated keeps its own arena.
  """
  libc = _glibc()
  if libc is None:
    return False
  return all(libc.mallopt(param, value) == 1
             for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))


def add_xla_cpu_flags(environ: dict | None = None) -> list[str]:
  """Append :data:`XLA_CPU_FLAGS` to ``XLA_FLAGS`` unless it already sets them; returns those added.

  Only takes effect when called before the first JAX computation in the process.
  """
  env = os.environ if environ is None else environ
  current = env.get("XLA_FLAGS", "")
  added = [f for f in XLA_CPU_FLAGS if f.split("=")[0] not in current]
  if added:
    env["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added


_ACCELERATOR_PACKAGES = {"libtpu": "tpu", "libtpu_nightly": "tpu"}   # plus jax_plugins entry points (cuda, rocm)


def expected_backend(environ: dict | None = None, plugins: list[str] | None = None) -> str:
  """The platform JAX will pick ("cpu", "gpu" or "tpu"), decided without initialising JAX.

  ``JAX_PLATFORMS`` wins (its first entry); else an installed JAX plugin
  (``jax_plugins`` entry points such as ``cuda12``/``rocm``) means "gpu" and
  ``libtpu`` means "tpu"; else "cpu". ``plugins`` replaces the installed list (tests).
  """
  env = os.environ if environ is None else environ
  first = env.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
  if first:
    return {"cuda": "gpu", "rocm": "gpu"}.get(first, first)
  if plugins is None:
    import importlib.metadata  # pylint: disable=import-outside-toplevel
    import importlib.util  # pylint: disable=import-outside-toplevel
    plugins = [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
    plugins += [name for name in _ACCELERATOR_PACKAGES if importlib.util.find_spec(name) is not None]
  for name in plugins:
    if name in _ACCELERATOR_PACKAGES:
      return _ACCELERATOR_PACKAGES[name]
    if "tpu" in name:
      return "tpu"
    if any(k in name for k in ("cuda", "rocm", "gpu")):
      return "gpu"
  return "cpu"


def configure(environ: dict | None = None) -> dict:
  """Apply both settings on a CPU host (unless ``JAXGAN_HOST_TUNING=0``); returns what was applied."""
  backend = expected_backend(environ)
  if not _enabled() or backend != "cpu":
    return {"keep_freed_memory": False, "xla_flags": [], "backend": backend}
  return {"keep_freed_memory": keep_freed_memory(), "xla_flags": add_xla_cpu_flags(environ), "backend": backend}


# --- compiled programs and the kernel's limit on memory mappings --------------------------------------------
# XLA:CPU loads each compiled program's machine code into memory mappings of its own: a small CycleGAN run's
# programs (init, train step, translate, evaluation) hold about 2,900 of them, for as long as JAX's caches keep
# the programs. Linux allows a process vm.max_map_count mappings (65,530 by default); at the limit XLA's next
# compile crashes the process with a segmentation fault, not an error. A process that compiles many distinct
# programs reaches it: a notebook that trains one config after another, or a test suite (ours
# did, near its end). The entry points call :func:`relieve_mapping_pressure`, which drops the compiled programs once half
# the limit is in use; the next call of each compiles again (or reads JAX's persistent cache).
MAPPING_PRESSURE = 0.5


def memory_mappings() -> tuple[int, int] | None:
  """(memory mappings this process holds, the kernel's per-process limit), or None where Linux's /proc is
  not there to say."""
  try:
    with open("/proc/self/maps", "rb") as f:
      held = sum(1 for _ in f)
    with open("/proc/sys/vm/max_map_count", encoding="ascii") as f:
      limit = int(f.read().strip())
  except (OSError, ValueError):
    return None
  return held, limit


def relieve_mapping_pressure(fraction: float | None = None) -> bool:
  """Drop JAX's compiled programs (and jaxgan's loaded ones) when this process holds more than ``fraction``
  (default :data:`MAPPING_PRESSURE`) of the kernel's memory-mapping limit; True if it did. See the comment
  above for why."""
  fraction = MAPPING_PRESSURE if fraction is None else fraction
  counts = memory_mappings()
  if counts is None or counts[0] <= fraction * counts[1]:
    return False
  import gc  # pylint: disable=import-outside-toplevel
  import logging  # pylint: disable=import-outside-toplevel

  import jax  # pylint: disable=import-outside-toplevel

  from jaxgan.cpu import aot_cache  # pylint: disable=import-outside-toplevel
  aot_cache.forget()
  jax.clear_caches()
  gc.collect()
  after = memory_mappings()
  logging.getLogger(__name__).warning(
      "this process held %d of the %d memory mappings Linux allows it (vm.max_map_count), most of them compiled "
      "programs; dropped JAX's compiled-program caches (now %s) so that the next compile does not crash; "
      "programs compile again on their next call", counts[0], counts[1], after[0] if after else "?")
  return True
