"""Pieces shared by the two objectives: building the networks from a config,
applying them with their BatchNorm statistics, validating batches, and
reference-style inference. Pure functions only (no I/O).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgan import config as config_lib
from jaxgan import models

Params = Any
PyTree = Any

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(config: ml_collections.ConfigDict):
  name = str(config.get("dtype", "float32"))
  if name not in DTYPES:
    raise ValueError(f"config.dtype must be one of {tuple(DTYPES)}, got {name!r}")
  return DTYPES[name]


def _check_choice(config, key: str, choices) -> None:
  value = config.get(key)
  if value not in choices:
    raise ValueError(f"config.{key} must be one of {tuple(choices)}, got {value!r}")


def validate_config(config: ml_collections.ConfigDict, model: str) -> None:
  """Raise ValueError naming the key when a model-relevant config value is invalid."""
  if config.get("model", model) != model:
    raise ValueError(f"config.model is {config.get('model')!r} but {model}.init/train_step was called")
  try:
    models.parse_netG(str(config.netG))
  except ValueError as e:
    raise ValueError(f"config.netG must be one of {config_lib.GENERATORS} (or unet_<N>, resnet_<n>blocks), "
                     f"got {config.netG!r}: {e}") from None
  _check_choice(config, "netD", config_lib.DISCRIMINATORS)
  _check_choice(config, "norm", config_lib.NORMS)
  _check_choice(config, "gan_mode", config_lib.GAN_MODES)
  _check_choice(config, "init_type", config_lib.INIT_TYPES)
  compute_dtype(config)
  for key in ("input_nc", "output_nc", "ngf", "ndf", "batch_size"):
    if int(config.get(key)) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config.get(key)}")


def build_generator(config: ml_collections.ConfigDict, input_nc: int, output_nc: int):
  return models.define_G(
      input_nc=input_nc, output_nc=output_nc, ngf=int(config.ngf), netG=str(config.netG),
      norm=str(config.norm), use_dropout=not bool(config.no_dropout), init_type=str(config.init_type),
      init_gain=float(config.init_gain), dtype=compute_dtype(config), remat=bool(config.get("remat", False)),
      axis_name=config.get("axis_name"))


def build_discriminator(config: ml_collections.ConfigDict, input_nc: int):
  return models.define_D(
      input_nc=input_nc, ndf=int(config.ndf), netD=str(config.netD), n_layers_D=int(config.n_layers_D),
      norm=str(config.norm), init_type=str(config.init_type), init_gain=float(config.init_gain),
      dtype=compute_dtype(config), axis_name=config.get("axis_name"))


def variables(params: Params, batch_stats: PyTree) -> dict:
  """Assemble a Flax variable dict (``batch_stats`` only when the net has BatchNorm)."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def init_network(module, rng: jax.Array, sample: jax.Array) -> tuple[Params, PyTree]:
  """Initialise ``module`` on a sample batch; returns (params, batch_stats or {}).

  The initial weights are drawn with the ``rbg`` generator keyed from ``rng``
  inside one jitted function: XLA:CPU compiles one threefry sampler per
  parameter tensor very slowly (about 1 s each), ``rbg`` in a fraction of that,
  and under jit the forward pass that init traces is dead code and dropped.
  The result is deterministic for a given key, backend and shape.
  """
  raw = to_key(rng)
  data = jnp.concatenate([raw, jnp.bitwise_xor(raw, jnp.uint32(0x9E3779B9))])
  key = jax.random.wrap_key_data(data, impl="rbg")
  return _init_jit(module, key, jax.ShapeDtypeStruct(tuple(sample.shape), jnp.float32))


def _init_impl(module, key, sample_spec):
  k_params, k_drop = jax.random.split(key)
  v = module.init({"params": k_params, "dropout": k_drop}, jnp.zeros(sample_spec.shape, sample_spec.dtype),
                  train=False)
  return v["params"], v.get("batch_stats", {})


_init_jit = jax.jit(_init_impl, static_argnums=(0, 2))


def apply_train(module, params: Params, batch_stats: PyTree, x: jax.Array, rng: jax.Array | None):
  """Train-mode forward (batch statistics, dropout on). Returns (y, new_batch_stats)."""
  rngs = {"dropout": rng} if rng is not None else {}
  y, mutated = module.apply(variables(params, batch_stats), x, train=True, rngs=rngs, mutable=["batch_stats"])
  return y, mutated.get("batch_stats", batch_stats)


def check_images(images: jax.Array, *, channels: int, name: str, stride: int | None = None) -> None:
  """Shape check at the public boundary: [N,H,W,channels], H and W multiples of ``stride``."""
  shape = tuple(images.shape)
  if len(shape) != 4:
    raise ValueError(f"{name} must be NHWC [N,H,W,C], got shape {shape}")
  if shape[-1] != channels:
    raise ValueError(f"{name} has {shape[-1]} channels, the model expects {channels} (shape {shape})")
  if stride and (shape[1] % stride or shape[2] % stride):
    raise ValueError(f"{name} height and width must be multiples of {stride} for this generator, got shape {shape}")


def check_batch(batch: Mapping[str, Any], config: ml_collections.ConfigDict) -> None:
  if not isinstance(batch, Mapping) or "A" not in batch or "B" not in batch:
    raise ValueError(f"a batch must be a dict with keys 'A' and 'B', got {type(batch).__name__} "
                     f"with keys {list(batch) if isinstance(batch, Mapping) else None}")
  stride = models.generator_stride(str(config.netG))
  check_images(batch["A"], channels=int(config.input_nc), name="batch['A']", stride=stride)
  check_images(batch["B"], channels=int(config.output_nc), name="batch['B']", stride=stride)


def generate(module, params: Params, batch_stats: PyTree, images: jax.Array, *, eval_mode: bool,
             rng: jax.Array) -> jax.Array:
  """Inference with a generator.

  ``eval_mode=False`` is the reference test-time behaviour (``test.py`` without
  ``--eval``): BatchNorm normalises with the image's own statistics and dropout
  stays on; every image is run alone (vmap over a batch of one), so its result
  does not depend on the other images it is batched with. ``eval_mode=True``
  uses the running statistics and no dropout (the reference's ``--eval``).
  """
  return _generate_jit(module, params, batch_stats, images, rng, bool(eval_mode))


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate_jit(module, params, batch_stats, images, rng, eval_mode):
  if eval_mode:
    return module.apply(variables(params, batch_stats), images, train=False)
  keys = jax.random.split(rng, images.shape[0])

  def one(x, key):
    y, _ = apply_train(module, params, batch_stats, x[None], key)
    return y[0]

  return jax.vmap(one)(images, keys)


def cross_replica_mean(tree: PyTree, config: ml_collections.ConfigDict) -> PyTree:
  """Average over the pmap axis ``config.axis_name`` when the step runs under pmap; identity otherwise."""
  axis = config.get("axis_name", None)
  return jax.lax.pmean(tree, axis) if axis else tree


def to_key(rng) -> jax.Array:
  """Accept a raw uint32[2] key, a typed key, or an int seed; return a raw key."""
  if isinstance(rng, (int, np.integer)):
    return jax.random.PRNGKey(int(rng))
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return rng
