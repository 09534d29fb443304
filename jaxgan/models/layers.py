"""Layer building blocks of the pix2pix/CycleGAN networks (Flax Linen, NHWC).

This module owns every layer *kind* the generators and discriminators use, each
in one small class or function so that a faster formulation can be swapped in
without touching the networks or the parameter tree:

* ``Conv2d``          -- torch ``Conv2d`` with symmetric zero padding.
* ``ConvTranspose2d`` -- torch ``ConvTranspose2d(k, s, p, output_padding)``,
  same output size and same linear map (kernel layout documented on the class).
* ``reflection_pad``  -- torch ``ReflectionPad2d``.
* ``BatchNorm``       -- torch ``BatchNorm2d`` semantics exactly (see class).
* ``InstanceNorm``    -- torch ``InstanceNorm2d`` defaults (no affine, no stats).
* ``Identity``        -- ``norm="none"``.
* ``kernel_init`` / ``bn_scale_init`` -- the reference ``init_weights`` in one place.

Computation runs in ``dtype`` (e.g. bfloat16); parameters are always float32
and normalisation statistics are always computed in float32; below float32 the
conv layers compute their kernel gradients and bias adds in float32
(:func:`lowp_linear`, :func:`add_bias`).

The one hook for XLA:CPU: ``Conv2d``, ``ConvTranspose2d``, ``reflection_pad`` and
``InstanceNorm`` compute the plain math below, except where :func:`cpu_form` says
to use the equal-math XLA:CPU form of :mod:`jaxgan.cpu.fast_ops` (same
parameters, same values and gradients up to float rounding). That happens only in
programs compiled for CPU devices (:func:`target_platform`: the devices the step is
compiled for, not the host) and as the module's ``forms`` field
(:class:`jaxgan.models.forms.LayerForms`, default :data:`jaxgan.models.forms.DEFAULT`)
says, per family and per layer shape -- an explicit value of the network, not process
state. :func:`recording_layers` lists the (family, shape key) pairs a trace asks
about, which is how a run learns the shapes to decide. Everything that steers
XLA (barriers, scheduling dependencies, tap matmuls) lives in ``fast_ops``.
"""
from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgan.config import INIT_TYPES, NORMS, check_choice  # noqa: F401  (the one table of choices)
from jaxgan.cpu import fast_ops as F
from jaxgan.models.forms import DEFAULT, LayerForms, conv_key, conv_transpose_key, norm_key, pad_key

Dtype = Any
Initializer = Callable[..., jax.Array]


# ----------------------------------------------------------------------------- the layer-forms hook

_RECORDING: contextvars.ContextVar = contextvars.ContextVar("jaxgan_layer_shapes", default=None)


def cpu_form(forms: LayerForms, family: str, shape: str | None = None) -> bool:
  """THE HOOK: whether a layer of ``family`` at layer shape ``shape`` (a key of
  :mod:`jaxgan.models.forms`; None: the family's form) runs its XLA:CPU form
  (:mod:`jaxgan.cpu.fast_ops`) instead of the plain math: only in programs compiled for CPU
  devices (:func:`target_platform`), and there as the module's ``forms`` field says."""
  calls = _RECORDING.get()
  if calls is not None and shape is not None:
    calls[(family, shape)] += 1
  return target_platform() == "cpu" and forms.use_fast(family, shape)


@contextlib.contextmanager
def recording_layers():
  """Within the block, count each ``(family, shape key)`` the traced layers ask :func:`cpu_form`
  about (yields the ``collections.Counter``). Only observes: the forms are the modules' own."""
  calls: collections.Counter = collections.Counter()
  token = _RECORDING.set(calls)
  try:
    yield calls
  finally:
    _RECORDING.reset(token)


def target_platform() -> str:
  """The platform of the devices the program being traced is compiled for ("cpu", "gpu", "tpu", ...).

  That is the device platform of the current abstract mesh when it names one --
  :func:`jaxgan.parallel.jit_train_step` traces under its mesh's, and
  ``jax.sharding.use_abstract_mesh(AbstractMesh(..., abstract_device=AbstractDevice(..., platform="gpu")))``
  sets it by hand (JAX then also lowers for that platform) -- else the process's default
  backend. So a step traced on a CPU host for GPU/TPU devices carries the plain forms.
  """
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  platform = getattr(device, "platform", None)
  return str(platform) if platform else jax.default_backend()


