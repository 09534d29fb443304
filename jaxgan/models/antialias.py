"""The fixed blur layers of the anti-aliased CUT networks (Zhang 2019, as CUT's ``networks.py`` uses them).

NHWC, plain JAX (shifted slices and sums, separable per axis), no parameters: the filters are
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


def _down_1d(x: jax.Array, axis: int) -> jax.Array:
  """Along ``axis``: reflect pad 1, [1,2,1]/4, stride 2: ``y[i] = (x[2i-1] + 2 x[2i] + x[2i+1]) / 4``."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  xp = jnp.pad(x, pad, mode="reflect")
  m = (n - 1) // 2 + 1   # the conv's output length: floor((n + 2 - 3) / 2) + 1

  def tap(k):   # xp[2i + k] for i < m
    return lax.slice_in_dim(xp, k, k + 2 * (m - 1) + 1, stride=2, axis=axis)

  return (tap(0) + 2.0 * tap(1) + tap(2)) * 0.25


def _up_1d(x: jax.Array, axis: int) -> jax.Array:
  """Along ``axis``: the transposed [1,3,3,1]/4 blur of stride 2 after a replicate pad, cropped as the
  authors: ``y[2i] = (x[i-1] + 3 x[i]) / 4``, ``y[2i+1] = (3 x[i] + x[i+1]) / 4`` (edges replicated)."""
  n = x.shape[axis]
  # The replicate pad as slices and concatenations, not jnp.pad(mode="edge"): that one also emits, for every
  # axis it leaves alone, a zero-sized broadcast and reshape, which jax2onnx 0.17 writes as ONNX Reshapes
  # whose 0 (an empty axis) ONNX reads as "copy this input axis": an invalid graph (jaxgan.interop.onnx_export).
  first, last = lax.slice_in_dim(x, 0, 1, axis=axis), lax.slice_in_dim(x, n - 1, n, axis=axis)
  prev = lax.concatenate([first, lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis)   # x[i-1], x[-1] := x[0]
  nxt = lax.concatenate([lax.slice_in_dim(x, 1, n, axis=axis), last], axis)        # x[i+1], x[n] := x[n-1]
  mid = x
  even, odd = (prev + 3.0 * mid) * 0.25, (3.0 * mid + nxt) * 0.25
  y = jnp.stack([even, odd], axis=axis + 1)   # interleave: index 2i, 2i+1
  shape = list(x.shape)
  shape[axis] = 2 * n
  return y.reshape(shape)


def blur_downsample(x: jax.Array) -> jax.Array:
  """Anti-aliased stride-2 downsampling: reflect pad 1, depthwise [1,2,1]^2/16 blur, stride 2 (NHWC).

  The 2-D filter is the outer product of [1,2,1]/4 with itself, so it runs as two 1-D passes of shifted
  slices (the same sums as the depthwise conv; XLA:CPU's grouped convolutions are slow)."""
  return _down_1d(_down_1d(x, 1), 2)


def blur_upsample(x: jax.Array) -> jax.Array:
  """Anti-aliased 2x upsampling: replicate pad 1, depthwise transposed [1,3,3,1]^2/64*4 blur (stride 2,
  padding 2), rows/columns 1..2H of the result (the authors' crop). ``[N,H,W,C] -> [N,2H,2W,C]``.

  Separable like :func:`blur_downsample`: per axis the transposed [1,3,3,1]/4 blur, as shifted slices."""
  return _up_1d(_up_1d(x, 1), 2)
