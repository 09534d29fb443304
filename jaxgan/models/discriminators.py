"""pix2pix/CycleGAN discriminators (PatchGAN and PixelGAN), structured as the reference ``networks.py``.

Input ``[N, H, W, input_nc]`` NHWC; output float32 *logits* (no sigmoid):
``[N, H', W', 1]`` patch scores (``H' = H`` for ``pixel``; for ``n_layers``
``H' = floor(H / 2**n_layers) - 2``, e.g. 30x30 for 256x256 with n_layers 3).

Parameter tree (``params``; ``batch_stats`` mirrors the ``norm_*`` entries
with ``mean``/``var`` under batch norm). Conv kernels are ``(kh, kw, in, out)``,
the torch weight permuted ``(2, 3, 1, 0)``. Convs are numbered in the
reference's order; ``norm_<i>`` follows ``conv_<i>``::

  NLayerDiscriminator (basic = n_layers 3):
    conv_0/{kernel,bias}                 4x4 s2, no norm          (torch model.0)
    conv_i/kernel[,bias], norm_i         i = 1..n_layers-1, s2    (model.<3i-1>, model.<3i>)
    conv_<n>/kernel[,bias], norm_<n>     n = n_layers, stride 1   (model.<3n-1>, model.<3n>)
    conv_<n+1>/{kernel,bias}             stride 1 -> 1 channel    (model.<3n+2>)
  PixelDiscriminator (1x1 convs):
    conv_0/{kernel,bias}, conv_1/kernel[,bias], norm_1, conv_2/kernel[,bias]   (net.0, net.2, net.3, net.5)
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgan.config import DISCRIMINATORS  # the one table of choices
from jaxgan.models import antialias, layers
from jaxgan.models.forms import DEFAULT, LayerForms

Dtype = Any


def _check_input(x: jax.Array, input_nc: int, name: str, min_size: int = 1) -> None:
  shape = tuple(x.shape)
  if len(shape) != 4:
    raise ValueError(f"{name}: input must be NHWC [N,H,W,{input_nc}], got shape {shape}")
  if shape[-1] != input_nc:
    raise ValueError(f"{name}: input has {shape[-1]} channels, expected input_nc={input_nc} (shape {shape})")
  if shape[1] < min_size or shape[2] < min_size:
    raise ValueError(f"{name}: input H and W must be at least {min_size}, got shape {shape}")


def patchgan_min_size(n_layers: int) -> int:
  """Smallest H (and W) for which the n_layers PatchGAN gives at least a 1x1 output."""
  return 3 * 2 ** n_layers


class NLayerDiscriminator(nn.Module):
  """Reference ``NLayerDiscriminator``: PatchGAN with ``n_layers`` stride-2 4x4 convs."""
  input_nc: int
  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)
  no_antialias: bool = True   # False: CUT's form, stride-1 convs each followed by antialias.blur_downsample

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    _check_input(x, self.input_nc, f"NLayerDiscriminator(n_layers={self.n_layers})",
                 patchgan_min_size(self.n_layers))
    aa = not self.no_antialias
    init = layers.kernel_init(self.init_type, self.init_gain)
    bias = layers.conv_bias(self.norm)

    def conv(y, features, stride, use_bias, i, dtype=self.dtype):
      return layers.Conv2d(features, 4, stride=stride, padding=1, use_bias=use_bias, kernel_init=init,
                           dtype=dtype, forms=self.forms, name=f"conv_{i}")(y)

    def norm_lrelu(y, i):
      y = layers.make_norm(self.norm, name=f"norm_{i}", gain=self.init_gain, dtype=self.dtype,
                           axis_name=self.axis_name, forms=self.forms)(y, train)
      return nn.leaky_relu(y, 0.2)

    y = nn.leaky_relu(conv(x, self.ndf, 1 if aa else 2, True, 0), 0.2)
    y = antialias.blur_downsample(y) if aa else y
    for i in range(1, self.n_layers + 1):
      stride = 2 if i < self.n_layers and not aa else 1
      y = norm_lrelu(conv(y, self.ndf * min(2 ** i, 8), stride, bias, i), i)
      if aa and i < self.n_layers:
        y = antialias.blur_downsample(y)
    # The logits' conv runs in float32 whatever ``dtype`` (the losses read them).
    return conv(y, 1, 1, True, self.n_layers + 1, jnp.float32)


class PixelDiscriminator(nn.Module):
  """Reference ``PixelDiscriminator`` (1x1 PatchGAN): one logit per pixel."""
  input_nc: int
  ndf: int = 64
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    _check_input(x, self.input_nc, "PixelDiscriminator")
    init = layers.kernel_init(self.init_type, self.init_gain)
    bias = layers.conv_bias(self.norm)
    y = layers.Conv2d(self.ndf, 1, kernel_init=init, dtype=self.dtype, forms=self.forms, name="conv_0")(x)
    y = nn.leaky_relu(y, 0.2)
    y = layers.Conv2d(self.ndf * 2, 1, use_bias=bias, kernel_init=init, dtype=self.dtype, forms=self.forms,
                      name="conv_1")(y)
    y = layers.make_norm(self.norm, name="norm_1", gain=self.init_gain, dtype=self.dtype,
                         axis_name=self.axis_name, forms=self.forms)(y, train)
    y = nn.leaky_relu(y, 0.2)
    # The reference gives this last conv ``bias=use_bias`` too (none under batch norm).
    y = layers.Conv2d(1, 1, use_bias=bias, kernel_init=init, dtype=jnp.float32, forms=self.forms,
                      name="conv_2")(y)   # logits: f32
    return y


def define_D(input_nc: int, ndf: int, netD: str, n_layers_D: int = 3, norm: str = "batch",
             init_type: str = "normal", init_gain: float = 0.02, dtype: Dtype = jnp.float32,
             axis_name: str | None = None, forms: "LayerForms | str" = DEFAULT,
             no_antialias: bool = True) -> nn.Module:
  """Build the reference discriminator ``netD`` ("basic" = 3-layer PatchGAN, "n_layers", "pixel").

  ``no_antialias=False``: CUT's anti-aliased PatchGAN (stride-1 4x4 convs followed by a fixed blur
  downsampler, :mod:`jaxgan.models.antialias`; the same parameters; 30x30 at 256). ``pixel`` has none.

  ``dtype`` is the computation dtype (params, the last conv, the logits and the kernel gradients
  stay float32);
  ``axis_name`` makes BatchNorm use global-batch moments under ``pmap``;
  ``forms``: the XLA:CPU layer forms, as :func:`jaxgan.models.generators.define_G`.
  """
  layers.check_choice("netD", netD, DISCRIMINATORS)
  layers.check_choice("norm", norm, layers.NORMS)
  layers.check_choice("init_type", init_type, layers.INIT_TYPES)
  if int(input_nc) < 1 or int(ndf) < 1:
    raise ValueError(f"define_D: input_nc and ndf must be >= 1, got input_nc={input_nc}, ndf={ndf}")
  common = dict(input_nc=int(input_nc), ndf=int(ndf), norm=norm, init_type=init_type,
                init_gain=float(init_gain), dtype=dtype, axis_name=axis_name, forms=LayerForms.parse(forms))
  if netD == "pixel":
    return PixelDiscriminator(**common)
  n_layers = 3 if netD == "basic" else int(n_layers_D)
  if n_layers < 1:
    raise ValueError(f"define_D: n_layers_D must be >= 1 for netD='n_layers', got {n_layers_D}")
  return NLayerDiscriminator(n_layers=n_layers, no_antialias=bool(no_antialias), **common)
