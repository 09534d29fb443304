"""Few-pixel (weight-bound) convolutions as matmuls with the kernel in its stored layout.

Owns: :func:`conv2d_patches` (patches @ kernel) and
:func:`conv_transpose_patches` (a batched matmul over the taps, then shifted
adds). They pay off for the inner U-Net levels, where reading a 4-8 M-weight
kernel costs more than the few pixels; :func:`jaxgan.cpu.fast_ops.conv2d_fast`
/ ``conv_transpose_fast`` decide when (the ``PATCH_*`` constants there).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgan.cpu.fast_ops.strided import (_check_transpose_args, _interleave_phases, conv_output_size,
                                            conv_transpose_output_size)

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
  gradients copy or rearrange the kernel. For convs with few output pixels (the package's ``PATCH_*`` constants)."""
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

