"""Fast, equal-math formulations of the convolutions XLA:CPU compiles badly (pure functions, NHWC).

Each public fast function computes exactly the same linear map (values and
gradients, up to float rounding) as the plain counterpart kept beside it, and
takes the *same parameter tensors in the same layout*, so swapping one for the
other changes neither the parameter tree nor checkpoints. ``tests/test_fast_ops.py``
proves each pair equal; ``scripts/benchmark.py --ops`` times them.

Layouts: activations ``[N, H, W, C]``; conv kernels ``(kh, kw, in, out)``
(HWIO); transposed-conv kernels ``(kh, kw, in, out)`` holding the torch
``ConvTranspose2d`` weight ``(in, out, kh, kw)`` permuted ``(2, 3, 0, 1)``,
unflipped (as ``layers.ConvTranspose2d``).

Why (jax 0.10 on x86): XLA:CPU hands a float32 convolution with more than 16
input or output channels to YNNPACK only when it is "canonical" -- no input
(base) dilation, no window reversal, output and kernel no larger than the
input -- and YNNPACK runs a canonical conv fast only when it has *some* zero
padding (an unpadded one is ~3x slower). Everything else falls back to a
generic convolution that is slow for the shapes autodiff produces: the kernel
gradient of a transposed convolution (~50x its forward), the input gradient of
a 7x7 conv with 3 channels, the kernel gradient of a conv with 3 output
channels. Here every forward, input gradient and kernel gradient is written as
a canonical, padded, stride-1 (or plainly strided) convolution:

* :func:`conv2d_valid` -- VALID stride-1 conv (after reflection padding): one
  zero row of padding in the conv and the extra output row dropped; input
  gradient with an explicitly flipped kernel on a pre-padded cotangent; kernel
  gradient with the roles of input and cotangent swapped when the conv has few
  output channels (the 7x7 head).
* :func:`conv2d_strided` -- strided conv: input gradient is the transposed conv
  below; kernel gradient decomposed over the ``stride**2`` input phases into
  stride-1 kernel gradients (exact FLOPs, no dilated window), interleaved back
  with a reshape. Kernel gradients of at most 4 taps (1x1, and the 2x2 / 2x1
  phase kernels) are one matmul per tap: XLA:CPU lowers them to a generic
  convolution ~100x slower.
* :func:`conv_transpose` -- torch ``ConvTranspose2d`` as ``stride**2`` output
  phases, each a stride-1 conv with the taps of that phase, interleaved (exact
  FLOPs, no zero-stuffing); input gradient = the strided conv it is the adjoint
  of; kernel gradient = that strided conv's kernel gradient with the roles of
  input and cotangent swapped. :func:`conv_transpose_subpixel` (one stride-1
  conv to ``s*s*out`` channels + depth-to-space, structural zeros included) is
  the measured alternative.
* :func:`conv2d_patches`, :func:`conv_transpose_patches` -- for convs with few
  pixels (the inner U-Net levels: 4-8 M weights on 1x1..16x16 images), which
  are bound by reading the kernel: one matmul with the kernel in its stored
  layout (patches @ kernel; a batched matmul over the taps, then shifted adds
  for the transposed conv), so no pass of the step copies or cuts the kernel.
  :func:`conv2d_fast` / :func:`conv_transpose_fast` pick the form by pixel and
  channel count.
* :func:`reflection_pad` -- torch ``ReflectionPad2d`` from slices and reversals
  (its transpose is slices and adds, not a scatter).
* :func:`instance_norm` -- torch ``InstanceNorm2d`` with a closed-form backward.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

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


def _tap_wgrad(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """Kernel gradient of VALID stride-1 ``conv2d(x, w)`` as one matmul per tap:
  ``dw[a, b] = sum_{n,h,w} x[n, h + a, w + b, :]^T g[n, h, w, :]``.

  For kernels of at most 4 taps (1x1, and the 2x2 / 2x1 phase kernels of the
  stride-2 convs) this runs at matmul speed, while XLA:CPU lowers such a kernel
  gradient to a generic convolution 50-100x slower (1x1, 64x64x128->256:
  158 ms against 1.6 ms).
  """
  kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
  n, ho, wo = g.shape[:3]
  cin, cout, pix = x.shape[3], g.shape[3], n * ho * wo
  # g^T once, then [O, P] @ [P, I] per tap: the plain form ``x_tap^T @ g`` made XLA
  # transpose every tap's slice of x (25-45% slower at the CycleGAN / U-Net shapes).
  gt = jnp.transpose(g, (3, 0, 1, 2)).reshape(cout, pix)
  taps = [[gt @ x[:, a:a + ho, b:b + wo].reshape(pix, cin) for b in range(kw)] for a in range(kh)]
  return jnp.swapaxes(jnp.stack([jnp.stack(row) for row in taps]), 2, 3)


def _wgrad_s1(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """Kernel gradient of VALID stride-1 ``conv2d(x, w)`` for cotangent ``g``."""
  kernel_shape = tuple(int(v) for v in kernel_shape)
  if kernel_shape[3] == 1 and kernel_shape[0] * kernel_shape[1] <= 16:
    return _tap_wgrad(x, g, kernel_shape)     # the PatchGAN's 4x4 512->1 head: 10.0 -> 3.2 ms
  if kernel_shape[3] <= 16 < kernel_shape[2]:
    return _swapped_wgrad(x, g, kernel_shape)
  if kernel_shape[0] * kernel_shape[1] <= 4:
    return _tap_wgrad(x, g, kernel_shape)
  zeros = jnp.zeros(kernel_shape, x.dtype)
  return jax.vjp(lambda k: conv_s1(x, k), zeros)[1](g)[0]


# ----------------------------------------------------------------------------- VALID stride-1 conv

@jax.custom_vjp
def conv2d_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """VALID stride-1 ``conv2d(x, kernel)`` (same values) on XLA:CPU's fast paths (see module doc)."""
  return conv_s1(x, kernel)


