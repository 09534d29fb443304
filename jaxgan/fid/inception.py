"""pytorch-fid's InceptionV3 (the FID graph) in Flax, and its jit-compiled, data-parallel feature extractor.

Network (:class:`FIDInceptionV3`): torchvision's Inception3 with pytorch-fid's
patches -- ``FIDInceptionA`` (Mixed_5b-d), ``FIDInceptionC`` (Mixed_6b-e),
``FIDInceptionE_1`` (Mixed_7b) and ``FIDInceptionE_2`` (Mixed_7c): their branch
average pools leave the zero padding out of the count, and Mixed_7c's pool branch
is a 3x3 max pool. Input NHWC in [0, 1] of any size, resized to 299x299 as
``F.interpolate(mode="bilinear", align_corners=False)`` (no antialiasing) and
scaled to [-1, 1]; output the 2048-d pool3 features (mean of Mixed_7c over space).

Parameters (``params[block][conv]`` or ``params[conv]`` for the stem, names as in
pytorch-fid's ``state_dict``) hold ``kernel (kh, kw, in, out)`` and ``bias``: each
``BasicConv2d`` with its eval-mode BatchNorm folded in (:mod:`jaxgan.fid.weights`).

Equal-math rearrangements for speed (``tests/test_fid.py`` checks the features
against pytorch-fid's own model): the 1x1 convs of a block that read the same
input are one matmul with their output channels side by side, and a branch's 3x3
*average* pool comes after its 1x1 conv (both linear, so they commute; the bias
and ReLU after both), so it pools ``pool_features`` channels instead of the
block's input channels. Convolutions run at ``Precision.HIGHEST`` (no TF32 on GPUs).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

FEATURE_DIM = 2048
INPUT_SIZE = 299

Params = Mapping[str, Any]
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- layers


def _conv_param(module: nn.Module, name: str, cin: int, cout: int, kh: int, kw: int) -> dict:
  """The folded conv ``{kernel (kh, kw, cin, cout), bias (cout,)}`` named ``name`` in ``module``."""
  def init(rng):
    return {"kernel": nn.initializers.lecun_normal()(rng, (kh, kw, cin, cout), jnp.float32),
            "bias": jnp.zeros((cout,), jnp.float32)}
  return module.param(name, init)


def _conv(x: jax.Array, p: Mapping, stride: int = 1, padding: tuple[int, int] = (0, 0)) -> jax.Array:
  """``relu(conv(x) + bias)``: a ``BasicConv2d`` with its BatchNorm folded in (NHWC, HWIO).

  An unpadded conv is computed with one row of zero padding whose output row is
  dropped (the same sums: the zero row only reaches that row): XLA:CPU runs
  convolutions without any padding on a path 3-4x slower (e.g. Conv2d_4a_3x3 at
  batch 8: 450 ms plain, 100 ms so; strided ones 1.3x).
  """
  kh, kw = p["kernel"].shape[:2]
  pads = ((padding[0],) * 2, (padding[1],) * 2)
  unpadded = padding == (0, 0) and kh > 1
  if unpadded:
    pads = ((1, 0), (0, 0)) if stride == 1 else ((0, 1), (0, 0))
  y = jax.lax.conv_general_dilated(x, p["kernel"], (stride, stride), pads,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
  if unpadded:
    y = y[:, 1:] if stride == 1 else y[:, :(x.shape[1] - kh) // stride + 1]
  return jax.nn.relu(y + p["bias"])


def _conv1x1_group(x: jax.Array, ps: Sequence[Mapping], rectify: Sequence[bool]) -> list[jax.Array]:
  """Several 1x1 convs of the same input as one matmul. Output ``i`` is ``relu(conv + bias)`` when
  ``rectify[i]``, else the bare ``conv`` (no bias: the caller pools it first, then adds the bias)."""
  kernel = jnp.concatenate([p["kernel"][0, 0] for p in ps], axis=1)
  n, h, w, c = x.shape
  y = jnp.dot(x.reshape(n * h * w, c), kernel, precision=_HIGHEST)
  outs, start = [], 0
  for p, r in zip(ps, rectify):
    width = p["kernel"].shape[-1]
    part = y[:, start:start + width].reshape(n, h, w, width)
    outs.append(jax.nn.relu(part + p["bias"]) if r else part)
    start += width
  return outs


def _pooled_branch(y: jax.Array, p: Mapping) -> jax.Array:
  """``relu(avgpool(y) + bias)``: the pool branch with its 1x1 conv ``y`` (no bias) computed first."""
  return jax.nn.relu(avg_pool_3x3_exclude_pad(y) + p["bias"])


def _pool_counts(h: int, w: int) -> np.ndarray:
  """How many in-image pixels each 3x3 window (stride 1, padding 1) covers: ``[1, h, w, 1]``."""
  def one(n):
    c = np.full(n, 3.0, np.float32)
    c[0] -= 1
    c[-1] -= 1
    return c if n > 1 else np.ones(1, np.float32)
  return (one(h)[:, None] * one(w)[None, :])[None, :, :, None]


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`` (NHWC)."""
  s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return s / _pool_counts(x.shape[1], x.shape[2])


