"""Data parallelism over every device of every process, and multi-host start-up.

Default (:func:`jit_train_step`): a 1-D ``data`` mesh over all devices of all
processes. The batch is one global array sharded over ``data`` along its
leading axis, the train state is replicated, and the step is compiled once with
``jax.jit`` and explicit shardings, donating the old state. Inside, the
objectives' steps run their iteration per device (:func:`per_device_step`, a
``shard_map`` over ``data``): each device computes the gradients of its part of
the batch and each network's gradient tree is averaged over the devices once,
in float32 (one all-reduce of the parameters' bytes per step, where XLA's own
partitioning all-reduced every use of a weight separately: 2.8x for CycleGAN).
Every mean over the batch (losses, BatchNorm statistics) is still a
global-batch mean and the CycleGAN image pool sees the global batch in order, so
the result equals one device running the same global batch (up to float
summation order; per-image random draws such as dropout masks differ, as under
pmap). This works unchanged for one device, many devices and many hosts.

Variant (:func:`pmap_train_step`): ``jax.pmap`` over this process's devices with
one state copy per device. The step averages gradients (never parameters),
metrics and BatchNorm moments over the pmap axis, so parameters stay identical
and equal to the one-device run on the same global batch. Differences from the
default, by design: each device draws its own dropout / pool / penalty
randomness (``fold_in(rng, device index)``), and each device keeps its *own*
image pool of ``pool_size`` of its own fakes (README, "Many devices and hosts").

Multi-host: :func:`initialize_distributed` joins the job (explicit flags or
cluster auto-detection), :func:`is_main_process` gates logs and files,
:func:`compile_everywhere` compiles a step on every process before its first
collective runs.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
PMAP_AXIS = "batch"


# ----------------------------------------------------------------------------- mesh and shardings


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh: no devices given")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over ``data``; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
  """Raise ValueError unless ``global_batch`` splits evenly over the mesh and the processes."""
  n_dev, n_proc = int(mesh.devices.size), int(jax.process_count())
  if global_batch < 1 or global_batch % n_dev:
    raise ValueError(f"config.batch_size ({global_batch}) must be a positive multiple of the number of devices "
                     f"({n_dev}): each device takes batch_size / {n_dev} images per step")
  if global_batch % n_proc:
    raise ValueError(f"config.batch_size ({global_batch}) must be a multiple of the number of processes ({n_proc})")


def local_batch_size(global_batch: int) -> int:
  """Images each process reads per step: the global batch divided by the process count."""
  n_proc = int(jax.process_count())
  if global_batch % n_proc:
    raise ValueError(f"config.batch_size ({global_batch}) must be a multiple of the number of processes ({n_proc})")
  return global_batch // n_proc


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """This process's part of a batch (numpy, leading axis = local batch) -> global sharded arrays.

  With one process the local batch is the global batch. With several, each
  process passes its own disjoint slice (equal sizes) and the global batch is
  their concatenation in process order. Arrays already global (a ``jax.Array``
  with this sharding) pass through.
  """
  sharding = batch_sharding(mesh)
  n_local = len(mesh.local_devices)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % n_local:
      raise ValueError(f"shard_batch: the per-process batch has shape {x.shape}; its leading axis must be a "
                       f"multiple of the number of local devices ({n_local}); choose config.batch_size as a "
                       f"multiple of {mesh.devices.size}")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Place a pytree (identical on every process) replicated on every device of the mesh."""
  sharding = replicated_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x   # already global (e.g. restored from a checkpoint with this sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def local_copy(tree: Any) -> Any:
  """This process's own copy of a replicated pytree, on one local device.

  For inference during training (sample grids, evaluation): computations on it
  involve no other device or process, so process 0 may run them alone.
  """
  def one(x):
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
      if not x.sharding.is_fully_replicated:
        raise ValueError(f"local_copy: an array of shape {x.shape} is sharded, not replicated")
      return x.addressable_data(0)
    return x

  return jax.tree.map(one, tree)


def _without_axis_name(config: Any) -> Any:
  """A copy of ``config`` without ``axis_name`` (a jit step must not pmean over a pmap axis)."""
  if config.get("axis_name", None) is None:
    return config
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    del cfg["axis_name"]
  return cfg