def _valid_fwd(x, kernel):
  return conv_s1(x, kernel), (x, kernel)


def _valid_bwd(res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  dx = conv_s1(g, _flip_swap(kernel), ((kh - 1, kh - 1), (kw - 1, kw - 1)))
  dk = _wgrad_s1(x, g, kernel.shape)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv2d_valid.defvjp(_valid_fwd, _valid_bwd)


# ----------------------------------------------------------------------------- strided / transposed convs

def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
  """torch's ``floor((size + 2 * padding - kernel_size) / stride) + 1``."""
  return (size + 2 * padding - kernel_size) // stride + 1


def conv_transpose_output_size(size: int, kernel_size: int, stride: int, padding: int, output_padding: int) -> int:
  """torch's ``(size - 1) * stride - 2 * padding + kernel_size + output_padding``."""
  return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def _check_transpose_args(kernel_size: int, stride: int, padding: int, output_padding: int) -> None:
  if not (stride >= 1 and 0 <= padding <= kernel_size - 1 and 0 <= output_padding < stride):
    raise ValueError(f"conv_transpose: need stride >= 1, 0 <= padding <= kernel_size - 1 and "
                     f"0 <= output_padding < stride; got kernel_size={kernel_size}, stride={stride}, "
                     f"padding={padding}, output_padding={output_padding}")


def conv_transpose_plain(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                         output_padding: int = 0) -> jax.Array:
  """torch ``ConvTranspose2d`` as an input-dilated convolution with the flipped kernel (the plain form).

  ``x [N,H,W,I]``, ``kernel (k,k,I,O)`` -> ``[N, H', W', O]`` with
  ``H' = (H-1)*stride - 2*padding + k + output_padding``.
  """
  k = kernel.shape[0]
  _check_transpose_args(k, stride, padding, output_padding)
  lo, hi = k - 1 - padding, k - 1 - padding + output_padding
  return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((lo, hi), (lo, hi)),
                                      lhs_dilation=(stride, stride), dimension_numbers=DIMS)


