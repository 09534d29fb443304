"""Networks of an objective from its config: build, initialise, apply in train and inference mode.

Pure functions only (no I/O). Also the two small helpers every step needs:
:func:`to_key` (accept an int seed, a raw or a typed key) and
:func:`cross_replica_mean` (average over the pmap axis when there is one).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgan import models
from jaxgan.checks import compute_dtype

Params = Any
PyTree = Any


def build_generator(config: ml_collections.ConfigDict, input_nc: int, output_nc: int):
  return models.define_G(
      input_nc=input_nc, output_nc=output_nc, ngf=int(config.ngf), netG=str(config.netG),
      norm=str(config.norm), use_dropout=not bool(config.no_dropout), init_type=str(config.init_type),
      init_gain=float(config.init_gain), dtype=compute_dtype(config), remat=bool(config.get("remat", False)),
      axis_name=norm_axis(config), forms=layer_forms(config),
      no_antialias=bool(config.get("no_antialias", True)), no_antialias_up=bool(config.get("no_antialias_up", True)))


def build_discriminator(config: ml_collections.ConfigDict, input_nc: int):
  return models.define_D(
      input_nc=input_nc, ndf=int(config.ndf), netD=str(config.netD), n_layers_D=int(config.n_layers_D),
      norm=str(config.norm), init_type=str(config.init_type), init_gain=float(config.init_gain),
      dtype=compute_dtype(config), axis_name=norm_axis(config), forms=layer_forms(config),
      no_antialias=bool(config.get("no_antialias", True)))


def layer_forms(config: ml_collections.ConfigDict) -> "models.forms.LayerForms":
  """The networks' XLA:CPU layer forms: ``config.layer_forms`` as the run decided it (``jaxgan.train``
  writes the explicit value; ``auto`` reads as the fixed default here, see :mod:`jaxgan.models.forms`)."""
  return models.forms.LayerForms.parse(config.get("layer_forms", "auto"))


def norm_axis(config: ml_collections.ConfigDict):
  """What the networks' ``axis_name`` carries to BatchNorm: the device axis (``config.axis_name``, set
  under pmap and in :func:`jaxgan.parallel.per_device_step`) and the statistics' group
  (``config.bn_group_size``; see :class:`jaxgan.models.layers.BatchGroups`)."""
  return models.layers.batch_groups(config.get("axis_name"), int(config.get("bn_group_size", 0)))


def variables(params: Params, batch_stats: PyTree) -> dict:
  """Assemble a Flax variable dict (``batch_stats`` only when the net has BatchNorm)."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def init_network(module, rng: jax.Array, sample: jax.Array) -> tuple[Params, PyTree]:
  """Initialise ``module`` on a sample batch; returns (params, batch_stats or {}).

  The initial weights are drawn with ``threefry2x32`` (:data:`INIT_PRNG`) keyed by
  ``rng``: JAX's one generator whose bits are defined by JAX itself, so a seed gives
  the same initial weights on CPU, GPU and TPU (up to the last bit of the float
  transforms); ``rbg`` draws backend-defined bits. Init runs in one jitted function
  where the forward pass is dead code; on XLA:CPU that function is compiled at a low
  optimisation level (:data:`INIT_COMPILER_OPTIONS`: threefry's hash compiles
  slowly there, about 4x ``rbg`` at the default level; the init runs once).
  """
  key = jax.random.wrap_key_data(init_key_data(rng), impl=INIT_PRNG)
  spec = jax.ShapeDtypeStruct(tuple(sample.shape), jnp.float32)
  return _init_jit(module, key, spec)


INIT_PRNG = "threefry2x32"


def init_key_data(rng) -> jax.Array:
  """The uint32[2] threefry key data of ``rng`` (an int seed, a raw or a typed key of any impl)."""
  raw = jnp.asarray(to_key(rng), jnp.uint32).reshape(-1)
  if raw.shape[0] == 4:          # an rbg key: fold its 4 words to 2
    raw = jnp.bitwise_xor(raw[:2], raw[2:])
  if raw.shape != (2,):
    raise ValueError(f"init: a PRNG key must be an int seed or a key of 2 or 4 uint32 words, got shape {raw.shape}")
  return raw


