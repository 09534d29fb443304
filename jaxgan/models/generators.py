"""pix2pix/CycleGAN generators (ResNet and U-Net), structured as the reference ``networks.py``.

Input/output: NHWC; input ``[N, H, W, input_nc]`` with H, W positive multiples
of ``generator_stride(netG)``; output ``[N, H, W, output_nc]`` float32 in
(-1, 1) (tanh). Call as ``module.apply(variables, x, train=...)``.

Parameter tree (``params``; ``batch_stats`` mirrors it with ``mean``/``var``
wherever a BatchNorm sits). Conv kernels are ``(kh, kw, in, out)``; BatchNorm
has ``scale``/``bias``; a ``bias`` exists only where the layer has one.

ResnetGenerator (``resnet_<n>blocks``), in the reference's layer order::

  stem_conv/{kernel,bias}        7x7, after reflect-pad 3     (torch model.1)
  stem_norm/{scale,bias}         batch norm only              (torch model.2)
  down_0_conv, down_0_norm       3x3 s2, ngf -> 2 ngf         (model.4, model.5)
  down_1_conv, down_1_norm       3x3 s2, 2 ngf -> 4 ngf       (model.7, model.8)
  block_<i>/conv_0, norm_0, conv_1, norm_1                    (model.<10+i>.conv_block.{1,2,5,6};
                                                              with dropout {1,2,6,7})
  up_0_conv, up_0_norm           ConvTranspose 4 ngf -> 2 ngf (model.<10+n>, <11+n>)
  up_1_conv, up_1_norm           ConvTranspose 2 ngf -> ngf   (model.<13+n>, <14+n>)
  head_conv/{kernel,bias}        7x7 -> output_nc, after reflect-pad 3 (model.<17+n>)

UnetGenerator (``unet_<2**num_downs>``): the skip-connection recursion, one
nested module per level, ``level_0`` outermost .. ``level_<num_downs-1>``
innermost; each level holds ``down`` (encoder half), ``up`` (decoder half) and
its child level. Torch keys: the outermost block is ``model.model``, a child
block sits at index 1 of the outermost Sequential and index 3 of the others::

  level_0/down/conv/kernel[,bias]              (torch model.model.0)
  level_0/up/conv/{kernel,bias}                (torch model.model.3)
  level_0/level_1/down/conv, down/norm         (model.model.1.model.{1,2})
  level_0/level_1/up/conv, up/norm             (model.model.1.model.{5,6})
  level_0/level_1/level_2/...                  (model.model.1.model.3.model...)
  innermost: down/conv, up/conv, up/norm       (.model.{1,3,4}; no down/norm)

Resnet ``up_<i>_conv`` and U-Net ``up/conv`` are ``layers.ConvTranspose2d``: the
kernel ``(kh, kw, in, out)`` equals the torch ConvTranspose2d weight
``(in, out, kh, kw)`` permuted ``(2, 3, 0, 1)`` with NO spatial flip (the layer
flips internally). Plain conv kernels are the torch weight permuted ``(2, 3, 1, 0)``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxgan.config import generator_stride, parse_netG  # noqa: F401  (the one netG grammar)
from jaxgan.models import antialias, layers
from jaxgan.models.forms import DEFAULT, LayerForms

Dtype = Any


def _check_input(x: jax.Array, input_nc: int, stride: int, min_size: int, netG: str) -> None:
  shape = tuple(x.shape)
  if len(shape) != 4:
    raise ValueError(f"{netG}: input must be NHWC [N,H,W,{input_nc}], got shape {shape}")
  if shape[-1] != input_nc:
    raise ValueError(f"{netG}: input has {shape[-1]} channels, expected input_nc={input_nc} (shape {shape})")
  for dim, size in (("H", shape[1]), ("W", shape[2])):
    if size < min_size or size % stride:
      raise ValueError(f"{netG}: input {dim}={size} must be a positive multiple of {stride}"
                       f"{f' and at least {min_size}' if min_size > stride else ''} (shape {shape})")


class ResnetBlock(nn.Module):
  """x + [reflect-pad 1, conv3x3, norm, ReLU, (dropout .5), reflect-pad 1, conv3x3, norm](x)."""
  dim: int
  norm: str = "batch"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    conv = dict(features=self.dim, kernel_size=3, use_bias=layers.conv_bias(self.norm),
                kernel_init=layers.kernel_init(self.init_type, self.init_gain), dtype=self.dtype, forms=self.forms)
    nrm = dict(gain=self.init_gain, dtype=self.dtype, axis_name=self.axis_name, forms=self.forms)
    y = layers.Conv2d(**conv, name="conv_0")(layers.reflection_pad(x, 1, self.forms))
    y = nn.relu(layers.make_norm(self.norm, name="norm_0", **nrm)(y, train))
    if self.use_dropout:
      y = nn.Dropout(0.5, deterministic=not train)(y)
    y = layers.Conv2d(**conv, name="conv_1")(layers.reflection_pad(y, 1, self.forms))
    y = layers.make_norm(self.norm, name="norm_1", **nrm)(y, train)
    return x + y


class ResnetGenerator(nn.Module):
  """Reference ``ResnetGenerator`` (2 downsamplings, ``n_blocks`` residual blocks, reflect padding).

  ``no_antialias=False`` / ``no_antialias_up=False`` give CUT's anti-aliased forms (same parameters,
  same names): down = 3x3 conv stride 1, norm, ReLU, :func:`antialias.blur_downsample`; up =
  :func:`antialias.blur_upsample`, 3x3 conv (``up_<i>_conv`` is then a ``Conv2d``), norm, ReLU.

  ``features``: indices into the authors' ``nn.Sequential`` (CUT's ``nce_layers``, e.g.
  ``(0, 4, 8, 12, 16)``); when given, the call returns the list of those layers' outputs (in
  ``features`` order) and stops after the last one, as the authors' ``encode_only``. The Sequential is
  ``[pad, conv, norm, relu]``, per down ``[conv, norm, relu(, Downsample)]``, one entry per block, per
  up ``[(Upsample,) conv, norm, relu]``, ``[pad, conv, tanh]``. A norm's output tapped where an
  in-place ReLU follows is the ReLU's output, as in the authors' code (the list holds the same tensor),
  unless it is the last index (they return before that ReLU runs).
  """
  input_nc: int
  output_nc: int
  ngf: int = 64
  n_blocks: int = 9
  norm: str = "batch"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  remat: bool = False
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)
  no_antialias: bool = True
  no_antialias_up: bool = True

  @property
  def netG(self) -> str:
    return f"resnet_{self.n_blocks}blocks"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True, features: tuple[int, ...] = ()) -> Any:
    # 8 = 2 * stride: the residual blocks reflect-pad by 1 at H/4, which needs H/4 >= 2.
    _check_input(x, self.input_nc, 4, 8, self.netG)
    bias = layers.conv_bias(self.norm)
    init = layers.kernel_init(self.init_type, self.init_gain)
    init_t = layers.kernel_init(self.init_type, self.init_gain, transposed=True)
    nrm = dict(gain=self.init_gain, dtype=self.dtype, axis_name=self.axis_name, forms=self.forms)
    ngf, forms = self.ngf, self.forms
    wanted = tuple(int(i) for i in features)
    taps: dict[int, jax.Array] = {}
    count = [0]

    class _Done(Exception):
      pass

    def emit(y, inplace=False):
      """One layer of the authors' Sequential produced ``y`` (``inplace``: a ReLU(True) over the previous)."""
      i = count[0]
      if inplace and i - 1 in taps:
        taps[i - 1] = y
      if i in wanted:
        taps[i] = y
      count[0] += 1
      if wanted and i == max(wanted):   # the authors return right after the last wanted layer
        raise _Done
      return y

    def norm_relu(y, name):
      y = emit(layers.make_norm(self.norm, name=name, **nrm)(y, train))
      return emit(nn.relu(y), inplace=True)

    try:
      y = emit(layers.reflection_pad(x, 3, forms))
      y = emit(layers.Conv2d(ngf, 7, use_bias=bias, kernel_init=init, dtype=self.dtype, forms=forms,
                             name="stem_conv")(y))
      y = norm_relu(y, "stem_norm")
      for i in range(2):
        y = emit(layers.Conv2d(ngf * 2 ** (i + 1), 3, stride=2 if self.no_antialias else 1, padding=1,
                               use_bias=bias, kernel_init=init, dtype=self.dtype, forms=forms,
                               name=f"down_{i}_conv")(y))
        y = norm_relu(y, f"down_{i}_norm")
        if not self.no_antialias:
          y = emit(antialias.blur_downsample(y))
      block_cls = nn.remat(ResnetBlock, static_argnums=(2,)) if self.remat else ResnetBlock
      for i in range(self.n_blocks):
        y = emit(block_cls(ngf * 4, norm=self.norm, use_dropout=self.use_dropout, init_type=self.init_type,
                           init_gain=self.init_gain, dtype=self.dtype, axis_name=self.axis_name,
                           forms=forms, name=f"block_{i}")(y, train))
      for i in range(2):
        out = ngf * 4 // 2 ** (i + 1)
        if self.no_antialias_up:
          y = emit(layers.ConvTranspose2d(out, 3, stride=2, padding=1, output_padding=1, use_bias=bias,
                                          kernel_init=init_t, dtype=self.dtype, forms=forms,
                                          name=f"up_{i}_conv")(y))
        else:
          y = emit(antialias.blur_upsample(y))
          y = emit(layers.Conv2d(out, 3, padding=1, use_bias=bias, kernel_init=init, dtype=self.dtype,
                                 forms=forms, name=f"up_{i}_conv")(y))
        y = norm_relu(y, f"up_{i}_norm")
      # The head (conv + tanh) runs in float32 whatever ``dtype``: the images and the losses on them.
      y = emit(layers.reflection_pad(y, 3, forms))
      y = emit(layers.Conv2d(self.output_nc, 7, use_bias=True, kernel_init=init, dtype=jnp.float32,
                             forms=forms, name="head_conv")(y))
      y = emit(jnp.tanh(y))
    except _Done:
      pass
    if not wanted:
      return y
    missing = [i for i in wanted if i not in taps]
    if missing:
      raise ValueError(f"{self.netG}: features {missing} are past its last layer ({count[0] - 1})")
    return [taps[i] for i in wanted]