def _phase_taps(kernel_size: int, stride: int, padding: int) -> list[list[tuple[int, int]]]:
  """Per output phase r: the (offset d, tap t) pairs with ``y[s*m + r] = sum x[m + d] w[t]``, by d."""
  return [sorted(((r + padding - t) // stride, t) for t in range(kernel_size)
                 if (r + padding - t) % stride == 0) for r in range(stride)]


def _phase_kernel(kernel: jax.Array, taps_y, taps_x, stride: int) -> tuple[jax.Array, int, int]:
  """Stride-1 kernel of one output phase and its first offset ``d`` per axis.

  A phase's taps ``t = r + padding - stride * d`` are every ``stride``-th tap,
  for consecutive offsets ``d``: a strided slice of the kernel, reversed (a copy
  XLA fuses, where an index gather would not be).
  """
  def axis_slice(k, taps, axis):
    first, last = taps[-1][1], taps[0][1]          # smallest and largest tap
    part = jax.lax.slice_in_dim(k, first, last + 1, stride=stride, axis=axis)
    return jax.lax.rev(part, (axis,))
  return axis_slice(axis_slice(kernel, taps_y, 0), taps_x, 1), taps_y[0][0], taps_x[0][0]


def _interleave_phases(phases: list[list[jax.Array]]) -> jax.Array:
  """``phases[ry][rx]`` ``[N, m_h, m_w, C]`` -> ``[N, s*m_h, s*m_w, C]`` with phase ``(ry, rx)`` at
  ``(s*i + ry, s*j + rx)``: two stacks and a reshape (no scatter)."""
  s = len(phases)
  n, m_h, m_w, c = phases[0][0].shape
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)     # [N, m_h, s(ry), m_w, s(rx), C]
  return y.reshape(n, m_h * s, m_w * s, c)


