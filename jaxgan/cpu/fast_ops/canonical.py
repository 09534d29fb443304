"""Canonical, padded stride-1 convolutions: the forms XLA:CPU keeps on its fast path.

Owns: the plain :func:`conv2d`, :func:`conv_s1` (a stride-1 conv with its
padding arranged so that XLA:CPU gives it to YNNPACK, see the package doc), the
kernel-gradient forms every other module reuses (:func:`_wgrad_s1`: swapped
roles for few output channels, one matmul per tap for at most 4 taps) and
:func:`conv2d_valid`, the VALID stride-1 conv (after reflection padding) with
its custom backward. Layouts: activations NHWC, kernels HWIO.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

DIMS = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]


def _pairs(padding) -> Pads:
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  (a, b), (c, d) = padding
  return ((int(a), int(b)), (int(c), int(d)))


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding=0) -> jax.Array:
  """Plain convolution: ``x [N,H,W,I]``, ``kernel (kh,kw,I,O)``, zero ``padding`` (int or pairs)."""
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), _pairs(padding), dimension_numbers=DIMS)


# ----------------------------------------------------------------------------- canonical building blocks

def _ynn_conv(x: jax.Array, kernel: jax.Array) -> bool:
  """Whether XLA:CPU gives this conv to YNNPACK when canonical (float32, > 16 in or out channels)."""
  return x.dtype == jnp.float32 and max(kernel.shape[2], kernel.shape[3]) > 16


def conv_s1(x: jax.Array, kernel: jax.Array, padding=0) -> jax.Array:
  """Stride-1 ``conv2d(x, kernel, 1, padding)`` (pads may be negative: crop) kept on the fast path.

  For YNNPACK-eligible convs: when the output would be larger than the input,
  or when there is no padding at all, the padding is materialised except one top
  row that stays in the conv (or one extra zero row whose output row is dropped).
  """
  (lh, hh), (lw, hw) = _pairs(padding)
  crop = [max(-v, 0) for v in (lh, hh, lw, hw)]
  if any(crop):
    x = x[:, crop[0]:x.shape[1] - crop[1], crop[2]:x.shape[2] - crop[3]]
    lh, hh, lw, hw = (max(v, 0) for v in (lh, hh, lw, hw))
  kh, kw = kernel.shape[:2]
  if not _ynn_conv(x, kernel):
    return conv2d(x, kernel, 1, ((lh, hh), (lw, hw)))
  out_h, out_w = x.shape[1] + lh + hh - kh + 1, x.shape[2] + lw + hw - kw + 1
  fits = out_h <= x.shape[1] and out_w <= x.shape[2] and kh <= x.shape[1] and kw <= x.shape[2]
  if fits and (lh or hh or lw or hw):
    return conv2d(x, kernel, 1, ((lh, hh), (lw, hw)))
  keep = 1 if lh >= 1 else 0
  if lh - keep or hh or lw or hw:
    x = jax.lax.optimization_barrier(jnp.pad(x, ((0, 0), (lh - keep, hh), (lw, hw), (0, 0))))
  y = conv2d(x, kernel, 1, ((1, 0), (0, 0)))
  return y if keep else y[:, 1:]


def _flip_swap(kernel: jax.Array) -> jax.Array:
  """The input-gradient kernel (spatially flipped, in/out swapped), materialised so that
  XLA does not fold the flip into the conv as a window reversal."""
  return jax.lax.optimization_barrier(jnp.swapaxes(kernel[::-1, ::-1], 2, 3))


def _swapped_wgrad(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """Kernel gradient of VALID ``conv2d(x, w)`` with the roles of ``x`` and ``g`` swapped.

  XLA puts the input channels on the long side of the kernel-gradient GEMM and
  the output channels on the short side; with few output channels (the 7x7
  head, 3) that is a skinny, slow GEMM. Correlating the zero-padded ``g``
  (batch axis = output channel) with ``x`` (output feature = input channel) puts
  the input channels on the GEMM's wide side; the result is read back flipped.
  """
  kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
  gp = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
  out = jax.lax.conv_general_dilated(gp, x, (1, 1), "VALID", dimension_numbers=("CHWN", "IHWO", "NHWC"))
  return out[:, ::-1, ::-1, :].transpose(1, 2, 3, 0)


def _after(x: jax.Array, g: jax.Array) -> jax.Array:
  """``x`` unchanged (``x + 0 * g[0]``), but computed from ``g``, so XLA cannot schedule work on it earlier.

  The tap slices of a residual ``x`` depend on ``x`` alone; XLA:CPU's scheduler
  then cut them (fused with the norm and ReLU that produce ``x``) in the forward
  pass, and every layer's slices stayed live until its backward: 616 MB of the
  1,068 MB of temporaries of one 256x256 ResNet generator's gradient. Made to
  depend on the cotangent they are cut where they are used (436 MB, and faster).
  XLA folds ``0 * v`` only for integers (NaN), and an ``optimization_barrier`` is
  removed before scheduling, so this survives. (Any NaN or inf in ``g`` would
  turn the whole kernel gradient NaN instead of in part; it is NaN either way.)
  """
  return x + (g.reshape(-1)[0] * 0).astype(x.dtype)


def _tap_wgrad(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """Kernel gradient of VALID stride-1 ``conv2d(x, w)`` as one matmul per tap:
  ``dw[a, b] = sum_{n,h,w} x[n, h + a, w + b, :]^T g[n, h, w, :]``.

  For kernels of at most 4 taps (1x1, and the 2x2 / 2x1 phase kernels of the
  stride-2 convs) this runs at matmul speed, while XLA:CPU lowers such a kernel
  gradient to a generic convolution 50-100x slower (1x1, 64x64x128->256:
  158 ms against 1.6 ms). For larger kernels XLA's convolution (YNNPACK) is
  reasonable, and whether the taps beat it depends on the processor and the shape
  (family ``conv_wgrad`` of :mod:`jaxgan.models.forms`, chosen per layer shape by
  :mod:`jaxgan.cpu.calibration`): on a 2-core AVX2 Zen 3 the
  ResNet block's 3x3 256->256 at 64x64 took 44 ms against 81 ms, and with two
  running side by side (as inside the train step, one per core) 90 against 189 ms.
  """
  kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
  n, ho, wo = g.shape[:3]
  cin, cout, pix = x.shape[3], g.shape[3], n * ho * wo
  x = _after(x, g)
  # g^T once, then [O, P] @ [P, I] per tap: the plain form ``x_tap^T @ g`` made XLA
  # transpose every tap's slice of x (25-45% slower at the CycleGAN / U-Net shapes).
  gt = jnp.transpose(g, (3, 0, 1, 2)).reshape(cout, pix)
  taps = [[gt @ x[:, a:a + ho, b:b + wo].reshape(pix, cin) for b in range(kw)] for a in range(kh)]
  return jnp.swapaxes(jnp.stack([jnp.stack(row) for row in taps]), 2, 3)


def _wgrad_s1(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int], taps: bool = False) -> jax.Array:
  """Kernel gradient of VALID stride-1 ``conv2d(x, w)`` for cotangent ``g``; ``taps``: one matmul per
  tap also for kernels of more than 4 taps (the ``conv_wgrad`` form)."""
  kernel_shape = tuple(int(v) for v in kernel_shape)
  if kernel_shape[3] == 1 and kernel_shape[0] * kernel_shape[1] <= 16:
    return _tap_wgrad(x, g, kernel_shape)     # the PatchGAN's 4x4 512->1 head: 10.0 -> 3.2 ms
  if kernel_shape[3] <= 16 < kernel_shape[2]:
    return _swapped_wgrad(x, g, kernel_shape)
  if kernel_shape[0] * kernel_shape[1] <= 4 or taps:
    return _tap_wgrad(x, g, kernel_shape)
  zeros = jnp.zeros(kernel_shape, x.dtype)
  return jax.vjp(lambda k: conv_s1(x, k), zeros)[1](g)[0]


# ----------------------------------------------------------------------------- VALID stride-1 conv

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d_valid(x: jax.Array, kernel: jax.Array, wgrad_taps: bool = False) -> jax.Array:
  """VALID stride-1 ``conv2d(x, kernel)`` (same values) on XLA:CPU's fast paths (see the package doc);
  ``wgrad_taps``: its kernel gradient as one matmul per tap (:func:`_tap_wgrad`)."""
  return conv_s1(x, kernel)


def _valid_fwd(x, kernel, wgrad_taps):
  return conv_s1(x, kernel), (x, kernel)


def _valid_bwd(wgrad_taps, res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  dx = conv_s1(g, _flip_swap(kernel), ((kh - 1, kh - 1), (kw - 1, kw - 1)))
  dk = _wgrad_s1(x, g, kernel.shape, bool(wgrad_taps))
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv2d_valid.defvjp(_valid_fwd, _valid_bwd)