def shard_over_batch(x: jax.Array) -> jax.Array:
  """Inside a step traced by :func:`jit_train_step`: constrain ``x`` [N, ...] to be split over ``data``.

  For values computed from the whole global batch in a replicated way (the
  CycleGAN image pool processes the global batch in order), this tells XLA to
  run what follows on 1/N of the batch per device instead of the whole batch on
  every device. Outside a ``data`` mesh (one device, pmap, plain jit), inside
  :func:`per_device_step`'s body (already per device: see :func:`local_rows`)
  or when N does not split, it returns ``x`` unchanged.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if (mesh.empty or DATA_AXIS not in mesh.axis_names or DATA_AXIS in mesh.manual_axes
      or x.shape[0] % mesh.shape[DATA_AXIS]):
    return x
  return jax.lax.with_sharding_constraint(x, P(DATA_AXIS))


# ----------------------------------------------------------------------------- per-device gradients in a jit step


def _data_mesh_to_split() -> Any:
  """The abstract mesh when the caller traces inside :func:`jit_train_step` over more than one device, else None."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or DATA_AXIS not in mesh.axis_names or DATA_AXIS in mesh.manual_axes:
    return None
  return mesh if mesh.shape[DATA_AXIS] > 1 else None


def in_per_device_step() -> bool:
  """True while tracing the per-device body of :func:`per_device_step` (inside its ``shard_map``)."""
  mesh = jax.sharding.get_abstract_mesh()
  return not mesh.empty and DATA_AXIS in mesh.manual_axes


def per_device_step(step_fn: Callable, state: Any, batch: Any, *, config: Any) -> tuple[Any, Any]:
  """Run ``step_fn(state, batch, config=...)`` once per device on its part of the batch, inside a data mesh.

  Traced inside :func:`jit_train_step` over N > 1 devices, the step body runs
  under ``jax.shard_map`` over ``data``: the state replicated, the batch split
  (each device sees its N-th, rows in device order), and the config given
  ``axis_name = "data"``, so the body averages what the pmap variant averages
  (each network's gradient tree once, in float32, by
  :func:`jaxgan.nets.cross_replica_mean`; metrics; BatchNorm moments) and
  everything else it does is the same on every device. XLA's partitioner, left
  to itself, all-reduces each use of a weight's gradient separately (CycleGAN
  applies each generator 3 times: 2.7x its parameters' bytes per step); here
  every gradient crosses the devices once. The returned state and metrics are
  replicated. Outside a data mesh (one device, ``pmap``, plain ``jax.jit``) it
  is a plain call, so the step stays usable on one device. Numbers equal one
  device on the same global batch; the randomness drawn per image (dropout,
  the gradient penalty's mixing) differs: the body derives it with
  :func:`device_key`, like the pmap variant. Values the body needs across the
  whole batch in order (CycleGAN's image pool) go through
  :func:`gather_batch` / :func:`local_rows`.
  """
  mesh = _data_mesh_to_split()
  if mesh is None or config.get("axis_name", None) is not None:
    return step_fn(state, batch, config=config)
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.axis_name = DATA_AXIS
  body = lambda st, b: step_fn(st, b, config=cfg)  # noqa: E731
  # check_vma=False: AD as under pmap (gradients of the replicated parameters stay per device until the
  # step's own cross_replica_mean); with it, JAX would psum each use's gradient where it meets the batch.
  return jax.shard_map(body, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                       check_vma=False)(state, batch)


def device_key(key: jax.Array) -> jax.Array:
  """Inside :func:`per_device_step`'s body: ``key`` with this device's index folded in; else ``key``.

  For randomness drawn per image of the local batch (dropout masks, gradient-penalty mixing), so that
  devices do not repeat each other's draws. Keys that must agree on every device (the image pool's) stay
  as they are.
  """
  return jax.random.fold_in(key, jax.lax.axis_index(DATA_AXIS)) if in_per_device_step() else key


def gather_batch(x: jax.Array) -> jax.Array:
  """Inside :func:`per_device_step`'s body: the global batch [N, ...] from each device's rows; else ``x``."""
  return jax.lax.all_gather(x, DATA_AXIS, axis=0, tiled=True) if in_per_device_step() else x


def local_rows(x: jax.Array) -> jax.Array:
  """Inside :func:`per_device_step`'s body: this device's rows of a global batch [N, ...]; else ``x``."""
  if not in_per_device_step():
    return x
  n = x.shape[0] // jax.sharding.get_abstract_mesh().shape[DATA_AXIS]
  return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(DATA_AXIS) * n, n, axis=0)


