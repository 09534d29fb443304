"""Fast, equal-math formulations of the convolutions XLA:CPU compiles badly (pure functions, NHWC).

A package: :mod:`.canonical` (stride-1 and VALID convs, the shared kernel-gradient
forms), :mod:`.strided` (strided / transposed convs as phase convs, and the
sub-pixel form), :mod:`.patches` (few-pixel convs as matmuls), :mod:`.pad_norm`
(reflection padding, instance norm); this ``__init__`` re-exports every public
name and owns the dispatchers :func:`conv2d_fast` / :func:`conv_transpose_fast`
that pick a form by shape (``from jaxgan.cpu import fast_ops as F``).

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

import jax

from jaxgan.cpu.fast_ops.canonical import DIMS, conv2d, conv2d_valid, conv_s1
from jaxgan.cpu.fast_ops.pad_norm import instance_norm, instance_norm_plain, reflection_pad, reflection_pad_plain
from jaxgan.cpu.fast_ops.patches import conv2d_patches, conv_transpose_patches
from jaxgan.cpu.fast_ops.strided import (conv2d_strided, conv_output_size, conv_transpose,
                                            conv_transpose_output_size, conv_transpose_plain,
                                            conv_transpose_subpixel, depth_to_space, subpixel_kernel)

__all__ = [
    "DIMS", "conv2d", "conv_s1", "conv2d_valid", "conv_output_size", "conv_transpose_output_size",
    "conv_transpose_plain", "conv2d_strided", "conv_transpose", "subpixel_kernel", "depth_to_space",
    "conv_transpose_subpixel", "conv2d_patches", "conv_transpose_patches", "conv2d_fast", "conv_transpose_fast",
    "PATCH_MAX_OUT_PIXELS", "PATCH_MAX_IN_PIXELS", "PATCH_MIN_KERNEL", "reflection_pad", "reflection_pad_plain",
    "instance_norm", "instance_norm_plain",
]

# ----------------------------------------------------------------------------- dispatch: the form for a shape

# The patch forms (.patches) use the kernel in its stored layout; the phase forms (.strided)
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
# (The dispatchers below read these from this module, where the tests patch them.)


def conv2d_fast(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 0,
                wgrad_taps: bool = False) -> jax.Array:
  """``conv2d(x, kernel, stride, padding)`` in the fastest of the equal forms for its shape
  (``wgrad_taps``: a VALID stride-1 conv's kernel gradient as one matmul per tap)."""
  k = kernel.shape[0]
  out_pixels = conv_output_size(x.shape[1], k, stride, padding) * conv_output_size(x.shape[2], k, stride, padding)
  if kernel.size >= PATCH_MIN_KERNEL and out_pixels <= min(PATCH_MAX_OUT_PIXELS, kernel.shape[3]):
    return conv2d_patches(x, kernel, stride, padding)
  if stride == 1 and padding == 0:
    return conv2d_valid(x, kernel, bool(wgrad_taps))
  return conv2d_strided(x, kernel, stride, padding, bool(wgrad_taps))


def conv_transpose_fast(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                        output_padding: int = 0) -> jax.Array:
  """torch ``ConvTranspose2d`` in the fastest of the equal forms for its shape."""
  if kernel.size >= PATCH_MIN_KERNEL and x.shape[1] * x.shape[2] <= min(PATCH_MAX_IN_PIXELS, kernel.shape[3]):
    return conv_transpose_patches(x, kernel, stride, padding, output_padding)
  return conv_transpose(x, kernel, stride, padding, output_padding)