def max_pool(x: jax.Array, stride: int, padding: int) -> jax.Array:
  """``F.max_pool2d(x, 3, stride, padding)`` (padding counts as -inf, NHWC)."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` float32 weights of 1-D linear interpolation as ``F.interpolate(mode="bilinear",
  align_corners=False)``: source ``(i + 0.5) * in / out - 0.5`` clamped at 0, neighbours ``floor`` and
  ``floor + 1`` (clamped at the last pixel). The source is rounded to float32 once, as torch's CPU
  kernel computes it (a fused multiply-add of the float32 scale); two roundings would move it by up to
  an ulp, ~1e-5 of a pixel at 256."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
  src = np.maximum(src, np.float32(0.0))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  lam = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
  i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
  m = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(m, (rows, i0), np.float32(1.0) - lam)
  np.add.at(m, (rows, i1), lam)
  return m


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """NHWC ``x`` resized to ``size x size`` as ``F.interpolate(bilinear, align_corners=False)``."""
  _, h, w, _ = x.shape
  if h != size:
    x = jnp.einsum("oh,nhwc->nowc", resize_matrix(h, size), x, precision=_HIGHEST)
  if w != size:
    x = jnp.einsum("pw,nowc->nopc", resize_matrix(w, size), x, precision=_HIGHEST)
  return x


# ----------------------------------------------------------------------------- blocks


class InceptionA(nn.Module):
  """``FIDInceptionA``: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(excl. pad)-1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b5_1, b3_1, bp = (c("branch1x1", cin, 64, 1, 1), c("branch5x5_1", cin, 48, 1, 1),
                          c("branch3x3dbl_1", cin, 64, 1, 1), c("branch_pool", cin, self.pool_features, 1, 1))
    y1, y5, y3, yp = _conv1x1_group(x, (b1, b5_1, b3_1, bp), (True, True, True, False))
    y5 = _conv(y5, c("branch5x5_2", 48, 64, 5, 5), padding=(2, 2))
    y3 = _conv(y3, c("branch3x3dbl_2", 64, 96, 3, 3), padding=(1, 1))
    y3 = _conv(y3, c("branch3x3dbl_3", 96, 96, 3, 3), padding=(1, 1))
    yp = _pooled_branch(yp, bp)
    return jnp.concatenate([y1, y5, y3, yp], axis=-1)


