"""The training loop: ``train_and_evaluate(config, workdir)``.

Around the jitted, data-parallel ``train_step`` of :mod:`jaxgan.pix2pix` /
:mod:`jaxgan.cyclegan` this module owns: the data iterator, resuming from the
newest checkpoint (state *and* iterator position, so a resumed run is
bit-identical to one that never stopped), periodic checkpoints, SIGTERM/SIGINT
handling (save at the next step boundary, every process at the same step: see
:mod:`jaxgan.preemption`; return normally), stopping on a non-finite loss or
state (checked on device at every log and save point; a non-finite state is
never saved, so the newest checkpoint, which the rotation keeps, is finite; the
message names the step and that checkpoint), logging (progress,
TensorBoard, HTML page, W&B) and periodic evaluation.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

import jaxgan
from jaxgan import checkpoint, checks, nets, objectives, parallel, reporting, state_checks
from jaxgan.cpu import aot_cache, host
from jaxgan import preemption
from jaxgan.data_wait import DataWait
from jaxgan.preemption import StopAgreement, StopSignal
from jaxgan.workdir_lock import WorkdirLock

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
  """The run cannot continue (e.g. a non-finite loss)."""


class NonFiniteLossError(TrainingError):
  """A loss (or the state) became NaN or infinite; the message names the step, the values and the
  checkpoint kept (every checkpoint is checked finite before it is written, so the newest is good)."""


class NonFiniteStateError(NonFiniteLossError):
  """The train state (params, optimiser state, EMA, BatchNorm statistics) holds NaN or inf."""


@dataclasses.dataclass
class TrainResult:
  """What a call to :func:`train_and_evaluate` ended with."""
  step: int                      # the state's step when the call returned
  preempted: bool                # stopped by a signal (or ``stop_at_step``) before the last step
  metrics: dict                  # the last logged training metrics (interval means)
  evaluation: dict | None        # the final evaluation, when one ran
  state: Any = None


def total_steps(config: ml_collections.ConfigDict) -> int:
  """``num_train_steps`` when > 0, else the steps of epochs ``epoch_count`` .. ``n_epochs + n_epochs_decay``."""
  if int(config.num_train_steps) > 0:
    return int(config.num_train_steps)
  epochs = int(config.n_epochs) + int(config.n_epochs_decay) - int(config.get("epoch_count", 1)) + 1
  return max(epochs, 0) * int(config.steps_per_epoch)


def make_meta(config: ml_collections.ConfigDict, batch: Mapping[str, np.ndarray]) -> dict:
  """The JSON stored with every checkpoint: the config and the shapes the state was built for."""
  return {"config": config.to_dict(), "jaxgan_version": jaxgan.__version__,
          "batch_shapes": {k: list(np.shape(batch[k])) for k in ("A", "B")},
          "process_count": jax.process_count()}


_COMPILED: dict = {}


def _config_key(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), sort_keys=True)


def _program_name(model, what: str) -> str:
  """``pix2pix-init``, ``cyclegan-train-step``, ...: the name of a cached program of ``model``."""
  return model.__name__.rsplit(".", 1)[-1] + "-" + what


def init_state(model, config: ml_collections.ConfigDict, batch: Mapping[str, Any], seed: int) -> Any:
  """``model.init`` on ``batch`` (jitted, compiled once per config), from ``PRNGKey(seed)``."""
  from jax._src import core as jax_core   # pylint: disable=import-outside-toplevel
  # compiler options are for a top-level jit only: under an outer trace (jax.eval_shape of this) none are set
  top_level = jax_core.trace_state_clean()
  key = ("init", model.__name__, _config_key(config), top_level)
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(lambda rng, b: model.init(rng, config, b),   # threefry init: see nets
                             compiler_options=nets.init_compiler_options() if top_level else None)
  args = (nets.to_key(int(seed)), batch)   # the threefry key of the seed, whatever jax_default_prng_impl
  init = aot_cache.compile_cached(_COMPILED[key], args, name=_program_name(model, "init"),
                                  parts=(_config_key(config),))   # the jaxgan program: no tracing on a restart
  return init(*args)


def compiled_train_step(model, config: ml_collections.ConfigDict, mesh) -> Any:
  """``parallel.jit_train_step`` for this model/config/mesh, built once per process (so a second
  ``train_and_evaluate`` call in the same process, e.g. a resume, does not compile again)."""
  key = ("step", model.train_step, _config_key(config), tuple(d.id for d in mesh.devices.flat))
  if key not in _COMPILED:
    _COMPILED[key] = parallel.jit_train_step(model.train_step, config, mesh)
  return _COMPILED[key]


def _check_finite(history: list[tuple[int, dict]], ckpt: checkpoint.Checkpointer, state: Any) -> dict[str, float]:
  """Fetch pending per-step metrics and whether ``state`` (after the last of them) is all finite;
  raise NonFiniteLossError at the first bad step (NonFiniteStateError for a bad state with finite
  losses), naming the checkpoint kept; return the metrics' means. Nothing non-finite is ever saved."""
  fetched, finite = jax.device_get(([m for _, m in history], state_checks.all_finite(state)))
  for (step, _), values in zip(history, fetched):
    bad = {k: float(v) for k, v in values.items() if not math.isfinite(float(v))}
    if bad:
      raise NonFiniteLossError(
          f"non-finite loss at step {step}: " + ", ".join(f"{k}={v}" for k, v in bad.items())
          + f" (all: {', '.join(f'{k}={float(v):.4g}' for k, v in values.items())}); nothing saved after it; "
          f"{ckpt.kept_description()}. Try a lower --config.lr, or check the data.")
  if not bool(finite):
    raise NonFiniteStateError(
        f"non-finite state at step {history[-1][0]} (losses finite): {state_checks.describe_nonfinite(state)}; "
        "not saved; "
        f"{ckpt.kept_description()}. Try a lower --config.lr, or check the data.")
  return {k: float(np.mean([float(v[k]) for v in fetched])) for k in fetched[-1]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                       stop_at_step: int | None = None, restart_from_scratch: bool = False) -> TrainResult:
  """Train (or resume) the run in ``workdir`` to ``total_steps(config)``, evaluating at the end.

  ``stop_at_step`` ends this call early at that step as a preemption would
  (checkpoint saved; the next call resumes). Returns a :class:`TrainResult`.
  When every checkpoint of ``workdir`` was unreadable and set aside
  (``unreadable_checkpoints/``) the call refuses (CheckpointError) unless
  ``restart_from_scratch``, which then trains from step 0 (the set-aside folders
  are kept); with a readable checkpoint it resumes as always.
  Raises NonFiniteLossError, checkpoint.ConfigMismatchError, data errors;
  ValueError for run values that cannot work (:func:`jaxgan.checks.validate_run_config`), before
  anything is written.
  """
  checks.validate_run_config(config)
  host.relieve_mapping_pressure()   # a process that has compiled many programs: free them before XLA crashes
  config = ml_collections.ConfigDict(config.to_dict())
  workdir = Path(workdir).absolute()
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir {workdir} is a file, not a directory: give a folder for the run")
  # A workdir this config cannot train is refused before the lock file is written (one process: Orbax's
  # manager synchronises the processes of a job as it is built, so a job checks after the lock, below).
  if jax.process_count() == 1 and checkpoint.checkpoint_dir(workdir).is_dir():
    reader = checkpoint.Checkpointer(workdir, read_only=True)
    try:
      reader.check_config(config.to_dict())
    finally:
      reader.close()
  workdir.mkdir(parents=True, exist_ok=True)
  # One writer per workdir (process 0 for a job): a second run is refused here, before anything is touched.
  lock = WorkdirLock(workdir) if parallel.is_main_process() else None
  if lock is not None:
    lock.acquire()
  try:
    ckpt = checkpoint.Checkpointer(workdir, keep=int(config.keep_checkpoints))
  except BaseException:
    if lock is not None:
      lock.release()
    raise
  try:
    ckpt.check_config(config.to_dict())   # refuse a mismatching workdir before building anything
    if ckpt.set_aside() and not ckpt.steps() and not restart_from_scratch:
      raise checkpoint.CheckpointError(_all_set_aside(ckpt) + "; nothing was written")
    run = _setup(config, workdir, ckpt, restart_from_scratch)
    try:
      preemption.check_startup("restoring the checkpoint" if run.resumed else "building the state")
      return _loop(run, config, workdir, ckpt, stop_at_step)
    finally:
      run.iterator.close()
  except OSError as e:   # a log, sample page or eval.json write on a full or read-only disk: one line
    reason = checkpoint.write_failure(e)
    if reason is None:
      raise
    raise TrainingError(f"cannot write {e.filename or workdir}: {reason}; the checkpoints in {ckpt.directory} "
                        f"are kept (newest complete: step {_newest_on_disk(ckpt)})") from e
  finally:
    try:
      ckpt.close()
    finally:
      if lock is not None:
        lock.release()


