"""Checks at the public boundary of the objectives: config values, image and batch shapes, dtypes.

Pure (no I/O); each error names the key or the array and the shape at fault.
"""
from __future__ import annotations

import contextlib
import math
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


MATMUL_PRECISIONS = {"default": None, "high": "high", "highest": "highest"}


def matmul_precision(config: ml_collections.ConfigDict):
  """A context for tracing the step and translate under ``config.matmul_precision``.

  ``default`` (no context: the program is the one of a run without the key), ``high`` or
  ``highest``: the precision of every float32 conv/dot traced inside it (``jax.default_matmul_precision``).
  On a TPU: default = one pass of bf16 products, high = bf16_3x, highest = float32. On an
  Ampere+ GPU: default and high = TF32 products, highest = float32. On a CPU all three are float32.
  """
  name = str(config.get("matmul_precision", "default"))
  config_lib.check_choice("config.matmul_precision", name, config_lib.CHOICES["matmul_precision"])
  value = MATMUL_PRECISIONS[name]
  return contextlib.nullcontext() if value is None else jax.default_matmul_precision(value)


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
  matmul_precision(config)
  for key in ("input_nc", "output_nc", "ngf", "ndf", "batch_size"):
    if int(config.get(key)) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config.get(key)}")


CROPPING_PREPROCESS = ("resize_and_crop", "crop", "scale_width_and_crop")   # the model sees crop_size x crop_size


def validate_run_config(config: ml_collections.ConfigDict) -> None:
  """Values of a training run that would otherwise fail late or silently: ValueError naming the key.

  Every float value finite; ``lr`` > 0; ``num_train_steps`` positive or -1 (the epoch schedule);
  with a cropping ``preprocess`` the generator sees ``crop_size`` x ``crop_size`` images (training and
  test time), so ``crop_size`` must be a multiple of :func:`jaxgan.config.generator_stride` (the other
  modes round each image's size to the stride themselves). Pure; call before anything is written.
  """
  for key, value in config.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"config.{key}={value} must be a finite number")
  if "lr" in config and not float(config.lr) > 0:
    raise ValueError(f"config.lr={config.lr} must be > 0")
  if "num_train_steps" in config and (int(config.num_train_steps) < 1 and int(config.num_train_steps) != -1):
    raise ValueError(f"config.num_train_steps={config.num_train_steps} is not a run length: use -1 for the epoch "
                     "schedule (n_epochs + n_epochs_decay epochs), or a positive number of steps")
  if str(config.get("preprocess", "resize_and_crop")) in CROPPING_PREPROCESS and "crop_size" in config:
    try:
      stride = config_lib.generator_stride(str(config.netG))
    except ValueError as e:
      raise ValueError(f"config.netG={config.netG!r} is not valid: {e}") from None
    crop = int(config.crop_size)
    if crop % stride:
      lower, upper = max(stride, crop // stride * stride), (crop // stride + 1) * stride
      raise ValueError(f"config.crop_size={crop} must be a multiple of {stride}, the stride of "
                       f"config.netG={config.netG!r} (e.g. {lower} or {upper})")


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