class UnetDown(nn.Module):
  """Encoder half of a U-Net level: [LeakyReLU .2], 4x4 s2 p1 conv, [norm]."""
  features: int
  activation: bool = True
  use_norm: bool = True
  use_bias: bool = False
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    y = nn.leaky_relu(x, 0.2) if self.activation else x
    y = layers.Conv2d(self.features, 4, stride=2, padding=1, use_bias=self.use_bias, dtype=self.dtype,
                      kernel_init=layers.kernel_init(self.init_type, self.init_gain), forms=self.forms,
                      name="conv")(y)
    if self.use_norm:
      y = layers.make_norm(self.norm, name="norm", gain=self.init_gain, dtype=self.dtype,
                           axis_name=self.axis_name, forms=self.forms)(y, train)
    return y


class UnetUp(nn.Module):
  """Decoder half of a U-Net level: ReLU, 4x4 s2 p1 ConvTranspose, then norm [+ dropout .5], or tanh."""
  features: int
  outermost: bool = False
  use_dropout: bool = False
  use_bias: bool = False
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    # The outermost level is the head (conv + tanh): float32 whatever ``dtype``.
    y = layers.ConvTranspose2d(self.features, 4, stride=2, padding=1, use_bias=self.use_bias,
                               dtype=jnp.float32 if self.outermost else self.dtype,
                               kernel_init=layers.kernel_init(self.init_type, self.init_gain, transposed=True),
                               forms=self.forms, name="conv")(nn.relu(x))
    if self.outermost:
      return jnp.tanh(y)
    y = layers.make_norm(self.norm, name="norm", gain=self.init_gain, dtype=self.dtype,
                         axis_name=self.axis_name, forms=self.forms)(y, train)
    if self.use_dropout:
      y = nn.Dropout(0.5, deterministic=not train)(y)
    return y


