"""Pixel formats of image batches: what the input pipeline ships and what the networks take.

Owns the one conversion between them. The networks (and the public
``train_step`` / ``translate`` contract) take NHWC float32 in [-1, 1]. The input
pipeline ships *pixels*: ``uint8`` for 8-bit data (4x fewer bytes to copy and
send to the devices than float32), ``uint16`` for 16-bit data (no bit lost),
and float32 already in [-1, 1] only for float sources. The train steps and
``translate`` call :func:`to_model_range` on what they are given, so the
conversion of a shipped batch runs on the device, inside the jitted step.

The rule is the reference's ``ToTensor`` + ``Normalize(0.5, 0.5)``:
integer pixels ``x`` of a type whose white is ``m`` (255 for uint8, 65535 for
uint16) become ``(x / m - 0.5) / 0.5`` in float32; floating-point arrays are
taken to be in [-1, 1] already and only cast to float32. On the device the
value of every pixel level is looked up in a table of the host's float32
results (256 or 65,536 entries): written as arithmetic, XLA turns the division
into a multiply-add whose rounding differs in the last bit (255 became
1.0000001 on XLA:CPU), and one step of Adam turns such a bit into a different
sign for near-zero gradients. With the table, a step on shipped pixels equals
the step on the host's floats exactly, on every backend.

Pure: numpy and ``jax.numpy`` only (the objectives import it; no data import).
"""
from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

WHITE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}   # integer pixel types the steps accept


def _white(dtype: Any, name: str) -> float | None:
  """255 / 65535 for uint8 / uint16, None for floating point; ValueError for anything else."""
  dtype = np.dtype(dtype)
  if dtype in WHITE:
    return WHITE[dtype]
  if np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16:
    return None
  raise ValueError(f"{name} has dtype {dtype}: images must be uint8 or uint16 pixels, or floating point in "
                   "[-1, 1]")


_TABLES: dict = {}


def _table(dtype: np.dtype) -> np.ndarray:
  """float32 [-1, 1] of every level of an integer pixel type (the host's arithmetic), built once."""
  dtype = np.dtype(dtype)
  if dtype not in _TABLES:
    _TABLES[dtype] = to_model_range_np(np.arange(int(WHITE[dtype]) + 1, dtype=dtype))
  return _TABLES[dtype]


def to_model_range(images: Any, *, name: str = "images") -> Any:
  """uint8 / uint16 pixels -> float32 in [-1, 1] (``(x / white - 0.5) / 0.5``); floats -> float32 unchanged.

  A ``jax.numpy`` function (jit-able; inside a jitted step the conversion runs
  on the device, as a lookup in the table of the host's exact values: see the
  module docstring). ``images`` is any shape, typically NHWC. ValueError names
  ``name`` for other dtypes (int32, bool, ...).
  """
  x = jnp.asarray(images)
  if _white(x.dtype, name) is None:
    return x.astype(jnp.float32)
  return jnp.asarray(_table(x.dtype))[x]


def to_model_range_np(images: Any, *, name: str = "images") -> np.ndarray:
  """The host (numpy) twin of :func:`to_model_range`: the reference's exact float32 arithmetic."""
  arr = np.asarray(images)
  white = _white(arr.dtype, name)
  x = arr.astype(np.float32)
  if white is None:
    return x
  return (x / np.float32(white) - np.float32(0.5)) / np.float32(0.5)


def batch_to_float(batch: Mapping[str, Any]) -> dict:
  """A pipeline batch ``{"A", "B", ...}`` with its image arrays ("A", "B") as host float32 in [-1, 1]."""
  return {k: (to_model_range_np(v, name=f"batch[{k!r}]") if k in ("A", "B") else v) for k, v in batch.items()}
