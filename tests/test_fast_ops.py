"""``jaxgan.cpu.fast_ops``: each fast function is the same linear map as an independent plain form.

The references here are written from scratch (``lax.conv_general_dilated``,
``jnp.pad(mode="reflect")``, mean/variance instance norm, torch semantics for the
transposed conv), not taken from the module, so a wrong tap, flip or phase fails.
Values and the vjp (random cotangent) w.r.t. the input and the kernel are compared.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import require_torch
from jaxgan.cpu import fast_ops as F

DIMS = ("NHWC", "HWIO", "NHWC")
RTOL = 1e-4  # max |fast - ref| <= RTOL * max |ref| (float32; measured errors are ~1e-7 relative)


def _rand(seed, *shape):
  return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), jnp.float32)


def assert_close(got, want, what):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
  scale = float(np.abs(want).max())
  assert scale > 0, f"{what}: reference is all zeros, the comparison would prove nothing"
  err = float(np.abs(got - want).max())
  print(f"[diff] {what}: max|diff|={err:.3g} rel={err / scale:.3g}")
  assert err <= RTOL * scale, f"{what}: max|diff| {err:.3g} > {RTOL} * {scale:.3g}"


def check_same_map(fast, ref, args, what):
  """Forward values and the vjp w.r.t. every argument of ``fast`` and ``ref`` agree."""
  cot = _rand(99, *jax.eval_shape(ref, *args).shape)

  @jax.jit  # one compilation per case instead of one per eager op: keeps the file fast on 2 cores
  def both(*args):
    (y_f, vjp_f), (y_r, vjp_r) = jax.vjp(fast, *args), jax.vjp(ref, *args)
    return y_f, vjp_f(cot), y_r, vjp_r(cot)

  y_f, grads_f, y_r, grads_r = both(*args)
  assert_close(y_f, y_r, f"{what} value")
  for i, (g_f, g_r) in enumerate(zip(grads_f, grads_r)):
    assert_close(g_f, g_r, f"{what} grad[{('x', 'kernel')[i]}]")


# ----------------------------------------------------------------------------- independent references

def ref_conv(x, kernel, stride=1, padding=((0, 0), (0, 0))):
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=DIMS)


def ref_reflect(x, pad):
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def ref_conv_transpose(x, kernel, stride, padding, output_padding):
  """torch ConvTranspose2d = adjoint (input vjp) of the strided conv with in/out swapped kernel."""
  n, h, w, _ = x.shape
  k, cout = kernel.shape[0], kernel.shape[3]
  size = lambda v: (v - 1) * stride - 2 * padding + k + output_padding
  z = jnp.zeros((n, size(h), size(w), cout), x.dtype)
  conv = lambda z: ref_conv(z, jnp.swapaxes(kernel, 2, 3), stride, padding)
  y, vjp = jax.vjp(conv, z)
  assert y.shape == x.shape
  return vjp(x)[0]


def loop_conv_transpose(x, w, s, p, op):
  """The torch definition, literally: ``y[s*i + t - p, s*j + u - p] += x[i, j] @ w[t, u]``."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  n, h, wd, _ = x.shape
  k = w.shape[0]
  y = np.zeros((n, (h - 1) * s - 2 * p + k + op, (wd - 1) * s - 2 * p + k + op, w.shape[3]))
  for i in range(h):
    for j in range(wd):
      for t in range(k):
        for u in range(k):
          a, b = s * i + t - p, s * j + u - p
          if 0 <= a < y.shape[1] and 0 <= b < y.shape[2]:
            y[:, a, b] += x[:, i, j] @ w[t, u]
  return y


def ref_instance_norm(x, eps=1e-5):
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean((x - mean) ** 2, axis=(1, 2), keepdims=True)
  return (x - mean) / jnp.sqrt(var + eps)


def test_reference_conv_transpose_hand_case():
  x = jnp.array([[1., 2.], [3., 4.]]).reshape(1, 2, 2, 1)
  w = jnp.arange(1., 10.).reshape(3, 3, 1, 1)  # w[t, u] = 3t + u + 1
  want = np.array([[5, 14, 10, 12], [14, 36, 24, 30], [15, 34, 20, 24], [24, 55, 32, 36]], np.float64)
  np.testing.assert_array_equal(loop_conv_transpose(x, w, 2, 1, 1)[0, ..., 0], want)
  np.testing.assert_allclose(np.asarray(ref_conv_transpose(x, w, 2, 1, 1))[0, ..., 0], want, atol=1e-5)


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0), (2, 3, 0, 2)])
def test_reference_conv_transpose_matches_loop(k, s, p, op):
  x, w = _rand(1, 2, 3, 4, 3), _rand(2, k, k, 3, 5)
  np.testing.assert_allclose(np.asarray(ref_conv_transpose(x, w, s, p, op)),
                             loop_conv_transpose(x, w, s, p, op), atol=1e-5)


