"""Data parallelism: a 1-D ``data`` mesh over every device of every process.

The batch is sharded over ``data`` along its leading axis, the train state is
replicated, and the step is compiled once with ``jax.jit`` and explicit
shardings, donating the old state. Because the batch is one global array, means
over the batch (losses, BatchNorm statistics) are global-batch means, so the
result equals one device running the same global batch.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Turn this process's part of a batch (numpy, leading axis = local batch) into global arrays.

  With one process the local batch is the global batch. Each process passes
  its own disjoint slice; the global batch is their concatenation in process order.
  """
  sharding = batch_sharding(mesh)
  n_local = len(mesh.local_devices)

  def put(x):
    x = np.asarray(x)
    if x.shape[0] % n_local:
      raise ValueError(f"the per-process batch ({x.shape[0]}) must be a multiple of the number of local "
                       f"devices ({n_local}); choose batch_size as a multiple of {mesh.devices.size}")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Place a pytree (identical on every process) replicated on every device of the mesh."""
  sharding = replicated_sharding(mesh)

  def put(x):
    x = np.asarray(x) if not isinstance(x, jax.Array) or x.is_fully_addressable else x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def jit_train_step(train_step: Callable, config: Any, mesh: Mesh, *, donate: bool = True) -> Callable:
  """``train_step(state, batch, config=config)`` compiled with state replicated and batch sharded.

  The returned function takes ``(state, batch)`` where ``batch`` comes from
  :func:`shard_batch` and ``state`` from :func:`replicate`; the input state is
  donated (do not reuse it after the call).
  """
  rep, data = replicated_sharding(mesh), batch_sharding(mesh)
  return jax.jit(functools.partial(train_step, config=config), in_shardings=(rep, data),
                 out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


# --------------------------------------------------------------------------- pmap


def pmap_train_step(train_step: Callable, config: Any, *, axis_name: str = "batch", donate: bool = True) -> Callable:
  """The ``jax.pmap`` variant: one state copy per device, gradients averaged.

  The returned function takes a state replicated with :func:`pmap_replicate` and a
  batch with a leading device axis (:func:`pmap_split_batch`). Inside, the step
  runs with ``config.axis_name`` set, which makes it average gradients, losses
  and BatchNorm moments over ``axis_name`` (never parameters: the parameters stay
  equal because every device applies the same averaged update). Image pools are
  per device (each device keeps the history of its own fakes).
  """
  cfg = config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") else config
  with cfg.unlocked() if hasattr(cfg, "unlocked") else _nullcontext():
    cfg.axis_name = axis_name
  return jax.pmap(functools.partial(train_step, config=cfg), axis_name=axis_name,
                  donate_argnums=(0,) if donate else ())


def pmap_replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
  """Copy a pytree onto each local device (leading axis = device)."""
  return jax.device_put_replicated(tree, list(jax.local_devices() if devices is None else devices))


def pmap_split_batch(batch: Any, n_devices: int | None = None) -> Any:
  """Reshape a local batch [N, ...] into [n_devices, N / n_devices, ...]."""
  n = jax.local_device_count() if n_devices is None else n_devices

  def split(x):
    x = np.asarray(x)
    if x.shape[0] % n:
      raise ValueError(f"batch of {x.shape[0]} does not split over {n} devices")
    return x.reshape(n, x.shape[0] // n, *x.shape[1:])

  return jax.tree.map(split, batch)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a pmap-replicated pytree."""
  return jax.tree.map(lambda x: x[0], tree)


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


# ---------------------------------------------------------------------- multi-host

_MULTIPROCESS_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                     "MEGASCALE_COORDINATOR_ADDRESS", "TPU_WORKER_HOSTNAMES")


def wants_distributed(env: dict | None = None) -> bool:
  """Whether the environment says this is one of several processes."""
  import os
  env = os.environ if env is None else env
  if env.get("SLURM_NTASKS", "1") not in ("", "1") or env.get("OMPI_COMM_WORLD_SIZE", "1") not in ("", "1"):
    return True
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  if "," in hosts:
    return True
  return bool(env.get("JAX_COORDINATOR_ADDRESS") or env.get("COORDINATOR_ADDRESS")
              or env.get("MEGASCALE_COORDINATOR_ADDRESS"))


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, cpu_collectives: str | None = "gloo") -> bool:
  """Join a multi-process JAX job; returns True when ``jax.distributed`` was initialised.

  With explicit arguments (``--coordinator_address``, ``--num_processes``,
  ``--process_id`` on the CLI) those are used; otherwise JAX's own cluster
  detection (Cloud TPU, SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``) runs when
  :func:`wants_distributed` says so. A single process does nothing. On CPU the
  cross-process collectives use ``cpu_collectives`` (gloo).
  """
  explicit = coordinator_address is not None or (num_processes or 1) > 1
  if not explicit and not wants_distributed():
    return False
  if cpu_collectives:
    try:
      jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    except Exception:  # pragma: no cover - option absent in some jax versions
      pass
  kwargs = {}
  if coordinator_address is not None:
    kwargs["coordinator_address"] = coordinator_address
  if num_processes is not None:
    kwargs["num_processes"] = int(num_processes)
  if process_id is not None:
    kwargs["process_id"] = int(process_id)
  jax.distributed.initialize(**kwargs)
  return True


def is_main_process() -> bool:
  """Only process 0 writes logs, HTML pages and printed output."""
  return jax.process_index() == 0