def jit_train_step(train_step: Callable, config: Any, mesh: Mesh, *, donate: bool = True) -> Callable:
  """``train_step(state, batch, config=config)`` compiled with state replicated and batch sharded.

  The returned function takes ``(state, batch)`` where ``batch`` comes from
  :func:`shard_batch` (global batch [N, H, W, C] split over ``data``) and
  ``state`` from :func:`replicate`; it returns the new replicated state and
  replicated float32 metrics. The input state is donated (do not reuse it).
  The step is traced under the mesh (``jax.sharding.use_abstract_mesh``), so
  :func:`per_device_step` inside it runs the iteration per device and
  :func:`shard_over_batch` can keep per-device work at 1/N.
  """
  rep, data = replicated_sharding(mesh), batch_sharding(mesh)
  cfg = _without_axis_name(config)

  def step(state, batch):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return train_step(state, batch, config=cfg)

  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


# ----------------------------------------------------------------------------- pmap


def pmap_config(config: Any, axis_name: str = PMAP_AXIS) -> Any:
  """A copy of ``config`` with ``axis_name`` set: steps then pmean gradients/metrics and
  BatchNorm averages its moments over that axis. Only valid inside ``pmap`` (use the
  original config for ``init``/``translate``)."""
  cfg = config.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.axis_name = axis_name
  return cfg


def pmap_train_step(train_step: Callable, config: Any, *, axis_name: str = PMAP_AXIS, donate: bool = True,
                    per_device_rng: bool = True) -> Callable:
  """The ``jax.pmap`` variant: one state copy per local device, gradients averaged.

  The returned function takes a state from :func:`pmap_replicate` and a batch
  with a leading device axis from :func:`pmap_split_batch` ([D, N/D, H, W, C]);
  it returns the per-device state and per-device (identical) metrics. Inside,
  the step runs with ``config.axis_name`` set, which averages gradients, losses
  and BatchNorm moments over ``axis_name`` (never parameters: they stay equal
  because every device applies the same averaged update). With
  ``per_device_rng`` each device folds its index into the state's key for
  dropout, the image pool and the gradient penalty (the stored key stays the
  same on all devices). Single process only: across hosts use
  :func:`jit_train_step`.
  """
  cfg = pmap_config(config, axis_name)

  def step(state, batch):
    if not per_device_rng:
      return train_step(state, batch, config=cfg)
    key = state.rng
    local = state.replace(rng=jax.random.fold_in(key, jax.lax.axis_index(axis_name)))
    new_state, metrics = train_step(local, batch, config=cfg)
    return new_state.replace(rng=key), metrics

  return jax.pmap(step, axis_name=axis_name, donate_argnums=(0,) if donate else ())


def pmap_replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
  """Copy a pytree onto each device (leading axis = device), the input layout of ``pmap``."""
  devices = list(jax.local_devices() if devices is None else devices)
  sharding = NamedSharding(Mesh(np.asarray(devices), (PMAP_AXIS,)), P(PMAP_AXIS))

  def put(x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x[None], (len(devices), *x.shape)), sharding)

  return jax.tree.map(put, tree)