# ----------------------------------------------------------------------------- fast vs reference

# (input shape NHWC, kernel size, out channels, reflection pad before the conv)
VALID_CASES = [((2, 16, 16, 3), 3, 8, 0), ((1, 17, 12, 8), 3, 16, 0), ((1, 17, 12, 24), 3, 24, 0),
               ((1, 16, 16, 20), 3, 20, 1), ((1, 9, 10, 17), 1, 5, 0), ((1, 16, 13, 3), 7, 24, 3),
               ((1, 12, 11, 20), 4, 1, 0),  # one output channel (PatchGAN head)
               ((1, 32, 32, 24), 7, 3, 3)]  # last: the ResNet head (reflection pad 3, 7x7 -> 3)


@pytest.mark.parametrize("shape,k,cout,pad", VALID_CASES)
def test_conv2d_valid(shape, k, cout, pad):
  x, w = _rand(3, *shape), _rand(4, k, k, shape[3], cout) / k
  fast = lambda x, w: F.conv2d_valid(F.reflection_pad(x, pad), w)
  ref = lambda x, w: ref_conv(ref_reflect(x, pad) if pad else x, w)
  check_same_map(fast, ref, (x, w), f"conv2d_valid{shape} k{k}->{cout} pad{pad}")


@pytest.mark.parametrize("padding", [0, 1, ((2, 0), (0, 1)), ((-1, 2), (1, -1)), 2])
@pytest.mark.parametrize("cin,cout", [(3, 8), (20, 20)])
def test_conv_s1(padding, cin, cout):
  x, w = _rand(5, 1, 9, 8, cin), _rand(6, 3, 3, cin, cout)
  pads = ((padding, padding), (padding, padding)) if isinstance(padding, int) else padding
  check_same_map(lambda x, w: F.conv_s1(x, w, padding), lambda x, w: ref_conv(x, w, 1, pads), (x, w),
                 f"conv_s1 {cin}->{cout} pad{padding}")


# Kernel gradients of stride-1 convs with more than 4 taps: one matmul per tap or XLA's convolution
# (the family conv_wgrad, passed as wgrad_taps). Both forms against the reference: the ResNet block's 3x3, the
# 7x7 stem on 3 channels, and the PatchGAN's padded 4x4 stride-1 conv.
@pytest.mark.parametrize("taps", [True, False])
@pytest.mark.parametrize("shape,k,cout,s,p", [((2, 10, 9, 20), 3, 24, 1, 0), ((1, 14, 13, 3), 7, 20, 1, 0),
                                              ((1, 12, 11, 20), 4, 24, 1, 1)])
def test_both_kernel_gradient_forms(taps, shape, k, cout, s, p):
  x, w = _rand(15, *shape), _rand(16, k, k, shape[3], cout) / k
  fast = ((lambda x, w: F.conv2d_valid(x, w, taps)) if p == 0 else
          (lambda x, w: F.conv2d_strided(x, w, s, p, taps)))
  # the kernel gradient is traced with the form passed: as many matmuls as taps, or none
  text = str(jax.make_jaxpr(jax.grad(lambda w: fast(x, w).sum()))(w))
  assert (text.count("dot_general") >= k * k) if taps else ("dot_general" not in text), text.count("dot_general")
  check_same_map(fast, lambda x, w: ref_conv(x, w, s, p), (x, w), f"wgrad taps={taps} {shape} k{k}->{cout} p{p}")


# (input shape, kernel size, out channels, stride, padding)
STRIDED_CASES = [((2, 16, 16, 3), 3, 8, 2, 1), ((1, 17, 12, 8), 3, 16, 2, 1), ((1, 16, 16, 20), 3, 24, 2, 1),
                 ((1, 17, 12, 24), 4, 3, 2, 1), ((1, 16, 16, 3), 4, 20, 2, 1), ((1, 17, 12, 20), 3, 20, 1, 1),
                 ((1, 16, 12, 20), 4, 1, 1, 1), ((1, 11, 9, 8), 3, 8, 1, 0), ((1, 17, 13, 5), 5, 6, 3, 2)]