def _transpose_phases(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                      output_padding: int) -> jax.Array:
  """Transposed conv as ``stride**2`` stride-1 convs (one per output phase), interleaved."""
  k, s = kernel.shape[0], stride
  out_h = conv_transpose_output_size(x.shape[1], k, s, padding, output_padding)
  out_w = conv_transpose_output_size(x.shape[2], k, s, padding, output_padding)
  m_h, m_w = -(-out_h // s), -(-out_w // s)
  taps = _phase_taps(k, s, padding)
  rows = []
  for ry in range(s):
    cols = []
    for rx in range(s):
      if not taps[ry] or not taps[rx]:
        cols.append(jnp.zeros((x.shape[0], m_h, m_w, kernel.shape[3]), x.dtype))
        continue
      kr, dy, dx = _phase_kernel(kernel, taps[ry], taps[rx], s)
      pads = ((-dy, m_h + kr.shape[0] - 1 - x.shape[1] + dy), (-dx, m_w + kr.shape[1] - 1 - x.shape[2] + dx))
      cols.append(conv_s1(x, kr.astype(x.dtype), pads))
    rows.append(cols)
  return _interleave_phases(rows)[:, :out_h, :out_w]


def _strided_wgrad(x: jax.Array, g: jax.Array, kernel_shape: Sequence[int], stride: int,
                   padding: int) -> jax.Array:
  """Kernel gradient of ``conv2d(x, w, stride, padding)`` for cotangent ``g``, over input phases.

  ``dw[s*j + a] = sum_i xpad[s*(i + j) + a] g[i]``: for each input phase ``a`` a
  stride-1 kernel gradient on ``xpad[a::s]`` with the taps ``j`` of that phase.
  """
  k, s = int(kernel_shape[0]), stride
  n_h, n_w = g.shape[1], g.shape[2]
  need_h, need_w = s * (n_h - 1) + k, s * (n_w - 1) + k
  xp = jnp.pad(x, ((0, 0), (padding, max(need_h - x.shape[1] - padding, 0)),
                   (padding, max(need_w - x.shape[2] - padding, 0)), (0, 0)))
  cin, cout = int(kernel_shape[2]), int(kernel_shape[3])
  taps = -(-k // s)                                       # taps per phase, rounded up
  rows = []
  for ay in range(s):
    cols = []
    for ax in range(s):
      jy, jx = len(range(ay, k, s)), len(range(ax, k, s))
      if not (jy and jx):
        cols.append(jnp.zeros((taps, taps, cin, cout), g.dtype))
        continue
      xa = xp[:, ay::s, ax::s][:, :n_h + jy - 1, :n_w + jx - 1]
      part = _wgrad_s1(xa, g, (jy, jx, cin, cout))
      cols.append(jnp.pad(part, ((0, taps - jy), (0, taps - jx), (0, 0), (0, 0))))
    rows.append(jnp.stack(cols, axis=2))                  # [taps(jy), taps(jx), s(ax), I, O]
  # dw[s*j + a] = phase a's tap j: interleave the phases with a reshape, not a scatter.
  out = jnp.stack(rows, axis=1)                           # [taps(jy), s(ay), taps(jx), s(ax), I, O]
  return out.reshape(taps * s, taps * s, cin, cout)[:k, :k]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d_strided(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """``conv2d(x, kernel, stride, padding)`` (same values) with the fast backward of the module doc."""
  return conv2d(x, kernel, stride, padding)


def _strided_fwd(x, kernel, stride, padding):
  return conv2d(x, kernel, stride, padding), (x, kernel)


def _strided_bwd(stride, padding, res, g):
  x, kernel = res
  k = kernel.shape[0]
  op_h = x.shape[1] - conv_transpose_output_size(g.shape[1], k, stride, padding, 0)
  op_w = x.shape[2] - conv_transpose_output_size(g.shape[2], k, stride, padding, 0)
  if stride == 1:
    lo = k - 1 - padding
    dx = conv_s1(g, _flip_swap(kernel), ((lo, lo + op_h), (lo, lo + op_w)))
  else:
    dx = _transpose_phases(g, jnp.swapaxes(kernel, 2, 3), stride, padding, max(op_h, op_w))
    dx = dx[:, :x.shape[1], :x.shape[2]]
  dk = _strided_wgrad(x, g, kernel.shape, stride, padding)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


conv2d_strided.defvjp(_strided_fwd, _strided_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                   output_padding: int = 0) -> jax.Array:
  """torch ``ConvTranspose2d``: same values as :func:`conv_transpose_plain`, fast forward and backward.

  Forward: :func:`_transpose_phases`. Backward from ``<T(x; w), g> = <x, C(g; w)>``
  with ``C`` the strided conv with the in/out-swapped kernel: ``dx = C(g; w)``
  and ``dw`` = ``C``'s kernel gradient at input ``g``, cotangent ``x``.
  """
  _check_transpose_args(kernel.shape[0], stride, padding, output_padding)
  return _transpose_phases(x, kernel, stride, padding, output_padding)


def _conv_transpose_fwd(x, kernel, stride, padding, output_padding):
  return conv_transpose(x, kernel, stride, padding, output_padding), (x, kernel)


def _conv_transpose_bwd(stride, padding, output_padding, res, g):
  del output_padding
  x, kernel = res
  k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
  dx = conv2d(g, jnp.swapaxes(kernel, 2, 3), stride, padding)
  dk = _strided_wgrad(g, x, (k, k, cout, cin), stride, padding)
  return dx.astype(x.dtype), jnp.swapaxes(dk, 2, 3).astype(kernel.dtype)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


# ----------------------------------------------------------------------------- few-pixel (weight-bound) convs

# The patch forms below use the kernel in its stored layout; the phase forms above
# cut it into phase kernels and transpose it (a copy per pass). That pays off
# only when the kernel outweighs the activations: when the patch (or scattered)
# tensor, pixels x k*k x channels, is no larger than the kernel -- fewer pixels
# than output channels -- and the pixels are few. Measured on 2
# x86 cores, forward + both gradients of the 4x4 s2 U-Net layers: 512->512 at
# 4x4 -> 2x2 10.4 -> 1.6 ms; 1024->512 transposed at 8x8 59.6 -> 32.7 ms; the
# patch forms lost at 1024 output pixels (64x64x128->256: 16.6 -> 17.9 ms) and
# at 256 input pixels with 256 output channels (16x16x1024->256: 37.5 -> 55.7 ms).
#
# The choice looks at one image's pixels, not the batch's: the same network then
# runs the same forms (and rounds the same way) whatever the per-device batch, so
# 8 devices with 1 image each match 1 device with 8 images.
# Only kernels of at least PATCH_MIN_KERNEL weights are worth it: below that reading
# the kernel costs little either way, and the conv forms keep the small networks'
# rounding as it was (the parity tests with batch norm over 2 images at 1x1 and
# instance norm over 3x3 maps magnify any change of rounding).
PATCH_MAX_OUT_PIXELS = 256      # conv2d_patches: H_out * W_out, also <= out channels
PATCH_MAX_IN_PIXELS = 128       # conv_transpose_patches: H_in * W_in, also <= out channels
PATCH_MIN_KERNEL = 1 << 20      # kernel weights (4 MiB in float32)


def _patches(x: jax.Array, k: int, stride: int, padding: int, out_h: int, out_w: int) -> jax.Array:
  """``[N, out_h, out_w, k*k, C]``: tap ``(ky, kx)`` of output ``(i, j)`` is ``xpad[s*i + ky, s*j + kx]``."""
  s, (h, w) = stride, x.shape[1:3]
  need_h, need_w = s * (out_h - 1) + k, s * (out_w - 1) + k
  xp = jnp.pad(x, ((0, 0), (padding, max(need_h - h - padding, 0)), (padding, max(need_w - w - padding, 0)),
                   (0, 0)))
  taps = [xp[:, ky:ky + s * (out_h - 1) + 1:s, kx:kx + s * (out_w - 1) + 1:s] for ky in range(k) for kx in range(k)]
  return jnp.stack(taps, axis=3)


def conv2d_patches(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """``conv2d(x, kernel, stride, padding)`` as one matmul of the patches with the kernel read as a
  ``(k*k*I, O)`` matrix -- its stored HWIO layout, so neither the forward nor the (autodiff)
  gradients copy or rearrange the kernel. For convs with few output pixels (module constants)."""
  k, _, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  out_h, out_w = conv_output_size(h, k, stride, padding), conv_output_size(w, k, stride, padding)
  cols = _patches(x, k, stride, padding, out_h, out_w).reshape(n * out_h * out_w, k * k * cin)
  return (cols @ kernel.reshape(k * k * cin, cout)).reshape(n, out_h, out_w, cout)


def conv_transpose_patches(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                           output_padding: int = 0) -> jax.Array:
  """torch ``ConvTranspose2d`` as matmul-then-scatter ("col2im"), for inputs with few pixels.

  ``z[t] = x @ kernel[t]`` for each of the ``k*k`` taps is one batched matmul over
  the kernel read as ``(k*k, I, O)`` (its stored layout; ``x`` is broadcast over
  the taps, which is small when ``x`` has few pixels). Tap ``(ty, tx)`` of input
  ``(i, j)`` lands on ``(s*i + ty - p, s*j + tx - p)``: with ``t = s*a + r`` that is
  output phase ``r``, cell ``i + a``, so each phase is a sum of shifted (zero-padded)
  ``z`` slices and the phases interleave by a reshape -- adds and pads, no scatter.
  """
  k, _, cin, cout = kernel.shape
  _check_transpose_args(k, stride, padding, output_padding)
  n, h, w, _ = x.shape
  s, t = stride, -(-k // stride)                       # taps per phase and axis, rounded up
  pix = n * h * w
  xb = jnp.broadcast_to(x.reshape(1, pix, cin), (k * k, pix, cin))
  z = jax.lax.dot_general(xb, kernel.reshape(k * k, cin, cout), (((2,), (1,)), ((0,), (0,))))
  z = z.reshape(k, k, n, h, w, cout)
  cell_h, cell_w = h + t - 1, w + t - 1
  rows = []
  for ry in range(s):
    cols = []
    for rx in range(s):
      acc = jnp.zeros((n, cell_h, cell_w, cout), z.dtype)
      for ay in range(t):
        for ax in range(t):
          if s * ay + ry < k and s * ax + rx < k:
            acc = acc + jnp.pad(z[s * ay + ry, s * ax + rx], ((0, 0), (ay, t - 1 - ay), (ax, t - 1 - ax), (0, 0)))
      cols.append(acc)
    rows.append(cols)
  y = _interleave_phases(rows)
  out_h = conv_transpose_output_size(h, k, s, padding, output_padding)
  out_w = conv_transpose_output_size(w, k, s, padding, output_padding)
  y = jnp.pad(y, ((0, 0), (0, max(padding + out_h - y.shape[1], 0)), (0, max(padding + out_w - y.shape[2], 0)),
                  (0, 0)))
  return y[:, padding:padding + out_h, padding:padding + out_w]


def conv2d_fast(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 0) -> jax.Array:
  """``conv2d(x, kernel, stride, padding)`` in the fastest of the equal forms for its shape."""
  k = kernel.shape[0]
  out_pixels = conv_output_size(x.shape[1], k, stride, padding) * conv_output_size(x.shape[2], k, stride, padding)
  if kernel.size >= PATCH_MIN_KERNEL and out_pixels <= min(PATCH_MAX_OUT_PIXELS, kernel.shape[3]):
    return conv2d_patches(x, kernel, stride, padding)
  if stride == 1 and padding == 0:
    return conv2d_valid(x, kernel)
  return conv2d_strided(x, kernel, stride, padding)


def conv_transpose_fast(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                        output_padding: int = 0) -> jax.Array:
  """torch ``ConvTranspose2d`` in the fastest of the equal forms for its shape."""
  if kernel.size >= PATCH_MIN_KERNEL and x.shape[1] * x.shape[2] <= min(PATCH_MAX_IN_PIXELS, kernel.shape[3]):
    return conv_transpose_patches(x, kernel, stride, padding, output_padding)
  return conv_transpose(x, kernel, stride, padding, output_padding)


def subpixel_kernel(kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """Map a transposed-conv kernel ``(k,k,I,O)`` to the sub-pixel kernel ``(D,D,I,s*s*O)``.

  Output channel ``(ry*s + rx)*O + o`` of the stride-1 conv is output phase
  ``(ry, rx)`` of channel ``o``; taps a phase does not use are zero.
  Differentiable (a gather and a mask), so gradients flow back to ``kernel``.
  """
  k, _, cin, cout = kernel.shape
  taps = _phase_taps(k, stride, padding)
  d_min = min(d for phase in taps for d, _ in phase)
  size = max(d for phase in taps for d, _ in phase) - d_min + 1
  index = np.zeros((size, stride), np.int32)
  valid = np.zeros((size, stride), bool)
  for r, phase in enumerate(taps):
    for d, t in phase:
      index[d - d_min, r], valid[d - d_min, r] = t, True
  gathered = kernel[index[:, :, None, None], index[None, None, :, :]]     # [Dy, ry, Dx, rx, I, O]
  mask = valid[:, :, None, None] & valid[None, None, :, :]
  sub = jnp.where(mask[..., None, None], gathered, jnp.zeros((), kernel.dtype))
  return sub.transpose(0, 2, 4, 1, 3, 5).reshape(size, size, cin, stride * stride * cout)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """``[N,H,W,b*b*C]`` -> ``[N,b*H,b*W,C]``; channel ``(ry*b + rx)*C + c`` lands at ``(b*h+ry, b*w+rx)``."""
  n, h, w, c = x.shape
  cout = c // (block * block)
  x = x.reshape(n, h, w, block, block, cout).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * block, w * block, cout)


def conv_transpose_subpixel(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                            output_padding: int = 0) -> jax.Array:
  """:func:`conv_transpose_plain` as one stride-1 conv to ``s*s*O`` channels + depth-to-space."""
  k = kernel.shape[0]
  _check_transpose_args(k, stride, padding, output_padding)
  taps = _phase_taps(k, stride, padding)
  d_min = min(d for phase in taps for d, _ in phase)
  size = max(d for phase in taps for d, _ in phase) - d_min + 1
  out = [conv_transpose_output_size(x.shape[i], k, stride, padding, output_padding) for i in (1, 2)]
  pads = [(-d_min, -(-out[i] // stride) + size - 1 - x.shape[i + 1] + d_min) for i in (0, 1)]
  y = depth_to_space(conv2d(x, subpixel_kernel(kernel, stride, padding).astype(x.dtype), 1, pads), stride)
  return y[:, :out[0], :out[1]]


# ----------------------------------------------------------------------------- reflection padding

def reflection_pad_plain(x: jax.Array, pad: int) -> jax.Array:
  """torch ``ReflectionPad2d(pad)`` with ``jnp.pad(mode="reflect")`` (the plain form)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _reflect_axis(x: jax.Array, pad: int, axis: int) -> jax.Array:
  n = x.shape[axis]
  lo = jax.lax.rev(jax.lax.slice_in_dim(x, 1, pad + 1, axis=axis), (axis,))
  hi = jax.lax.rev(jax.lax.slice_in_dim(x, n - 1 - pad, n - 1, axis=axis), (axis,))
  return jnp.concatenate([lo, x, hi], axis=axis)


def reflection_pad(x: jax.Array, pad: int) -> jax.Array:
  """torch ``ReflectionPad2d(pad)`` on NHWC (edge not repeated); needs ``pad < H, W``."""
  if pad == 0:
    return x
  if pad >= x.shape[1] or pad >= x.shape[2]:
    raise ValueError(f"reflection padding {pad} needs H and W > {pad}, got shape {tuple(x.shape)}")
  return _reflect_axis(_reflect_axis(x, pad, 1), pad, 2)


# ----------------------------------------------------------------------------- instance norm

def instance_norm_plain(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """torch ``InstanceNorm2d`` (no affine): per image and channel over (H, W), biased variance."""
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
  return ((xf - mean) * jax.lax.rsqrt(var + epsilon)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def instance_norm(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """:func:`instance_norm_plain` with the closed-form backward
  ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` (statistics in float32)."""
  return instance_norm_plain(x, epsilon)


def _in_fwd(x, epsilon):
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  rstd = jax.lax.rsqrt(jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True) + epsilon)
  return ((xf - mean) * rstd).astype(x.dtype), (x, mean, rstd)


def _in_bwd(epsilon, res, g):
  del epsilon
  x, mean, rstd = res
  xhat = (x.astype(jnp.float32) - mean) * rstd
  gf = g.astype(jnp.float32)
  mg = jnp.mean(gf, axis=(1, 2), keepdims=True)
  mgx = jnp.mean(gf * xhat, axis=(1, 2), keepdims=True)
  return (((gf - mg - xhat * mgx) * rstd).astype(x.dtype),)


instance_norm.defvjp(_in_fwd, _in_bwd)
