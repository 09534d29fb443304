"""Checkpoints: every Orbax call of jaxgan lives here.

A checkpoint is one step directory ``WORKDIR/checkpoints/<step>/`` written by an
Orbax ``CheckpointManager`` (asynchronous, atomic: a step directory appears only
once complete, so a crash mid-save leaves the previous one usable) with three items:

* ``state``: the whole train state (step, params, BatchNorm statistics, both
  optimiser states with the schedule position, image pools, PRNG key);
* ``data``: the Grain iterator's position (one JSON file per process);
* ``meta``: JSON with the run's config, the batch shapes the state was built
  for, and the jaxgan version.

Restoring checks the saved config against the current one first
(:data:`STRUCTURAL_KEYS`; schedule and step counts may change) and then the
array shapes, so a mismatch is refused with a message naming what differs. A
step whose files cannot be read is reported and the previous step is used.
:meth:`Checkpointer.save` refuses a state holding NaN or inf (:func:`jaxgan.state_checks.all_finite`),
so every step on disk is finite and the rotation (``keep`` newest) always keeps
the newest finite one.

A step written by ``jaxgan import-torch`` (:mod:`jaxgan.interop.workdir`) has a
meta entry ``imported`` and no ``data`` item (training from it starts the data
from the beginning); one that holds only part of a model also has
``translate_only`` (the reason), and :meth:`Checkpointer.check_config` refuses to train it.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxgan import objectives
from jaxgan.state_checks import all_finite, describe_nonfinite, nonfinite_summary  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# What of a key's value fixes the state's shapes, where not the value itself: with ema_decay only whether
# the state keeps an average at all (a config saved before the key existed has none).
STRUCTURAL_VIEW = {"ema_decay": lambda v: float(v or 0.0) > 0.0}
# Keys that fix the shapes of the state: a checkpoint written with other values cannot be resumed.
STRUCTURAL_KEYS = ("model", "netG", "netD", "norm", "input_nc", "output_nc", "ngf", "ndf", "n_layers_D")
CHECKPOINT_SUBDIR = "checkpoints"
IMPORTED_KEY = "imported"              # meta entry of a step written by jaxgan import-torch
TRANSLATE_ONLY_KEY = "translate_only"  # meta entry: why that import cannot be trained
QUARANTINE_SUBDIR = "unreadable_checkpoints"


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable, or does not fit the current config."""


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written (full disk, read-only or unwritable folder); the message names the
  step, the path, the system's reason and the newest complete checkpoint, which is kept."""


_WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG, errno.EIO)


def write_failure(e: BaseException) -> str | None:
  """The system's reason (``"No space left on device"``) when ``e`` or an exception it came from is a
  failed write: an OSError, or a TensorStore error carrying ``os_error_code``; else None."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
      return e.strerror or os.strerror(e.errno)
    code = re.search(r"os_error_code='?(\d+)", str(e))
    if code and int(code.group(1)) in _WRITE_ERRNOS:
      return os.strerror(int(code.group(1)))
    e = e.__cause__ or e.__context__
  return None


class ConfigMismatchError(CheckpointError):
  """The checkpoint was written for a different model/network configuration."""


class NonFiniteStateError(CheckpointError):
  """A state holding NaN or inf was given to :meth:`Checkpointer.save` (nothing was written)."""


class NotTrainableError(CheckpointError):
  """The workdir holds an imported model that cannot be trained (e.g. a single generator)."""


def checkpoint_dir(workdir: str | Path) -> Path:
  """Where the step directories of ``workdir`` live."""
  return Path(workdir) / CHECKPOINT_SUBDIR


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """Human-readable differences in the keys that fix the state's shapes ([] when compatible)."""
  keys = list(STRUCTURAL_KEYS)
  for model in dict.fromkeys((saved.get("model"), current.get("model"))):
    if model in objectives.NAMES:
      keys += [k for k in objectives.get(model).STATE_KEYS if k not in keys]
  diffs = []
  for key in keys:
    a, b = saved.get(key), current.get(key)
    view = STRUCTURAL_VIEW.get(key, lambda v: tuple(v) if isinstance(v, list) else v)   # JSON saves tuples as lists
    if view(a) != view(b):
      diffs.append(f"{key}: checkpoint has {a!r}, config has {b!r}")
  return diffs


def _abstract(tree: Any) -> Any:
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _key(x: Any) -> tuple:
  return tuple(x.shape), str(x.dtype)