@pytest.mark.parametrize("fn", ["conv2d_strided", "conv2d_patches"])
@pytest.mark.parametrize("shape,k,cout,s,p", STRIDED_CASES)
def test_conv2d_strided(fn, shape, k, cout, s, p):
  x, w = _rand(7, *shape), _rand(8, k, k, shape[3], cout) / k
  fast = getattr(F, fn)
  check_same_map(lambda x, w: fast(x, w, s, p), lambda x, w: ref_conv(x, w, s, p), (x, w),
                 f"{fn}{shape} k{k}->{cout} s{s} p{p}")


# (input shape, kernel size, out channels, stride, padding, output_padding)
TRANSPOSE_CASES = [((2, 8, 8, 8), 3, 3, 2, 1, 1),     # ResNet upsampling (k3 s2 p1 op1)
                   ((1, 9, 6, 24), 3, 20, 2, 1, 1),
                   ((1, 8, 8, 20), 4, 3, 2, 1, 0),    # U-Net (k4 s2 p1)
                   ((1, 9, 6, 3), 4, 24, 2, 1, 0),
                   ((1, 8, 7, 17), 3, 17, 1, 1, 0),
                   ((1, 5, 6, 4), 5, 6, 2, 2, 1),
                   ((1, 4, 5, 3), 2, 4, 3, 0, 2)]     # stride > kernel: phases without taps


@pytest.mark.parametrize("fn", ["conv_transpose", "conv_transpose_subpixel", "conv_transpose_patches"])
@pytest.mark.parametrize("shape,k,cout,s,p,op", TRANSPOSE_CASES)
def test_conv_transpose(fn, shape, k, cout, s, p, op):
  x, w = _rand(9, *shape), _rand(10, k, k, shape[3], cout) / k
  fast = getattr(F, fn)
  check_same_map(lambda x, w: fast(x, w, s, p, op), lambda x, w: ref_conv_transpose(x, w, s, p, op), (x, w),
                 f"{fn}{shape} k{k}->{cout} s{s} p{p} op{op}")


def _ops(fn, *args):
  """Which of conv / matmul ``fn``'s forward uses (custom-vjp bodies included: read from the printed jaxpr)."""
  text = str(jax.make_jaxpr(fn)(*args))
  return {p for p in ("conv_general_dilated", "dot_general") if p in text}


@pytest.mark.parametrize("shape,cout,s,p,patches", [((1, 4, 4, 24), 20, 2, 1, True),     # 4 out pixels
                                                    ((8, 2, 3, 20), 24, 1, 1, True),     # 2 per image, s1
                                                    ((1, 10, 10, 8), 20, 2, 1, False),   # 25 > 20 channels
                                                    ((1, 34, 34, 4), 300, 2, 1, False)])  # 289 > 256 pixels
def test_conv2d_fast_picks_the_form_by_pixels(shape, cout, s, p, patches, monkeypatch):
  """Fewer output pixels per image than output channels (and few): the kernel-as-matmul form (no
  conv op); otherwise the conv forms. Same map either way. (Kernel-size floor off: small cases.)"""
  monkeypatch.setattr(F, "PATCH_MIN_KERNEL", 0)
  x, w = _rand(11, *shape), _rand(12, 4, 4, shape[3], cout) / 4
  ops = _ops(lambda x, w: F.conv2d_fast(x, w, s, p), x, w)
  assert ops == ({"dot_general"} if patches else {"conv_general_dilated"}), ops
  check_same_map(lambda x, w: F.conv2d_fast(x, w, s, p), lambda x, w: ref_conv(x, w, s, p), (x, w),
                 f"conv2d_fast{shape} s{s} p{p}")


@pytest.mark.parametrize("shape,patches", [((1, 1, 1, 24), True), ((16, 2, 2, 20), True),   # per image: 4
                                           ((1, 8, 8, 20), False),      # 64 input pixels > 24 channels
                                           ((1, 16, 16, 20), False)])
def test_conv_transpose_fast_picks_the_form_by_pixels(shape, patches, monkeypatch):
  monkeypatch.setattr(F, "PATCH_MIN_KERNEL", 0)
  x, w = _rand(13, *shape), _rand(14, 4, 4, shape[3], 24) / 4
  ops = _ops(lambda x, w: F.conv_transpose_fast(x, w, 2, 1), x, w)
  assert ops == ({"dot_general"} if patches else {"conv_general_dilated"}), ops
  check_same_map(lambda x, w: F.conv_transpose_fast(x, w, 2, 1, 0), lambda x, w: ref_conv_transpose(x, w, 2, 1, 0),
                 (x, w), f"conv_transpose_fast{shape}")