# ----------------------------------------------------------------------------- init

def kernel_init(init_type: str = "normal", gain: float = 0.02, *, transposed: bool = False) -> Initializer:
  """Initializer of a conv kernel of shape ``(kh, kw, in, out)``, as the reference ``init_weights``.

  ``normal``: N(0, gain); ``xavier``: xavier normal with gain (variance
  gain**2 * 2 / (fan_in + fan_out)); ``kaiming``: kaiming normal, fan_in, a=0
  (std sqrt(2 / fan_in), gain unused as in the reference); ``orthogonal``:
  orthogonal with scale ``gain``. Fans are counted as torch counts them on its
  own weight layout: for a transposed conv torch's weight is ``(in, out, kh, kw)``
  so its "fan_in" is ``out * kh * kw`` -- ``transposed=True`` reproduces that.
  """
  in_axis, out_axis = (-1, -2) if transposed else (-2, -1)
  if init_type == "normal":
    return nn.initializers.normal(stddev=gain)
  if init_type == "xavier":
    return nn.initializers.variance_scaling(gain ** 2, "fan_avg", "normal", in_axis=in_axis, out_axis=out_axis)
  if init_type == "kaiming":
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal", in_axis=in_axis, out_axis=out_axis)
  if init_type == "orthogonal":
    return nn.initializers.orthogonal(scale=gain, column_axis=out_axis)
  raise ValueError(f"init_type must be one of {INIT_TYPES}, got {init_type!r}")


def bn_scale_init(gain: float = 0.02) -> Initializer:
  """BatchNorm scale ~ N(1, gain) (the reference, whatever ``init_type``)."""
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + gain * jax.random.normal(key, shape, dtype)
  return init


def conv_bias(norm: str) -> bool:
  """Whether the reference's ``bias=use_bias`` convolutions get a bias for this norm.

  The reference sets ``use_bias = (norm is InstanceNorm2d)``: with batch norm
  those convs have no bias (the norm's shift replaces it). With ``norm="none"``
  the reference also drops the bias -- a quirk of how it builds the identity
  norm -- which leaves those convs without any shift; we deliberately KEEP the
  bias for ``"none"``. Only ``"batch"`` removes it, so the parameter counts of
  the batch and instance variants are exactly the reference's.
  """
  return norm != "batch"


# ----------------------------------------------------------------------------- mixed precision

def lowp_linear(fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, kernel: jax.Array,
                dtype: Dtype) -> jax.Array:
  """``fn(x, kernel)`` (a conv, linear in each argument) computed in ``dtype``, float32 ``kernel``.

  float32: exactly ``fn(x.astype(float32), kernel)``. A lower ``dtype`` (bfloat16): the forward
  and the input gradient run in ``dtype``, while the kernel gradient is computed from the same
  bf16 values as float32 operands -- products exact, float32 accumulation and a float32 result,
  so the weight gradient (and its cross-device reduction, and the sum over a network's uses)
  is never rounded to bf16. It runs at the default matmul precision: on a TPU that is one
  bf16 pass (the operands are bf16 values), on a GPU TF32, exact for them too.
  """
  if jnp.dtype(dtype) == jnp.float32:
    return fn(x.astype(jnp.float32), kernel)
  return _lowp(fn, x.astype(dtype), kernel)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lowp(fn, x, kernel):
  return fn(x, kernel.astype(x.dtype))


def _lowp_fwd(fn, x, kernel):
  return _lowp(fn, x, kernel), (x, kernel)


def _lowp_bwd(fn, res, g):
  x, kernel = res
  dx = jax.vjp(lambda t: fn(t, kernel.astype(x.dtype)), x)[1](g)[0]
  with jax.default_matmul_precision("bfloat16"):    # bf16-valued operands: one bf16 pass is exact
    dk = jax.vjp(lambda k: fn(x.astype(jnp.float32), k), kernel)[1](g.astype(jnp.float32))[0]
  return dx, dk.astype(kernel.dtype)