class InceptionB(nn.Module):
  """torchvision ``InceptionB`` (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    y3 = _conv(x, c("branch3x3", cin, 384, 3, 3), stride=2)
    yd = _conv1x1_group(x, (c("branch3x3dbl_1", cin, 64, 1, 1),), (True,))[0]
    yd = _conv(yd, c("branch3x3dbl_2", 64, 96, 3, 3), padding=(1, 1))
    yd = _conv(yd, c("branch3x3dbl_3", 96, 96, 3, 3), stride=2)
    return jnp.concatenate([y3, yd, max_pool(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
  """``FIDInceptionC``: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool(excl. pad)-1x1."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    cin, c7 = x.shape[-1], self.channels_7x7
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b7_1, bd_1, bp = (c("branch1x1", cin, 192, 1, 1), c("branch7x7_1", cin, c7, 1, 1),
                          c("branch7x7dbl_1", cin, c7, 1, 1), c("branch_pool", cin, 192, 1, 1))
    y1, y7, yd, yp = _conv1x1_group(x, (b1, b7_1, bd_1, bp), (True, True, True, False))
    y7 = _conv(y7, c("branch7x7_2", c7, c7, 1, 7), padding=(0, 3))
    y7 = _conv(y7, c("branch7x7_3", c7, 192, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_2", c7, c7, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_3", c7, c7, 1, 7), padding=(0, 3))
    yd = _conv(yd, c("branch7x7dbl_4", c7, c7, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_5", c7, 192, 1, 7), padding=(0, 3))
    yp = _pooled_branch(yp, bp)
    return jnp.concatenate([y1, y7, yd, yp], axis=-1)


class InceptionD(nn.Module):
  """torchvision ``InceptionD`` (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    y3, y7 = _conv1x1_group(x, (c("branch3x3_1", cin, 192, 1, 1), c("branch7x7x3_1", cin, 192, 1, 1)),
                            (True, True))
    y3 = _conv(y3, c("branch3x3_2", 192, 320, 3, 3), stride=2)
    y7 = _conv(y7, c("branch7x7x3_2", 192, 192, 1, 7), padding=(0, 3))
    y7 = _conv(y7, c("branch7x7x3_3", 192, 192, 7, 1), padding=(3, 0))
    y7 = _conv(y7, c("branch7x7x3_4", 192, 192, 3, 3), stride=2)
    return jnp.concatenate([y3, y7, max_pool(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
  """``FIDInceptionE_1`` (``max_pool=False``: avgpool excl. pad) or ``FIDInceptionE_2`` (3x3 max pool):
  1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b3_1, bd_1, bp = (c("branch1x1", cin, 320, 1, 1), c("branch3x3_1", cin, 384, 1, 1),
                          c("branch3x3dbl_1", cin, 448, 1, 1), c("branch_pool", cin, 192, 1, 1))
    if self.max_pool:
      y1, y3, yd = _conv1x1_group(x, (b1, b3_1, bd_1), (True, True, True))
      yp = _conv1x1_group(max_pool(x, 1, 1), (bp,), (True,))[0]
    else:
      y1, y3, yd, yp = _conv1x1_group(x, (b1, b3_1, bd_1, bp), (True, True, True, False))
      yp = _pooled_branch(yp, bp)
    y3 = jnp.concatenate([_conv(y3, c("branch3x3_2a", 384, 384, 1, 3), padding=(0, 1)),
                          _conv(y3, c("branch3x3_2b", 384, 384, 3, 1), padding=(1, 0))], axis=-1)
    yd = _conv(yd, c("branch3x3dbl_2", 448, 384, 3, 3), padding=(1, 1))
    yd = jnp.concatenate([_conv(yd, c("branch3x3dbl_3a", 384, 384, 1, 3), padding=(0, 1)),
                          _conv(yd, c("branch3x3dbl_3b", 384, 384, 3, 1), padding=(1, 0))], axis=-1)
    return jnp.concatenate([y1, y3, yd, yp], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's ``InceptionV3()`` (default: pool3 block, resize, normalise): images -> pool3 features.

  ``x``: float NHWC ``[N, H, W, 3]`` in [0, 1] (pytorch-fid's ``ToTensor`` range), any ``H, W``.
  Returns float32 ``[N, 2048]``.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"FIDInceptionV3 takes NHWC RGB images [N, H, W, 3], got shape {tuple(x.shape)}")
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    x = 2.0 * resize_bilinear(x.astype(jnp.float32)) - 1.0
    x = _conv(x, c("Conv2d_1a_3x3", 3, 32, 3, 3), stride=2)
    x = _conv(x, c("Conv2d_2a_3x3", 32, 32, 3, 3))
    x = _conv(x, c("Conv2d_2b_3x3", 32, 64, 3, 3), padding=(1, 1))
    x = max_pool(x, 2, 0)
    x = _conv1x1_group(x, (c("Conv2d_3b_1x1", 64, 80, 1, 1),), (True,))[0]
    x = _conv(x, c("Conv2d_4a_3x3", 80, 192, 3, 3))
    x = max_pool(x, 2, 0)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------- batched, data-parallel features


@jax.jit
def _features(params: Params, images: jax.Array) -> jax.Array:
  """The network on a batch; uint8 images are divided by 255 (``ToTensor``). One jit for every extractor,
  so extractors of the same batch shape share the compiled program; the input's sharding splits the work."""
  x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)
  return FIDInceptionV3().apply({"params": params}, x)


class FeatureExtractor:
  """pool3 features of image batches: the network compiled once per input shape, split over devices.

  ``extractor(images)``: ``images`` ``[N, H, W, 3]``, uint8 (0..255, divided by 255 as
  ``ToTensor``) or float in [0, 1]; returns float32 numpy ``[N, 2048]``. Batches of
  ``batch_size`` (rounded up to a multiple of the device count) run on a 1-D ``data``
  mesh of ``devices`` (default: this process's devices), the last one zero-padded.
  """

  def __init__(self, params: Params, *, batch_size: int = 50, devices: Sequence[jax.Device] | None = None):
    devices = list(jax.local_devices() if devices is None else devices)
    if int(batch_size) < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = -(-int(batch_size) // len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), ("data",))
    self._batch = NamedSharding(mesh, P("data"))
    self._params = jax.device_put(jax.tree.map(jnp.asarray, params), NamedSharding(mesh, P()))

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FeatureExtractor takes [N, H, W, 3] RGB images, got shape {images.shape}")
    if images.dtype != np.uint8:
      images = images.astype(np.float32)
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      n = len(chunk)
      if n < self.batch_size:
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], chunk.dtype)])
      out.append(np.asarray(_features(self._params, jax.device_put(chunk, self._batch)))[:n])
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)