def _newest_on_disk(ckpt: checkpoint.Checkpointer) -> str:
  steps = ckpt._committed_on_disk()  # pylint: disable=protected-access
  return str(steps[-1]) if steps else "none"


@dataclasses.dataclass
class _Run:
  model: Any
  pipeline: Any
  iterator: Any
  mesh: Any
  state: Any
  start: int
  first: dict            # the first batch: builds the state; also the first training batch of a fresh run
  resumed: bool
  meta: dict


def _all_set_aside(ckpt: checkpoint.Checkpointer) -> str:
  return (f"every checkpoint of {ckpt.workdir} was unreadable and is set aside in "
          f"{ckpt.workdir / checkpoint.QUARANTINE_SUBDIR} ({', '.join(ckpt.set_aside())}); training now would "
          "start again from step 0 and lose the run: add --restart_from_scratch to do that (the set-aside folders "
          "are kept), or use a new --workdir")


def _setup(config: ml_collections.ConfigDict, workdir: Path, ckpt: checkpoint.Checkpointer,
           restart_from_scratch: bool = False) -> _Run:
  """Data pipeline, initial state, and the restore of the newest checkpoint when there is one
  (none readable: an error, or with ``restart_from_scratch`` a fresh start)."""
  from jaxgan import data
  model = objectives.for_config(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(int(config.batch_size), mesh)   # before any data is read or anything compiled
  checks.compute_dtype(config)
  pipeline = data.create_pipeline(config, split="train", process_index=jax.process_index(),
                                  process_count=jax.process_count())
  if int(config.steps_per_epoch) <= 0:
    config.steps_per_epoch = int(pipeline.steps_per_epoch)
  iterator = pipeline.iterator()
  first = _ab(next(iterator))
  decide_layer_forms(config, ckpt, model, first, mesh)   # once, before anything is traced
  state = init_state(model, config, first, int(config.seed))
  start, resumed = 0, bool(ckpt.steps())
  if resumed:
    abstract = checkpoint.with_sharding(jax.eval_shape(lambda: state), parallel.replicated_sharding(mesh))
    try:
      start, state, meta = ckpt.restore_newest(config.to_dict(), lambda _meta: abstract, data_iterator=iterator,
                                               quarantine=parallel.is_main_process(), require_finite=True)
    except checkpoint.ConfigMismatchError:
      raise
    except checkpoint.CheckpointError as e:   # nothing readable (and, on process 0, all set aside)
      if not restart_from_scratch:
        raise checkpoint.CheckpointError(f"{e}\n{_all_set_aside(ckpt)}") from None
      log.warning("no readable checkpoint in %s: --restart_from_scratch, training from step 0", ckpt.directory)
      iterator.close()   # the failed restore may have moved the iterator: a fresh one
      iterator = pipeline.iterator()
      first = _ab(next(iterator))
      state, start, resumed = parallel.replicate(state, mesh), 0, False
    else:
      log.info("resumed from %s at step %d", ckpt.step_path(start), start)
      resumed = checkpoint.IMPORTED_KEY not in meta   # imported weights: the data starts from the beginning
  else:
    state = parallel.replicate(state, mesh)
  return _Run(model, pipeline, iterator, mesh, state, int(start), first, resumed, make_meta(config, first))


def recorded_layer_forms(ckpt: checkpoint.Checkpointer) -> str | None:
  """The ``layer_forms`` the newest readable checkpoint of ``ckpt`` was trained with (None: none recorded)."""
  for step in reversed(ckpt.steps()):
    try:
      value = ckpt.read_meta(step)["config"].get("layer_forms")
    except checkpoint.CheckpointError:
      continue
    return None if value in (None, "auto") else str(value)
  return None


def decide_layer_forms(config: ml_collections.ConfigDict, ckpt: checkpoint.Checkpointer, model,
                       batch: Mapping[str, Any], mesh) -> "jaxgan.models.LayerForms":
  """Set ``config.layer_forms`` to the explicit XLA:CPU layer forms of this run and log them (one line).

  ``auto`` takes the forms recorded in the workdir's checkpoints when there are any (a resumed run
  compiles the program it was trained with, whatever this machine's calibration says), else
  :func:`jaxgan.cpu.calibration.resolve_forms` for the mesh's platform (measured per layer shape of this
  step on a one-process CPU run). An explicit value is used as written. The value goes into every
  checkpoint's metadata (:func:`make_meta`), which ``translate`` and ``evaluate`` read.
  """
  from jaxgan.cpu import calibration
  from jaxgan.models.forms import LayerForms
  spec = str(config.get("layer_forms", "auto")).strip()
  recorded = recorded_layer_forms(ckpt) if spec == "auto" else None
  if recorded is not None:
    forms, source = LayerForms.parse(recorded), "recorded in the workdir's checkpoints"
  elif spec == "auto":
    platform = str(mesh.devices.flat[0].platform)
    shapes = ()
    if platform == "cpu" and calibration.calibrates() is None:
      shapes = calibration.step_layer_shapes(lambda: model.init(nets.to_key(0), config, batch))
    forms = calibration.resolve_forms("auto", platform=platform, shapes=shapes)
    source = f"auto on {platform}" + ("" if platform != "cpu" else
                                      f", {calibration.calibrates() or 'this processor calibrated'}")
  else:
    forms, source = LayerForms.parse(spec), "config"
  config.layer_forms = forms.spec()
  log.info("layer forms: %s (%s)", forms.summary(), source)
  return forms


def _loop(run: _Run, config: ml_collections.ConfigDict, workdir: Path, ckpt: checkpoint.Checkpointer,
          stop_at_step: int | None) -> TrainResult:
  from jaxgan import fid_eval, inference
  main_process = parallel.is_main_process()
  total = total_steps(config)
  state, step = run.state, run.start
  first_batch = parallel.shard_batch(run.first, run.mesh)
  step_fn = aot_cache.compile_cached(   # the jaxgan program: a restart loads the step without tracing it
      compiled_train_step(run.model, config, run.mesh), (state, first_batch),
      name=_program_name(run.model, "train-step"),
      parts=(_config_key(config), tuple(d.id for d in run.mesh.devices.flat)))
  if jax.process_count() > 1:   # all compiled before the first collective (gloo waits 30 s for peers)
    parallel.compile_everywhere(step_fn, state, first_batch)
  preemption.check_startup("compiling the train step")   # one process: a signal until now ends the run here
  images_per_step = int(config.batch_size)
  every = lambda key: int(config.get(key, 0) or 0)  # noqa: E731
  due = lambda key: every(key) > 0 and step % every(key) == 0  # noqa: E731
  progress = reporting.Progress(total, step, images_per_step, enabled=main_process)
  reporter = reporting.Reporter(workdir, config, start_step=step, enabled=main_process)
  samples = inference.sample_batch(config, run.first, rows=int(config.get("sample_rows", 4))) if main_process else None
  fid = fid_eval.LazyFID() if every("fid_every_steps") > 0 else None   # weights looked up at the first FID
  history: list[tuple[int, dict]] = []
  last_metrics, evaluation, preempted = {}, None, False
  t_interval, s_interval = time.perf_counter(), step
  progress.write(f"{config.model} on {config.dataset}: {run.pipeline.num_examples} training examples, "
                 f"{config.steps_per_epoch} steps/epoch, {total} steps, batch {config.batch_size}, "
                 f"{run.mesh.devices.size} device(s); " + (f"resuming at step {step}" if run.resumed
                                                           else f"workdir {workdir}"))
  pending_first = None if run.resumed else run.first
  feed = DataWait(run.pipeline, progress)
  try:
    with StopSignal() as stop:
      agreement = StopAgreement(stop, run.mesh)   # every process stops at the same step
      while step < total:
        batch = pending_first if pending_first is not None else _ab(feed.next(run.iterator))
        pending_first = None
        state, metrics = step_fn(state, parallel.shard_batch(batch, run.mesh))   # uint8 pixels: made [-1, 1] on device
        feed.dispatched(metrics)
        step += 1
        history.append((step, metrics))
        reason = agreement.poll(step) or ("stop_at_step" if step == stop_at_step else None)
        stopping = reason is not None
        saving = stopping or step == total or due("checkpoint_every_steps")
        if saving or step % max(every("log_every_steps"), 1) == 0:
          last_metrics = _check_finite(history, ckpt, state)   # losses and state: nothing non-finite is saved
          history.clear()
          now = time.perf_counter()
          rate = (step - s_interval) * images_per_step / max(now - t_interval, 1e-9)
          wait = feed.interval_fraction(now - t_interval, step - s_interval)
          t_interval, s_interval = now, step
          reporter.scalars(step, {**last_metrics, "images_per_second": rate, "data_wait_fraction": wait},
                           prefix="train/")
          progress.update(step, {**last_metrics, "data_wait": wait})
        else:
          progress.update(step)
        if saving:
          ckpt.save(step, state, meta=run.meta, data_iterator=run.iterator, checked_finite=True)
          reporter.flush()
        if main_process and (step == total or due("sample_every_steps")):
          reporter.images(step, inference.visuals(run.model, config, parallel.local_copy(state), samples),
                          last_metrics)
        fid_due = fid is not None and (step == total or due("fid_every_steps"))
        if step == total or due("eval_every_steps") or fid_due:
          evaluation = _evaluate(config, state, workdir, reporter, step, progress, fid if fid_due else None)
        if stopping and step < total:
          preempted = True
          progress.write(f"stopping at step {step} ({reason}); checkpoint "
                         f"{ckpt.step_path(step)}")
          break
    if run.start >= total:
      progress.write(f"{workdir} is already trained to step {run.start} (of {total}); evaluating it")
      evaluation = _evaluate(config, state, workdir, reporter, step, progress)
  finally:
    progress.close()
    reporter.close()
  return TrainResult(step=step, preempted=preempted, metrics=last_metrics, evaluation=evaluation, state=state)


def _ab(batch: Mapping[str, Any]) -> dict:
  return {"A": batch["A"], "B": batch["B"]}


def _evaluate(config, state, workdir: Path, reporter, step: int, progress, fid=None) -> dict | None:
  """Run :func:`jaxgan.inference.evaluate` on the test split (and FID with ``fid``, a
  :class:`jaxgan.fid_eval.LazyFID`); log it and write WORKDIR/eval.json.

  In a job of several processes only process 0 evaluates (on its local copy of the
  state; the result is the same on every host), once for the whole job; the others
  wait for it at a coordination barrier, not a collective, so the wait may be long.
  """
  if jax.process_count() > 1:
    try:
      if parallel.is_main_process():
        return _evaluate_here(config, state, workdir, reporter, step, progress, fid)
      log.info("step %d: waiting while process 0 evaluates for the whole job", step)
      return None
    finally:
      parallel.wait_for_all_processes("evaluated", timeout_s=24 * 3600)
  return _evaluate_here(config, state, workdir, reporter, step, progress, fid)


def _evaluate_here(config, state, workdir: Path, reporter, step: int, progress, fid=None) -> dict | None:
  from jaxgan import inference
  from jaxgan.data.image_io import DataError
  kwargs = dict(max_batches=int(config.get("eval_batches", -1)), eval_mode=bool(config.get("eval_mode", False)))
  try:
    results = inference.evaluate(config, parallel.local_copy(state), split="test", **kwargs)
    if fid is not None:
      results = fid.add_to(results, config, parallel.local_copy(state), say=progress.write, **kwargs)
  except (DataError, FileNotFoundError) as e:
    progress.write(f"evaluation skipped: {e}")
    return None
  reporter.evaluation(step, results)
  if parallel.is_main_process():
    reporting.write_json(workdir / "eval.json", results)
    with open(workdir / "eval_history.jsonl", "a") as f:
      f.write(json.dumps(results) + "\n")
    progress.write("eval " + json.dumps(results))
  return results