def _init_impl(module, key, sample_spec):
  k_params, k_drop = jax.random.split(key)
  v = module.init({"params": k_params, "dropout": k_drop}, jnp.zeros(sample_spec.shape, sample_spec.dtype),
                  train=False)
  return v["params"], v.get("batch_stats", {})


# Init compiles at a low optimisation level on XLA:CPU (pass to jax.jit where an init is jitted whole:
# an inner jit's options are lost when it is inlined into an outer one).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def init_compiler_options() -> dict | None:
  """:data:`INIT_COMPILER_OPTIONS` on a CPU backend, else None (the backend's defaults)."""
  return dict(INIT_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else None


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_jit_default(module, key, sample_spec):
  return _init_impl(module, key, sample_spec)


_INIT_JITS: dict = {}


def _init_jit(module, key, sample_spec):
  options = init_compiler_options()
  if options is None or isinstance(key, jax.core.Tracer):
    return _init_jit_default(module, key, sample_spec)
  if "cpu" not in _INIT_JITS:
    _INIT_JITS["cpu"] = jax.jit(_init_impl, static_argnums=(0, 2), compiler_options=options)
  return _INIT_JITS["cpu"](module, key, sample_spec)


def apply_train(module, params: Params, batch_stats: PyTree, x: jax.Array, rng: jax.Array | None):
  """Train-mode forward (batch statistics, dropout on). Returns (y, new_batch_stats)."""
  rngs = {"dropout": rng} if rng is not None else {}
  y, mutated = module.apply(variables(params, batch_stats), x, train=True, rngs=rngs, mutable=["batch_stats"])
  return y, mutated.get("batch_stats", batch_stats)


def generate(module, params: Params, batch_stats: PyTree, images: jax.Array, *, eval_mode: bool,
             rng: jax.Array, ids: jax.Array | None = None) -> jax.Array:
  """Inference with a generator: images [N,H,W,C] in [-1,1] -> [N,H,W,C_out].

  ``eval_mode=False`` runs the generator in *train mode*, which is the
  reference's test-time behaviour (``test.py`` without ``--eval``): BatchNorm
  layers normalise with batch statistics, here the image's own, not with the
  running averages (which are left as they are), and dropout stays on. Every
  image is run alone (vmap over batches of one) with the key
  ``fold_in(rng, ids[i])``, so its result depends on its own id only, never on
  the batch it is in or its position there. ``ids`` (int [N]) default to
  ``0..N-1``: pass stable ids (an index in the split, a hash of the file name)
  to get batch-independent results. ``eval_mode=True`` is eval mode (the
  reference's ``--eval``): BatchNorm uses the running statistics, no dropout.
  With instance norm or none, the two differ only by dropout.
  """
  if ids is None:
    ids = jnp.arange(images.shape[0], dtype=jnp.uint32)
  ids = jnp.asarray(ids).astype(jnp.uint32)
  if ids.shape != images.shape[:1]:
    raise ValueError(f"ids must have shape [N] = {images.shape[:1]}, got {ids.shape}")
  return _generate_jit(module, params, batch_stats, images, rng, ids, bool(eval_mode))


@functools.partial(jax.jit, static_argnums=(0, 6))
def _generate_jit(module, params, batch_stats, images, rng, ids, eval_mode):
  if eval_mode:
    return module.apply(variables(params, batch_stats), images, train=False)

  def one(x, i):
    y, _ = apply_train(module, params, batch_stats, x[None], jax.random.fold_in(rng, i))
    return y[0]

  return jax.vmap(one)(images, ids)


def cross_replica_mean(tree: PyTree, config: ml_collections.ConfigDict) -> PyTree:
  """Average over the pmap axis ``config.axis_name`` when the step runs under pmap; identity otherwise."""
  axis = config.get("axis_name", None)
  return jax.lax.pmean(tree, axis) if axis else tree


def to_key(rng) -> jax.Array:
  """Accept a raw uint32[2] key, a typed key, or an int seed; return a raw key.

  An int seed gives the ``threefry2x32`` key data whatever ``jax_default_prng_impl``
  (the same uint32[2] as ``PRNGKey(seed)`` under JAX's default, so states and their
  checkpoints keep their key's shape)."""
  if isinstance(rng, (int, np.integer)):
    return jax.random.key_data(jax.random.key(int(rng), impl="threefry2x32"))
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return rng
