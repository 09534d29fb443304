"""The fixed blur layers of the anti-aliased CUT networks (Zhang 2019, as CUT's ``networks.py`` uses them).

NHWC, plain JAX (``lax.conv_general_dilated``), no parameters: the filters are
constants, which the authors' checkpoints hold as ``filt`` buffers
(``[C, 1, k, k]``, the same 2-D filter repeated per channel).

* :func:`blur_downsample` -- the authors' ``Downsample(C)``: reflect pad 1, then a
  depthwise 3x3 ``[1,2,1] x [1,2,1] / 16`` blur with stride 2. ``[N,H,W,C] ->
  [N,ceil(H/2),ceil(W/2),C]`` (H, W >= 2).
* :func:`blur_upsample` -- the authors' ``Upsample(C)``: replicate pad 1, a depthwise
  transposed 4x4 ``[1,3,3,1] x [1,3,3,1] / 64 * 4`` blur with stride 2 and padding 2,
  then their crop (drop the first row/column and, the filter being even, the last).
  ``[N,H,W,C] -> [N,2H,2W,C]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_BINOMIAL = {1: [1.], 2: [1., 1.], 3: [1., 2., 1.], 4: [1., 3., 3., 1.], 5: [1., 4., 6., 4., 1.]}


def blur_filter(size: int) -> np.ndarray:
  """The normalised 2-D binomial filter ``a a^T / sum`` of ``size`` taps (float32 ``[size, size]``)."""
  a = np.asarray(_BINOMIAL[size], np.float64)
  f = a[:, None] * a[None, :]
  return (f / f.sum()).astype(np.float32)


def _depthwise(x: jax.Array, filt: np.ndarray, *, stride: int = 1, lhs_dilation: int = 1,
               padding=((0, 0), (0, 0))) -> jax.Array:
  c = x.shape[-1]
  k = jnp.asarray(np.tile(filt[:, :, None, None], (1, 1, 1, c)), x.dtype)   # HWIO, I = 1 per group
  return lax.conv_general_dilated(x, k, (stride, stride), padding, lhs_dilation=(lhs_dilation, lhs_dilation),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
                                  precision=lax.Precision.HIGHEST)


def blur_downsample(x: jax.Array) -> jax.Array:
  """Anti-aliased stride-2 downsampling: reflect pad 1, depthwise [1,2,1]^2/16 blur, stride 2 (NHWC)."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  return _depthwise(x, blur_filter(3), stride=2)


def blur_upsample(x: jax.Array) -> jax.Array:
  """Anti-aliased 2x upsampling: replicate pad 1, depthwise transposed [1,3,3,1]^2/64*4 blur (stride 2,
  padding 2), rows/columns 1..2H of the result (the authors' crop). ``[N,H,W,C] -> [N,2H,2W,C]``."""
  h, w = x.shape[1], x.shape[2]
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  # A transposed conv of stride s, padding p, kernel k is a conv of the s-dilated input padded k-1-p per side
  # with the flipped kernel (this one is symmetric): 4 - 1 - 2 = 1. Output 2(H+2)-1+2-3 = 2H+2 rows.
  y = _depthwise(x, blur_filter(4) * 4.0, lhs_dilation=2, padding=((1, 1), (1, 1)))
  return y[:, 1:2 * h + 1, 1:2 * w + 1, :]
