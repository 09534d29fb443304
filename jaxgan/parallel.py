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