_lowp.defvjp(_lowp_fwd, _lowp_bwd)


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
  """``y + bias`` in ``y``'s dtype; below float32 the add (and so the bias gradient's sum) is float32."""
  if y.dtype == jnp.float32:
    return y + bias.astype(jnp.float32)
  return (y.astype(jnp.float32) + bias.astype(jnp.float32)).astype(y.dtype)


# ----------------------------------------------------------------------------- convs

class Conv2d(nn.Module):
  """torch ``Conv2d(in, features, kernel_size, stride, padding)`` on NHWC input.

  Params: ``kernel`` ``(kh, kw, in, features)`` (torch weight ``(out, in, kh, kw)``
  permuted ``(2, 3, 1, 0)``), ``bias`` ``(features,)`` when ``use_bias``.
  Output size ``floor((H + 2p - k) / s) + 1`` like torch.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  forms: LayerForms = DEFAULT

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, p = self.kernel_size, self.padding
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), self.param_dtype)
    conv = functools.partial(F.conv2d, stride=self.stride, padding=p)
    key = conv_key(x.shape, kernel.shape, self.stride, p)
    if cpu_form(self.forms, "conv", key):   # hook: the XLA:CPU form (same math)
      taps = cpu_form(self.forms, "conv_wgrad", key)
      conv = functools.partial(F.conv2d_fast, stride=self.stride, padding=p, wgrad_taps=taps)
    y = lowp_linear(conv, x, kernel, self.dtype)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = add_bias(y, bias)
    return y


class ConvTranspose2d(nn.Module):
  """torch ``ConvTranspose2d(in, features, k, stride, padding, output_padding)`` on NHWC.

  Output size ``(H - 1) * s - 2p + k + output_padding`` exactly as torch.

  Kernel layout: ``kernel`` has shape ``(kh, kw, in, features)`` and holds the
  torch weight ``(in, out, kh, kw)`` permuted ``(2, 3, 0, 1)`` -- NOT flipped:
  ``kernel[i, j, c, o] == torch_weight[c, o, i, j]``. The forward computes the
  transposed convolution exactly as torch defines it (the gradient of a
  ``Conv2d``), i.e. input dilated by ``s``, padded ``k-1-p`` before and
  ``k-1-p+output_padding`` after, and correlated with the spatially flipped
  kernel. ``bias`` ``(features,)`` when ``use_bias``.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  use_bias: bool = True
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  forms: LayerForms = DEFAULT

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, p, op = self.kernel_size, self.stride, self.padding, self.output_padding
    if not (0 <= p <= k - 1 and 0 <= op < max(s, 1)):
      raise ValueError(f"ConvTranspose2d: need 0 <= padding <= k-1 and 0 <= output_padding < stride, "
                       f"got k={k}, stride={s}, padding={p}, output_padding={op}")
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), self.param_dtype)
    fast = cpu_form(self.forms, "conv_transpose", conv_transpose_key(x.shape, kernel.shape, s, p, op))   # hook
    transpose = F.conv_transpose_fast if fast else F.conv_transpose_plain
    y = lowp_linear(functools.partial(transpose, stride=s, padding=p, output_padding=op), x, kernel, self.dtype)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = add_bias(y, bias)
    return y


def reflection_pad(x: jax.Array, pad: int, forms: LayerForms = DEFAULT) -> jax.Array:
  """torch ``ReflectionPad2d(pad)`` on NHWC (edge not repeated); needs ``pad < H, W``."""
  if pad >= x.shape[1] or pad >= x.shape[2]:
    raise ValueError(f"reflection padding {pad} needs H and W > {pad}, got shape {tuple(x.shape)}")
  return F.reflection_pad(x, pad) if cpu_form(forms, "pad", pad_key(x.shape, pad)) else F.reflection_pad_plain(x, pad)  # hook


# ----------------------------------------------------------------------------- norms