def pmap_split_batch(batch: Any, n_devices: int | None = None) -> Any:
  """Reshape a local batch [N, ...] into [n_devices, N / n_devices, ...] (device d gets rows d*N/D ...)."""
  n = jax.local_device_count() if n_devices is None else int(n_devices)

  def split(x):
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % n:
      raise ValueError(f"pmap_split_batch: a batch of shape {x.shape} does not split over {n} devices; "
                       f"choose config.batch_size as a multiple of {n}")
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])

  return jax.tree.map(split, batch)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a pmap-replicated pytree (e.g. to checkpoint or translate)."""
  return jax.tree.map(lambda x: x[0], tree)


# ----------------------------------------------------------------------------- multi-host

_MULTIPROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS")


def wants_distributed(env: Mapping[str, str] | None = None) -> bool:
  """Whether the environment says this is one of several processes.

  True for a coordinator address in the environment (``JAX_COORDINATOR_ADDRESS``,
  ``COORDINATOR_ADDRESS``, ``MEGASCALE_COORDINATOR_ADDRESS``), SLURM or Open MPI
  with more than one task, or a Cloud TPU slice with several workers
  (``TPU_WORKER_HOSTNAMES`` listing more than one host).
  """
  env = os.environ if env is None else env
  for key in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if env.get(key, "1").strip() not in ("", "1"):
      return True
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    return True
  return any(env.get(key) for key in _MULTIPROCESS_ENV)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, cpu_collectives: str | None = "gloo",
                           env: Mapping[str, str] | None = None) -> bool:
  """Join a multi-process JAX job; returns True when ``jax.distributed`` is initialised.

  Call before anything touches devices (the ``jaxgan`` program calls it before
  the compilation cache, the calibration or anything else that starts JAX's
  backend). With explicit arguments (``jaxgan
  train --coordinator_address HOST:PORT --num_processes N --process_id I``)
  those are used; otherwise JAX's cluster detection (Cloud TPU, SLURM, Open
  MPI, ``JAX_COORDINATOR_ADDRESS``) runs when :func:`wants_distributed` says so.
  A lone process does nothing and returns False. On CPU, cross-process
  collectives use ``cpu_collectives`` (gloo). Calling it again is a no-op.
  Any failure to join raises :class:`DistributedStartError` with a one-line message.
  """
  if jax.distributed.is_initialized():
    return True
  if num_processes is not None and int(num_processes) < 1:
    raise ValueError(f"--num_processes must be >= 1, got {num_processes}")
  if process_id is not None and num_processes is not None and not 0 <= int(process_id) < int(num_processes):
    raise ValueError(f"--process_id must be in [0, {num_processes}), got {process_id}")
  explicit = coordinator_address is not None
  if not explicit and not wants_distributed(env):
    if (num_processes or 1) > 1:
      raise ValueError(f"--num_processes={num_processes} needs --coordinator_address (host:port of process 0)")
    return False
  if cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  kwargs = {}
  if coordinator_address is not None:
    kwargs["coordinator_address"] = coordinator_address
  if num_processes is not None:
    kwargs["num_processes"] = int(num_processes)
  if process_id is not None:
    kwargs["process_id"] = int(process_id)
  how = (", ".join(f"{k}={v}" for k, v in kwargs.items()) if kwargs
         else "settings detected from the environment (" + _cluster_hint(env) + ")")
  if _backend_started():
    raise DistributedStartError(f"cannot join the multi-process job ({how}): JAX's backend is already running in "
                                "this process; jaxgan.parallel.initialize_distributed must run before any JAX "
                                "computation or device query")
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # noqa: BLE001 - any failure to join is reported as one line naming its cause
    cause = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise DistributedStartError(f"cannot join the multi-process job ({how}): {type(e).__name__}: {cause}") from e
  return True


class DistributedStartError(RuntimeError):
  """Joining the multi-process job failed; the message names the settings used and the cause (one line)."""


def _backend_started() -> bool:
  """Whether this process already started an XLA backend (then ``jax.distributed`` can no longer be joined)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):   # pragma: no cover - JAX internals moved: let jax.distributed decide
    return False


def _cluster_hint(env: Mapping[str, str] | None) -> str:
  env = os.environ if env is None else env
  found = [k for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                       "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS") if env.get(k)]
  return ", ".join(f"{k}={env[k]}" for k in found) or "none found"


def is_main_process() -> bool:
  """Only process 0 writes logs, HTML pages, samples and printed output."""
  return jax.process_index() == 0


_BARRIERS = itertools.count()


def compile_everywhere(jitted: Callable, *args: Any, timeout_s: float = 3600) -> None:
  """Compile ``jitted`` for ``args`` here and return once every process has compiled it.

  Call it on every process, in the same order, before the first call that runs
  collectives (one process: it only compiles). The later call reuses the
  executable. Why: a process that finds the step in the persistent compilation
  cache (only process 0 writes it; the others always compile on CPU) would
  reach the first collective minutes early, and gloo (CPU) gives its peers 30 s
  to join the first collective (``DEADLINE_EXCEEDED: ... cpu:gloo``). The wait
  is a coordination-service barrier, which runs no collective.
  """
  jitted.lower(*args).compile()
  wait_for_all_processes("compiled", timeout_s=timeout_s)


def wait_for_all_processes(what: str, *, timeout_s: float = 3600) -> None:
  """Return once every process of the job has reached this call (one process: at once).

  A coordination-service barrier, not a collective: it runs nothing on the
  devices, so a process may wait here for minutes (e.g. while process 0 alone
  evaluates) where gloo would give up on a collective after 30 s. Call it on
  every process, in the same order.
  """
  if jax.process_count() > 1:
    from jax._src import distributed   # the coordination client; Orbax waits on it the same way
    name = f"jaxgan_{what}_{next(_BARRIERS)}"
    distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))
