"""Compiled programs saved whole, so that a restart skips tracing and lowering too.

JAX's persistent compilation cache (which the ``jaxgan`` program turns on)
saves XLA's compile, but every start still traces the train step and lowers it
to StableHLO to compute that cache's key: 1-2.5 s per start for the demo
recipes on a 2-core CPU. This cache stores the compiled executable itself
(``jax.experimental.serialize_executable``) under a key of everything the
program depends on -- the source of the ``jaxgan`` package, the name and
configuration of the program, the shapes, dtypes and shardings of its
arguments, the versions of jax, jaxlib, flax and optax, ``XLA_FLAGS``, the
JAX settings that change lowering, the devices, and the layer-form
calibration -- and loads it without tracing.

A program that JAX's cache supplied is not saved here: on XLA:CPU (jax 0.10) an
executable that was itself deserialised serialises without part of its code,
and loading that file fails when the program runs ("Function ... not found").
Such a program is saved on the first start that compiles it afresh (after JAX's
cache entry is gone, e.g. ``JAXGAN_CACHE_DIR`` pointed elsewhere); until then
every start costs tracing and lowering only.

Only the ``jaxgan`` program uses it (``cli.enable_compilation_cache`` calls
:func:`set_directory`); library calls are unaffected. Files live in
``jaxgan-aot/`` inside the compilation cache folder; ``JAXGAN_AOT_CACHE=0``
turns it off. Every source change keys new files (10-15 MB for a CycleGAN step), so
the folder is kept under ``JAXGAN_AOT_CACHE_MAX_MB`` (default 1024): after a save,
the files used longest ago are deleted first (a load marks a file used).
Multi-process runs do not use it (every process compiles the same program
together). Any failure to load or save falls back to the normal
jit path with a warning: this cache never stops a run. The files are pickles
written by this user's own runs (as JAX's cache files are); do not point the
cache at a folder others can write.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

ENV = "JAXGAN_AOT_CACHE"
MAX_MB_ENV = "JAXGAN_AOT_CACHE_MAX_MB"
DEFAULT_MAX_MB = 1024
SUBDIR = "jaxgan-aot"
_DIRECTORY: Path | None = None
_LOADED: dict[str, Any] = {}    # key -> Compiled, so that a second call in the process reads no file
_JAX_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_jax_cache_hits = 0
_listening = False


def _count_jax_cache_hit(event: str, **_kwargs: Any) -> None:
  global _jax_cache_hits
  if event == _JAX_CACHE_HIT_EVENT:
    _jax_cache_hits += 1


def _listen_for_jax_cache_hits() -> None:
  global _listening
  if not _listening:
    import jax.monitoring
    jax.monitoring.register_event_listener(_count_jax_cache_hit)
    _listening = True


def set_directory(cache_dir: str | os.PathLike | None) -> None:
  """Use ``cache_dir/jaxgan-aot`` for compiled programs (None: off)."""
  global _DIRECTORY
  _DIRECTORY = None if cache_dir is None else Path(cache_dir) / SUBDIR


def forget() -> None:
  """Let go of the programs this process loaded or compiled here (:func:`jaxgan.cpu.host.relieve_mapping_pressure`);
  the files stay."""
  _LOADED.clear()


def directory() -> Path | None:
  """The folder in use, or None when the cache is off (not set, ``JAXGAN_AOT_CACHE=0``, or several processes)."""
  import jax
  if _DIRECTORY is None or os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return None
  if jax.process_count() > 1:
    return None
  return _DIRECTORY


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
  """SHA-256 of every ``.py`` file of the ``jaxgan`` package (names and contents)."""
  root = Path(__file__).resolve().parent.parent   # the whole jaxgan package
  h = hashlib.sha256()
  for path in sorted(root.rglob("*.py")):
    h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
  return h.hexdigest()


def _leaf_signature(x: Any) -> str:
  import numpy as np
  shape, dtype = tuple(np.shape(x)), str(getattr(x, "dtype", np.asarray(x).dtype))
  sharding = getattr(x, "sharding", None)
  return f"{shape}{dtype}{sharding!r}" if sharding is not None else f"{shape}{dtype}"


def cache_key(name: str, parts: Sequence[Any], args: Sequence[Any]) -> str:
  """The key of program ``name`` configured by ``parts`` and called on ``args``."""
  import flax
  import jax
  import jaxlib
  import optax
  leaves, treedef = jax.tree_util.tree_flatten(list(args))
  ident = {
      "name": name, "parts": [str(p) for p in parts], "tree": str(treedef),
      "leaves": [_leaf_signature(x) for x in leaves], "source": source_hash(),
      "versions": [jax.__version__, jaxlib.__version__, flax.__version__, optax.__version__],
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "jax_config": [str(getattr(jax.config, k)) for k in ("jax_enable_x64", "jax_default_matmul_precision",
                                                       "jax_default_prng_impl", "jax_threefry_partitionable")],
      "devices": [(d.platform, d.device_kind, d.id) for d in jax.devices()],
  }
  return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def compile_cached(jitted: Any, args: Sequence[Any], *, name: str, parts: Sequence[Any] = ()) -> Any:
  """``jitted`` compiled for ``args``: loaded from the cache when it holds this program, else compiled
  (through JAX's own cache) and saved. Returns the ``jax.stages.Compiled`` or, with the cache off,
  ``jitted`` itself. The result accepts only arguments of the same shapes, dtypes and shardings."""
  folder = directory()
  if folder is None:
    return jitted
  from jax.experimental import serialize_executable
  try:
    path = folder / f"{name}-{cache_key(name, parts, args)}.bin"
  except Exception as e:  # noqa: BLE001 - an argument without a signature: use the normal path
    log.warning("not caching %s: %s", name, e)
    return jitted
  if path.name in _LOADED:
    return _LOADED[path.name]
  if path.is_file():
    try:
      with open(path, "rb") as f:
        payload, in_tree, out_tree = pickle.load(f)
      _LOADED[path.name] = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
      _mark_used(path)
      return _LOADED[path.name]
    except Exception as e:  # noqa: BLE001 - a stale or broken file is compiled again and replaced
      log.warning("could not load the cached %s from %s (%s); compiling it again", name, path, e)
  _listen_for_jax_cache_hits()
  hits = _jax_cache_hits
  compiled = _LOADED[path.name] = jitted.lower(*args).compile()
  if _jax_cache_hits != hits:
    log.info("not saving %s: JAX's compilation cache supplied it, and a re-serialised executable is "
             "incomplete on XLA:CPU", name)
    return compiled
  try:
    blob = pickle.dumps(serialize_executable.serialize(compiled))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
  except Exception as e:  # noqa: BLE001 - e.g. an executable with constants, or an unwritable folder
    log.warning("could not save the compiled %s to %s (%s)", name, folder, e)
    return compiled
  evict(folder, keep=path)
  return compiled


def _mark_used(path: Path) -> None:
  try:
    os.utime(path)
  except OSError:
    pass


def max_bytes() -> int:
  """The folder's size limit, from ``JAXGAN_AOT_CACHE_MAX_MB`` (default 1024 MB)."""
  raw = os.environ.get(MAX_MB_ENV, "").strip()
  try:
    return int(float(raw) * 2**20) if raw else DEFAULT_MAX_MB * 2**20
  except ValueError:
    log.warning("%s=%r is not a number of megabytes; using %d", MAX_MB_ENV, raw, DEFAULT_MAX_MB)
    return DEFAULT_MAX_MB * 2**20


def evict(folder: Path, keep: Path | None = None) -> list[Path]:
  """Delete the programs in ``folder`` used longest ago until it holds at most :func:`max_bytes`
  (``keep``, the file just saved, stays). Returns what was deleted; never fails a run."""
  try:
    files = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in folder.glob("*.bin") if p != keep)
    total = sum(size for _, size, _ in files) + (keep.stat().st_size if keep is not None else 0)
  except OSError:
    return []
  removed, limit = [], max_bytes()
  for _, size, path in files:
    if total <= limit:
      break
    try:
      path.unlink()
    except OSError:
      continue
    total -= size
    removed.append(path)
  if removed:
    log.info("removed %d compiled program(s) used longest ago from %s (over %d MB)", len(removed), folder,
             limit // 2**20)
  return removed