def _describe(pairs: list, wanted: collections.Counter, limit: int = 8) -> str:
  remaining, names = collections.Counter(wanted), []
  for name, x in pairs:
    if remaining[_key(x)] > 0:
      remaining[_key(x)] -= 1
      names.append(f"{name} {_key(x)[0]} {_key(x)[1]}")
  return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def shape_differences(saved_tree: Any, abstract_state: Any) -> list[str]:
  """Arrays (shape, dtype) present on one side only; [] when the state fits the checkpoint."""
  saved = [(getattr(x, "name", jax.tree_util.keystr(p)), x)
           for p, x in jax.tree_util.tree_flatten_with_path(saved_tree)[0]]
  ours = [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(abstract_state)[0]]
  sig_saved = collections.Counter(_key(x) for _, x in saved)
  sig_ours = collections.Counter(_key(x) for _, x in ours)
  if sig_saved == sig_ours:
    return []
  out = [f"the checkpoint has {len(saved)} arrays, this config builds {len(ours)}"]
  if sig_saved - sig_ours:
    out.append("only in the checkpoint: " + _describe(saved, sig_saved - sig_ours))
  if sig_ours - sig_saved:
    out.append("only in this config: " + _describe(ours, sig_ours - sig_saved))
  return out


class Checkpointer:
  """The checkpoints of one workdir: save asynchronously, keep the last ``keep``, restore safely.

  ``read_only=True`` (translate, evaluate) never creates, deletes or moves anything.
  """

  def __init__(self, workdir: str | Path, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
    self.workdir = Path(workdir).absolute()
    self.directory = checkpoint_dir(self.workdir)
    self.read_only = read_only
    self._keep = keep
    self._async = async_save
    self._pending: int | None = None   # the step of the newest save started
    self._failed = False               # a write failure was reported
    if read_only and not self.directory.is_dir():
      raise CheckpointError(f"no checkpoints in {self.workdir}: {self.directory} does not exist "
                            f"(train first: jaxgan train --config ... --workdir {self.workdir})")
    self._manager = self._make_manager()

  def _make_manager(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if self.read_only else (self._keep if self._keep and self._keep > 0 else None),
        create=not self.read_only,
        read_only=self.read_only,
        cleanup_tmp_directories=not self.read_only,
        enable_async_checkpointing=self._async,
    )
    import grain  # the iterator's handler; registered with Orbax by grain itself
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler(),
                "data": grain.checkpoint.CheckpointHandler()}
    return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  # ------------------------------------------------------------------ queries

  def steps(self) -> list[int]:
    """Committed steps, oldest first (half-written temporary directories are not steps)."""
    return sorted(int(s) for s in self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def set_aside(self) -> list[str]:
    """Names of the step folders moved to ``WORKDIR/unreadable_checkpoints/`` ([] when none)."""
    root = self.workdir / QUARANTINE_SUBDIR
    return sorted((p.name for p in root.iterdir()), key=lambda n: (len(n), n)) if root.is_dir() else []

  def step_path(self, step: int) -> Path:
    return self.directory / str(step)

  def read_meta(self, step: int) -> dict:
    """The ``meta`` item (config, batch shapes, version) of ``step``; CheckpointError if unreadable."""
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # noqa: BLE001 - any failure to read means this step is unusable
      raise CheckpointError(f"cannot read {self.step_path(step) / 'meta'}: {type(e).__name__}: {e}") from e
    if not isinstance(meta, dict) or "config" not in meta:
      raise CheckpointError(f"{self.step_path(step) / 'meta'} holds no config (got {type(meta).__name__})")
    return meta

  def check_compatible(self, step: int, current_config: Mapping[str, Any], abstract_state: Any) -> dict:
    """Read ``step``'s meta and array metadata; raise ConfigMismatchError when they do not fit."""
    meta = self.read_meta(step)
    diffs = config_differences(meta["config"], current_config)
    if diffs:
      raise self._mismatch(step, diffs)
    try:
      saved_tree = self._manager.item_metadata(step)["state"]
      saved_tree = getattr(saved_tree, "tree", saved_tree)
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"cannot read the array metadata in {self.step_path(step) / 'state'}: "
                            f"{type(e).__name__}: {e}") from e
    if saved_tree is not None:
      diffs = shape_differences(saved_tree, abstract_state)
      if diffs:
        raise ConfigMismatchError(
            f"the state in {self.step_path(step)} does not fit this config's networks:\n  " + "\n  ".join(diffs))
    return meta

  def check_config(self, current_config: Mapping[str, Any]) -> None:
    """Refuse early (before building anything) when the newest readable step has another configuration,
    or is an import that cannot be trained."""
    for step in reversed(self.steps()):
      try:
        meta = self.read_meta(step)
      except CheckpointError:
        continue
      if meta.get(TRANSLATE_ONLY_KEY):
        raise NotTrainableError(
            f"{self.workdir} holds an imported model for translate/evaluate only, which cannot be trained: "
            f"{meta[TRANSLATE_ONLY_KEY]} (jaxgan import-torch --help); nothing was written")
      diffs = config_differences(meta["config"], current_config)
      if diffs:
        raise self._mismatch(step, diffs)
      return

  def _mismatch(self, step: int, diffs: list[str]) -> ConfigMismatchError:
    return ConfigMismatchError(
        f"the checkpoint in {self.step_path(step)} was trained with a different configuration:\n  "
        + "\n  ".join(diffs) + "\nuse the checkpoint's values, or a new --workdir to start a new run")

  # ------------------------------------------------------------------ save

  def save(self, step: int, state: Any, *, meta: Mapping[str, Any], data_iterator: Any = None,
           checked_finite: bool = False) -> None:
    """Start saving ``state`` (and the iterator position) as ``step``; returns once arrays are on host.

    A state holding NaN or inf is refused (:class:`NonFiniteStateError`, nothing written), so the
    newest step on disk, which the rotation always keeps, is finite. ``checked_finite``: the caller
    has already fetched :func:`all_finite` of this very state as True (the check is not repeated).
    """
    if self.read_only:
      raise CheckpointError("this Checkpointer is read-only")
    if not checked_finite and not bool(all_finite(state)):
      raise NonFiniteStateError(
          f"refusing to save step {step} in {self.directory}: the state holds non-finite values ("
          + describe_nonfinite(state) + "); "
          + self.kept_description())
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(dict(meta))}
    if data_iterator is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.wait()   # a failure of the previous asynchronous save is reported as that step's (Orbax waits anyway)
    self._pending = int(step)
    with self._reporting_write_errors():
      self._manager.save(int(step), args=ocp.args.Composite(**items), force=True)

  @contextlib.contextmanager
  def _reporting_write_errors(self):
    """Turn a failed write of the pending step (now, or found from an earlier asynchronous save) into
    :class:`CheckpointWriteError` naming it and the checkpoint kept; raised once, later calls pass."""
    try:
      yield
    except Exception as e:  # noqa: BLE001 - only failed writes are translated
      reason = write_failure(e)
      if reason is None or isinstance(e, CheckpointWriteError):
        raise
      step, self._failed = self._pending, True
      on_disk = self._committed_on_disk()
      kept = (f"the newest complete checkpoint, step {on_disk[-1]} in {self.directory}, is kept" if on_disk
              else "no complete checkpoint exists yet")
      raise CheckpointWriteError(
          f"cannot write checkpoint step {step} to {self.step_path(step) if step is not None else self.directory}: "
          f"{reason}; {kept} (the unfinished step is not used and is removed by the next run)") from e

  def _committed_on_disk(self) -> list[int]:
    """Complete step folders on disk now (the manager's own list may hold a step whose save failed)."""
    try:
      return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir())
    except OSError:
      return []

  def kept_description(self) -> str:
    """Which checkpoint a stopped run leaves (after pending saves commit): every saved step was finite."""
    self.wait()
    latest = self.latest_step()
    if latest is None:
      return f"no checkpoint was kept ({self.directory} holds none)"
    return f"the last good checkpoint is step {latest} in {self.directory} (checked finite; kept)"

  def wait(self) -> None:
    """Block until pending asynchronous saves are committed (CheckpointWriteError when one failed to write)."""
    with self._reporting_write_errors():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Wait for pending saves and release the manager; after a reported write failure, errors are not raised
    again (the first one already said what was kept)."""
    try:
      self.wait()
      self._manager.close()
    except Exception:  # noqa: BLE001
      if not self._failed:
        raise
      log.debug("closing the checkpoint manager after a failed write", exc_info=True)

  # ------------------------------------------------------------------ restore

  def restore(self, step: int, abstract_state: Any, *, data_iterator: Any = None) -> Any:
    """Restore ``step`` into arrays shaped/sharded like ``abstract_state`` (and the iterator in place).

    A state field that holds no arrays here (``ema`` = ``{}`` with the EMA off) and that a
    checkpoint written before the field existed lacks is left at its empty value.
    """
    target, absent = self._restore_target(step, abstract_state)
    items = {"state": ocp.args.StandardRestore(_abstract(target))}
    if data_iterator is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self._manager.restore(int(step), args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"cannot restore {self.step_path(step)}: {type(e).__name__}: {e}") from e
    if absent:
      return abstract_state.replace(**dict(restored.state), **absent)
    return restored.state

  def _restore_target(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """(what to restore into, the empty fields the checkpoint lacks) for a dataclass state."""
    if not dataclasses.is_dataclass(abstract_state):
      return abstract_state, {}
    try:
      saved = self._manager.item_metadata(step)["state"]
      saved = getattr(saved, "tree", saved)
    except Exception:  # noqa: BLE001 - restore itself reports an unreadable step
      return abstract_state, {}
    if not isinstance(saved, Mapping):
      return abstract_state, {}
    fields = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
    absent = {k: v for k, v in fields.items() if k not in saved and not jax.tree_util.tree_leaves(v)}
    if not absent:
      return abstract_state, {}
    return {k: v for k, v in fields.items() if k not in absent}, absent

  VANISHED_RETRIES = 20   # re-listings when steps vanish mid-read (a live trainer rotating them)

  def restore_newest(self, current_config: Mapping[str, Any], make_abstract: Callable[[dict], Any], *,
                     data_iterator: Any = None, step: int | None = None,
                     quarantine: bool = False, require_finite: bool = False) -> tuple[int, Any, dict]:
    """Restore the newest readable step (or exactly ``step``): returns ``(step, state, meta)``.

    ``make_abstract(meta)`` builds the abstract state (ShapeDtypeStructs with
    shardings) for the checkpoint's meta. A config/shape mismatch is raised at
    once; an unreadable step is logged and the previous one tried. With
    ``quarantine`` (training), unreadable steps are moved to
    ``WORKDIR/unreadable_checkpoints/`` so that training can write that step again.
    ``require_finite`` (training; every process alike) treats a step holding NaN/inf (one written
    before saves were checked) as unreadable too, so a resumed run starts from a finite state.
    """
    failures: list[str] = []
    unreadable: set[int] = set()
    for _ in range(self.VANISHED_RETRIES):
      available = self.steps()
      if not available:
        raise CheckpointError(f"no checkpoints in {self.directory}")
      if step is not None:
        if step not in available:
          raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; available: {available}")
        candidates = [step]
      else:
        candidates = [s for s in reversed(available) if s not in unreadable]
      vanished = None
      for s in candidates:
        try:
          meta = self.read_meta(s)
          abstract = make_abstract(meta)
          self.check_compatible(s, current_config if current_config is not None else meta["config"], abstract)
          imported = IMPORTED_KEY in meta   # an import has no data position: the iterator starts afresh
          state = self.restore(s, abstract, data_iterator=None if imported else data_iterator)
          if require_finite and not bool(all_finite(state)):
            raise CheckpointError(f"{self.step_path(s)} holds non-finite values ("
                                  + describe_nonfinite(state)
                                  + "), written before jaxgan checked the states it saves")
        except ConfigMismatchError:
          raise
        except CheckpointError as e:
          if not self.step_path(s).exists():   # deleted after it was listed: a trainer's rotation, not damage
            vanished = s
            break
          failures.append(str(e))
          unreadable.add(s)
          log.warning("checkpoint step %d is unreadable, trying an older one: %s", s, e)
          if quarantine:
            self._quarantine(s)
          continue
        if failures:
          log.warning("restored step %d after skipping unreadable newer checkpoints", s)
        return s, state, meta
      if vanished is None:
        break
      if step is not None:
        raise CheckpointError(f"checkpoint step {step} in {self.directory} was removed while being read (a "
                              "training run on this workdir rotates its checkpoints: keep_checkpoints); choose "
                              "a newer --step")
      log.info("checkpoint step %d was removed while being read (a run is writing this workdir); reading the "
               "newest step again", vanished)
      self._manager.reload()   # list afresh: the newest step now is newer than what was listed
    raise CheckpointError("no readable checkpoint in " + str(self.directory) + ":\n  " + "\n  ".join(
        failures or ["every step listed was removed while being read (a run on this workdir rotates them faster "
                     "than they can be read)"]))

  def _quarantine(self, step: int) -> None:
    """Move an unreadable step directory aside (inside the workdir; nothing is deleted)."""
    if self.read_only:
      return
    dest_root = self.workdir / QUARANTINE_SUBDIR
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / str(step)
    n = 1
    while dest.exists():
      dest = dest_root / f"{step}.{n}"
      n += 1
    shutil.move(str(self.step_path(step)), str(dest))
    log.warning("moved the unreadable checkpoint %s to %s", self.step_path(step), dest)
    self._manager.close()
    self._manager = self._make_manager()


def list_steps(workdir: str | Path) -> list[int]:
  """Committed checkpoint steps of ``workdir`` without creating anything ([] when none)."""
  if not checkpoint_dir(workdir).is_dir():
    return []
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    return ckpt.steps()
  finally:
    ckpt.close()


def abstract_state_for(meta: Mapping[str, Any], sharding: Any) -> Any:
  """ShapeDtypeStructs (placed with ``sharding``) of the state a checkpoint's meta describes (no compute).

  The objective registry builds the state's shapes from the config and batch shapes the meta records.
  """
  config = ml_collections.ConfigDict(meta["config"])
  return with_sharding(objectives.abstract_state(config, meta["batch_shapes"]), sharding)


def with_sharding(abstract: Any, sharding: Any) -> Any:
  """ShapeDtypeStructs of ``abstract`` placed with ``sharding`` (for restoring onto a mesh)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)