class UnetSkipConnectionBlock(nn.Module):
  """One level of the reference U-Net recursion (``level`` 0 = outermost).

  ``channels[level]`` is this level's inner width; the outer width is
  ``channels[level - 1]`` (``output_nc`` for the outermost level). The level
  computes ``up(sub(down(x)))`` (``up(down(x))`` innermost) and, unless
  outermost, returns ``concat([x, that])`` on channels. With ``remat`` the
  ``down`` and ``up`` halves of every level are checkpointed (not the nested
  recursion, which would recompute inner levels once per enclosing level).
  """
  level: int
  channels: tuple[int, ...]
  output_nc: int
  norm: str = "batch"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  remat: bool = False
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    depth = len(self.channels)
    outermost, innermost = self.level == 0, self.level == depth - 1
    outer = self.output_nc if outermost else self.channels[self.level - 1]
    bias = layers.conv_bias(self.norm)
    opts = dict(norm=self.norm, init_type=self.init_type, init_gain=self.init_gain, dtype=self.dtype,
                axis_name=self.axis_name, forms=self.forms)
    down_cls = nn.remat(UnetDown, static_argnums=(2,)) if self.remat else UnetDown
    up_cls = nn.remat(UnetUp, static_argnums=(2,)) if self.remat else UnetUp

    y = down_cls(self.channels[self.level], activation=not outermost, use_norm=not (outermost or innermost),
                 use_bias=bias, name="down", **opts)(x, train)
    if not innermost:
      y = UnetSkipConnectionBlock(self.level + 1, self.channels, self.output_nc, use_dropout=self.use_dropout,
                                  remat=self.remat, name=f"level_{self.level + 1}", **opts)(y, train)
    # Dropout sits in the num_downs - 5 intermediate ngf*8 -> ngf*8 levels (levels 4 .. depth-2),
    # as in the reference; not in the innermost level nor the ngf*4 / ngf*2 / ngf levels.
    dropout = self.use_dropout and 4 <= self.level < depth - 1
    y = up_cls(outer, outermost=outermost, use_dropout=dropout, use_bias=bias or outermost, name="up",
               **opts)(y, train)
    return y if outermost else jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


