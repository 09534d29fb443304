"""Strided and transposed convolutions as stride-1 phase convolutions (exact FLOPs, no zero-stuffing).

Owns: the torch output-size formulas, the plain transposed conv
(:func:`conv_transpose_plain`, an input-dilated conv), :func:`conv2d_strided`
(plain forward; input gradient = the transposed conv, kernel gradient over the
``stride**2`` input phases), :func:`conv_transpose` (``stride**2`` output
phases, each a stride-1 conv, interleaved; backward from the strided conv it is
the adjoint of) and the measured alternative :func:`conv_transpose_subpixel`
(one stride-1 conv to ``s*s*out`` channels + depth-to-space). Transposed-conv
kernels are ``(kh, kw, in, out)``: the torch ``ConvTranspose2d`` weight
permuted ``(2, 3, 0, 1)``, unflipped.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.cpu.fast_ops.canonical import DIMS, _flip_swap, _wgrad_s1, conv2d, conv_s1

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
                   padding: int, taps_form: bool = False) -> jax.Array:
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
      part = _wgrad_s1(xa, g, (jy, jx, cin, cout), taps_form)
      cols.append(jnp.pad(part, ((0, taps - jy), (0, taps - jx), (0, 0), (0, 0))))
    rows.append(jnp.stack(cols, axis=2))                  # [taps(jy), taps(jx), s(ax), I, O]
  # dw[s*j + a] = phase a's tap j: interleave the phases with a reshape, not a scatter.
  out = jnp.stack(rows, axis=1)                           # [taps(jy), s(ay), taps(jx), s(ax), I, O]
  return out.reshape(taps * s, taps * s, cin, cout)[:k, :k]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_strided(x: jax.Array, kernel: jax.Array, stride: int, padding: int, wgrad_taps: bool = False) -> jax.Array:
  """``conv2d(x, kernel, stride, padding)`` (same values) with the fast backward of the package doc
  (``wgrad_taps``: phase kernels of more than 4 taps also get one matmul per tap)."""
  return conv2d(x, kernel, stride, padding)


def _strided_fwd(x, kernel, stride, padding, wgrad_taps):
  return conv2d(x, kernel, stride, padding), (x, kernel)


def _strided_bwd(stride, padding, wgrad_taps, res, g):
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
  dk = _strided_wgrad(x, g, kernel.shape, stride, padding, bool(wgrad_taps))
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