@dataclasses.dataclass(frozen=True)
class BatchGroups:
  """How BatchNorm forms its training statistics, passed where the networks take ``axis_name``.

  ``size``: statistics over consecutive groups of ``size`` images of the global
  batch (0: the whole batch; 1: each image alone, the reference's batch-1
  training and its test mode). ``axis_name``: the device axis the global batch
  is split over (None on one device). A plain ``axis_name`` string (or None)
  means ``BatchGroups(0, axis_name)``; :func:`batch_groups` builds the value.
  """
  size: int = 0
  axis_name: str | None = None


def batch_groups(axis_name: str | None, group_size: int = 0) -> "str | None | BatchGroups":
  """The networks' ``axis_name`` value for BatchNorm groups of ``group_size`` (0: a plain ``axis_name``)."""
  if int(group_size) < 0:
    raise ValueError(f"bn_group_size must be >= 0 (0: the whole batch), got {group_size}")
  return BatchGroups(int(group_size), axis_name) if int(group_size) > 0 else axis_name


class BatchNorm(nn.Module):
  """torch ``BatchNorm2d`` (eps 1e-5, momentum 0.1, affine, running stats) on NHWC.

  ``train=True``: normalise with the batch mean and *biased* batch variance over
  (N, H, W) and update ``running = (1 - momentum) * running + momentum * batch``
  where the variance entering the running average is the *unbiased* one
  (times n / (n - 1)), as torch does. ``train=False``: normalise with the
  running statistics. With ``axis_name`` set (pmap, or the per-device body of
  :func:`jaxgan.parallel.per_device_step`), the statistics are those of the
  global batch, from one collective per layer: an all-gather of each device's
  per-channel (mean, sum of squared deviations), 2 x C floats, combined exactly
  on every device (the plain (sum x, sum x^2) of one all-reduce lose digits
  where the mean is large against the spread).

  ``group_size`` k > 0: statistics over consecutive groups of k images of the
  global batch instead (k = 1: each image alone, the paper's batch-1 training
  and the reference's test mode, at any batch size and device count; a batch
  smaller than k is one group). Groups within a device need no communication;
  groups spanning devices gather their devices' moments as above. The running
  statistics then average the groups' mean and unbiased variance.
  Statistics are float32. Params ``scale``, ``bias``; collection
  ``batch_stats`` holds ``mean`` (init 0) and ``var`` (init 1).
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  scale_init: Initializer = bn_scale_init(0.02)
  axis_name: str | None = None
  group_size: int = 0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    c = x.shape[-1]
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    scale = self.param("scale", self.scale_init, (c,), self.param_dtype).astype(jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype).astype(jnp.float32)
    xf = x.astype(jnp.float32)
    if train:
      # No cross-device reduction at init (often run outside pmap), as Flax's BatchNorm does.
      axis = None if self.is_initializing() else self.axis_name
      mean, var, run_mean, run_var = _train_moments(xf, axis, self.group_size)
      if not self.is_initializing():
        m = self.momentum
        running_mean.value = (1.0 - m) * running_mean.value + m * run_mean
        running_var.value = (1.0 - m) * running_var.value + m * run_var
    else:
      mean, var = running_mean.value, running_var.value
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    if mean.ndim > 1:   # per group: [G, 1, 1, 1, C] against the batch as [G, k, H, W, C]
      y = xf.reshape(mean.shape[0], -1, *xf.shape[1:]) * mul + (bias - mean * mul)
      return y.reshape(xf.shape).astype(self.dtype)
    y = xf * mul + (bias - mean * mul)
    return y.astype(self.dtype)


def _unbiased(var: jax.Array, n: float) -> jax.Array:
  return var * (n / max(n - 1.0, 1.0))


def _train_moments(xf: jax.Array, axis_name: str | None, group_size: int):
  """(mean, biased var) to normalise with, and (mean, unbiased var) for the running averages.

  ``xf``: [N, H, W, C] float32, this device's rows of the global batch. Whole
  batch (``group_size`` 0): mean/var [C]. Groups: [N/k, 1, 1, 1, C] when the
  groups lie within the device, [C] (this device's group) when they span
  devices. The running pair is [C] and the same on every device.
  """
  n_local, hw = xf.shape[0], xf.shape[1] * xf.shape[2]
  devices = 1 if axis_name is None else jax.lax.axis_size(axis_name)
  total = n_local * devices
  k = total if group_size <= 0 else min(int(group_size), total)
  if total % k or (n_local % k and k % n_local):
    raise ValueError(f"bn_group_size={group_size}: BatchNorm groups must split the batch of {total} images "
                     f"({n_local} per device on {devices}) evenly, within or across devices")
  if n_local % k == 0 and (k < total or axis_name is None):
    # Groups within this device: two-pass moments per group, no communication for the forward.
    n = float(k * hw)
    if k == n_local:
      mean = jnp.mean(xf, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
      run = jnp.stack([mean, _unbiased(var, n)])
    else:
      g = xf.reshape(n_local // k, k, *xf.shape[1:])
      mean = jnp.mean(g, axis=(1, 2, 3), keepdims=True)                          # [N/k, 1, 1, 1, C]
      var = jnp.mean(jnp.square(g - mean), axis=(1, 2, 3), keepdims=True)
      run = jnp.stack([jnp.mean(mean, axis=(0, 1, 2, 3)), jnp.mean(_unbiased(var, n), axis=(0, 1, 2, 3))])
    if axis_name is not None:   # every device's groups enter the running averages (not on the forward's path)
      run = jax.lax.pmean(run, axis_name)
    return mean, var, run[0], run[1]
  # Groups of k images spanning k / n_local devices (or the whole batch): one all-gather of each device's
  # per-channel (mean, sum of squared deviations), combined exactly (Chan et al.) on every device; the
  # plain sums (sum x, sum x^2) would lose digits to cancellation where the mean is large against the spread.
  m_i = jnp.mean(xf, axis=(0, 1, 2))
  m2_i = jnp.sum(jnp.square(xf - m_i), axis=(0, 1, 2))
  per = k // n_local                                                             # devices per group
  gathered = jax.lax.all_gather(jnp.stack([m_i, m2_i]), axis_name)               # [D, 2, C]
  gathered = gathered.reshape(total // k, per, *gathered.shape[1:])              # [groups, per, 2, C]
  g_mean = jnp.mean(gathered[:, :, 0], axis=1)                                   # [groups, C]
  spread = jnp.sum(jnp.square(gathered[:, :, 0] - g_mean[:, None]), axis=1)
  n = float(k * hw)
  g_var = (jnp.sum(gathered[:, :, 1], axis=1) + float(n_local * hw) * spread) / n
  mine = jax.lax.axis_index(axis_name) // per
  return g_mean[mine], g_var[mine], jnp.mean(g_mean, axis=0), jnp.mean(_unbiased(g_var, n), axis=0)


class InstanceNorm(nn.Module):
  """torch ``InstanceNorm2d`` defaults: per image, per channel over (H, W), biased
  variance, eps 1e-5, no affine parameters, no running stats (``train`` unused)."""
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  forms: LayerForms = DEFAULT

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train
    fast = cpu_form(self.forms, "instance_norm", norm_key(x.shape))   # hook
    norm = F.instance_norm if fast else F.instance_norm_plain
    return norm(x, self.epsilon).astype(self.dtype)


class Identity(nn.Module):
  """``norm="none"``: no parameters, output = input."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    del train
    return x


def make_norm(norm: str, *, name: str, gain: float = 0.02, dtype: Dtype = jnp.float32,
              axis_name: "str | None | BatchGroups" = None, forms: LayerForms = DEFAULT) -> nn.Module:
  """The norm layer for ``norm`` in {"batch", "instance", "none"}; call as ``layer(x, train)``.

  ``axis_name``: the device axis BatchNorm reduces over, or a :class:`BatchGroups`.
  """
  check_choice("norm", norm, NORMS)
  if norm == "batch":
    groups = axis_name if isinstance(axis_name, BatchGroups) else BatchGroups(0, axis_name)
    return BatchNorm(scale_init=bn_scale_init(gain), axis_name=groups.axis_name, group_size=groups.size,
                     dtype=dtype, name=name)
  if norm == "instance":
    return InstanceNorm(dtype=dtype, forms=forms, name=name)
  return Identity(name=name)