def unet_channels(ngf: int, num_downs: int) -> tuple[int, ...]:
  """Inner widths from outermost to innermost: ngf, 2ngf, 4ngf, then 8ngf (num_downs - 4 times)."""
  if num_downs < 5:
    raise ValueError(f"a U-Net needs num_downs >= 5 (unet_32 or larger), got num_downs={num_downs}")
  return (ngf, ngf * 2, ngf * 4) + (ngf * 8,) * (num_downs - 3)


class UnetGenerator(nn.Module):
  """Reference ``UnetGenerator``: ``num_downs`` stride-2 levels (1x1 bottleneck at H = 2**num_downs)."""
  input_nc: int
  output_nc: int
  num_downs: int = 8
  ngf: int = 64
  norm: str = "batch"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02
  dtype: Dtype = jnp.float32
  remat: bool = False
  axis_name: str | None = None
  forms: LayerForms = DEFAULT   # the XLA:CPU hook (layers.cpu_form)

  @property
  def netG(self) -> str:
    return f"unet_{2 ** self.num_downs}"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    stride = 2 ** self.num_downs
    _check_input(x, self.input_nc, stride, stride, self.netG)
    y = UnetSkipConnectionBlock(0, unet_channels(self.ngf, self.num_downs), self.output_nc, norm=self.norm,
                  use_dropout=self.use_dropout, init_type=self.init_type, init_gain=self.init_gain,
                  dtype=self.dtype, remat=self.remat, axis_name=self.axis_name, forms=self.forms,
                  name="level_0")(x, train)
    return y.astype(jnp.float32)


def define_G(input_nc: int, output_nc: int, ngf: int, netG: str, norm: str = "batch",
             use_dropout: bool = False, init_type: str = "normal", init_gain: float = 0.02,
             dtype: Dtype = jnp.float32, remat: bool = False, axis_name: str | None = None,
             no_antialias: bool = True, no_antialias_up: bool = True,
             forms: "LayerForms | str" = DEFAULT) -> nn.Module:
  """Build the reference generator ``netG`` as a Linen module (params created by ``module.init``).

  ``no_antialias`` / ``no_antialias_up`` False give CUT's anti-aliased ResNet down/upsampling
  (:class:`ResnetGenerator`); the U-Net has no anti-aliased form (the authors' ignores the options).

  ``dtype`` is the computation dtype (params, the head conv + tanh, the output and the kernel
  gradients stay float32);
  ``remat`` recomputes each residual block / U-Net level in the backward pass;
  ``axis_name`` makes BatchNorm use global-batch moments under ``pmap``;
  ``forms``: the XLA:CPU layer forms (a :class:`~jaxgan.models.forms.LayerForms` or its string;
  default :data:`~jaxgan.models.forms.DEFAULT`; programs for other platforms are always plain).
  """
  kind, n = parse_netG(netG)
  layers.check_choice("norm", norm, layers.NORMS)
  layers.check_choice("init_type", init_type, layers.INIT_TYPES)
  for key, val in (("input_nc", input_nc), ("output_nc", output_nc), ("ngf", ngf)):
    if int(val) < 1:
      raise ValueError(f"define_G: {key} must be >= 1, got {val}")
  common = dict(input_nc=int(input_nc), output_nc=int(output_nc), ngf=int(ngf), norm=norm,
                use_dropout=bool(use_dropout), init_type=init_type, init_gain=float(init_gain),
                dtype=dtype, remat=bool(remat), axis_name=axis_name, forms=LayerForms.parse(forms))
  if kind == "resnet":
    return ResnetGenerator(n_blocks=n, no_antialias=bool(no_antialias), no_antialias_up=bool(no_antialias_up),
                           **common)
  return UnetGenerator(num_downs=n, **common)