def test_patch_forms_only_for_large_kernels():
  """With the default floor a small kernel stays on the conv forms even at 1x1; a 4x4x256x256
  kernel (2^20 weights) at 2x2 takes the matmul forms."""
  small = _rand(15, 4, 4, 8, 24)
  assert _ops(lambda x, w: F.conv2d_fast(x, w, 2, 1), _rand(16, 1, 2, 2, 8), small) == {"conv_general_dilated"}
  assert _ops(lambda x, w: F.conv_transpose_fast(x, w, 2, 1), _rand(16, 1, 1, 1, 8), small) == {"conv_general_dilated"}
  big = _rand(17, 4, 4, 256, 256) / 64
  assert big.size == F.PATCH_MIN_KERNEL
  x = _rand(18, 1, 2, 2, 256)
  assert _ops(lambda x, w: F.conv2d_fast(x, w, 2, 1), x, big) == {"dot_general"}
  assert _ops(lambda x, w: F.conv_transpose_fast(x, w, 2, 1), x, big) == {"dot_general"}
  check_same_map(lambda x, w: F.conv_transpose_fast(x, w, 2, 1, 0), lambda x, w: ref_conv_transpose(x, w, 2, 1, 0),
                 (x, big), "conv_transpose_fast 2x2 256->256")


@pytest.mark.parametrize("shape,pad", [((2, 16, 16, 3), 1), ((1, 17, 12, 5), 3), ((1, 4, 6, 2), 3)])
def test_reflection_pad(shape, pad):
  x = _rand(11, *shape)
  check_same_map(lambda x: F.reflection_pad(x, pad), lambda x: ref_reflect(x, pad), (x,),
                 f"reflection_pad{shape} pad{pad}")


def test_reflection_pad_edges():
  x = _rand(12, 1, 3, 5, 2)
  assert F.reflection_pad(x, 0) is x
  np.testing.assert_array_equal(np.asarray(F.reflection_pad(x, 1))[0, 0, 1:-1], np.asarray(x)[0, 1])
  with pytest.raises(ValueError):
    F.reflection_pad(x, 3)  # pad >= H


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (1, 17, 12, 20)])
def test_instance_norm(shape):
  x = 3.0 * _rand(13, *shape) + _rand(14, shape[0], 1, 1, shape[3])  # per-channel offsets
  check_same_map(F.instance_norm, ref_instance_norm, (x,), f"instance_norm{shape}")


# ----------------------------------------------------------------------------- against PyTorch itself

@pytest.mark.torch
@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0)])
def test_conv_transpose_matches_torch(k, s, p, op):
  torch = require_torch()
  x, w = _rand(15, 2, 5, 6, 4), _rand(16, k, k, 4, 3)
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
  wt = torch.tensor(np.asarray(w).transpose(2, 3, 0, 1), dtype=torch.float64, requires_grad=True)
  yt = torch.nn.functional.conv_transpose2d(xt, wt, stride=s, padding=p, output_padding=op)
  y, vjp = jax.vjp(lambda x, w: F.conv_transpose(x, w, s, p, op), x, w)
  assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1), f"conv_transpose vs torch k{k} value")
  cot = _rand(17, *y.shape)
  yt.backward(torch.tensor(np.asarray(cot).transpose(0, 3, 1, 2), dtype=torch.float64))
  gx, gw = vjp(cot)
  assert_close(gx, xt.grad.numpy().transpose(0, 2, 3, 1), f"conv_transpose vs torch k{k} grad[x]")
  assert_close(gw, wt.grad.numpy().transpose(2, 3, 0, 1), f"conv_transpose vs torch k{k} grad[kernel]")


@pytest.mark.torch
def test_reflection_pad_and_instance_norm_match_torch():
  torch = require_torch()
  x = 2.0 * _rand(18, 2, 7, 6, 3) + 1.0
  xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), dtype=torch.float64)
  nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)
  assert_close(nchw(F.reflection_pad(x, 3)), torch.nn.functional.pad(xt, (3, 3, 3, 3), mode="reflect").numpy(),
               "reflection_pad vs torch")
  assert_close(nchw(F.instance_norm(x)), torch.nn.functional.instance_norm(xt, eps=1e-5).numpy(),
               "instance_norm vs torch")
