"""Checks at the public boundary of the objectives: config values, image and batch shapes, dtypes.

Pure (no I/O); each error names the key or the array and the shape at fault.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from jaxgan import config as config_lib

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict):
  """The compute dtype of ``config.dtype``; float16 is refused (it would need loss scaling)."""
  name = str(config.get("dtype", "float32"))
  if name == "float16":
    raise ValueError("config.dtype='float16' is not supported: float16 training needs loss scaling, which "
                     "jaxgan does not do; use 'bfloat16' (same speed on GPUs/TPUs, float32's range) or 'float32'")
  config_lib.check_choice("config.dtype", name, tuple(DTYPES))
  return DTYPES[name]


def validate_config(config: ml_collections.ConfigDict, model: str) -> None:
  """Raise ValueError naming the key when a model-relevant config value is invalid."""
  if config.get("model", model) != model:
    raise ValueError(f"config.model is {config.get('model')!r} but {model}.init/train_step was called")
  try:
    config_lib.parse_netG(str(config.netG))
  except ValueError as e:
    raise ValueError(f"config.netG={config.netG!r} is not valid: {e}") from None
  for key in ("netD", "norm", "gan_mode", "init_type"):
    config_lib.check_choice(f"config.{key}", config.get(key), config_lib.CHOICES[key])
  compute_dtype(config)
  for key in ("input_nc", "output_nc", "ngf", "ndf", "batch_size"):
    if int(config.get(key)) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config.get(key)}")


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
  stride = config_lib.generator_stride(str(config.netG))
  check_images(batch["A"], channels=int(config.input_nc), name="batch['A']", stride=stride)
  check_images(batch["B"], channels=int(config.output_nc), name="batch['B']", stride=stride)


