"""The reference networks' layouts: which torch module (state_dict prefix) is which Flax module.

One table per network family, in the order of the authors' ``nn.Sequential`` (so the keys of a
``state_dict`` follow from the options the network was built with):

* ResNet generators (``resnet_<n>blocks``) of pix2pix/CycleGAN and of CUT
  (taesungp/contrastive-unpaired-translation, ``models/networks.py``). CUT's default is
  anti-aliased: each down step is ``[Conv2d 3x3 s1, norm, ReLU, Downsample]`` and each up step
  ``[Upsample, Conv2d 3x3, norm, ReLU]``; ``--no_antialias`` gives the plain stride-2 down steps,
  ``--no_antialias_up`` the plain ``ConvTranspose2d`` up steps (both: the pix2pix/CycleGAN layout).
  ``Downsample(C)`` / ``Upsample(C)`` hold no parameters, only a fixed blur as the buffer ``filt``
  (``[C, 1, 3, 3]`` = ``[1,2,1]^2/16``; ``[C, 1, 4, 4]`` = ``[1,3,3,1]^2/64 * 4``);
* U-Net generators (``unet_<N>``; CUT's has no anti-aliased form);
* PatchGAN (``basic``, ``n_layers``), anti-aliased in CUT (stride-1 convs, each but the last two
  followed by ``Downsample``), and the pixel discriminator;
* CUT's patch head ``F`` (``PatchSampleF``, ``netF=mlp_sample``): per NCE layer ``i`` a
  ``mlp_<i> = Sequential(Linear(C_i, nc), ReLU, Linear(nc, nc))``.

Layer kinds: ``conv``, ``convT``, ``norm``, ``linear``, and ``blur_down`` / ``blur_up`` (a ``filt``
buffer, no Flax counterpart: the blur is a constant of :mod:`jaxgan.models.antialias`).
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from jaxgan.config import NORMS, parse_netG
from jaxgan.models import antialias

KINDS = ("G", "D", "F")
BLUR_SIZE = {"blur_down": 3, "blur_up": 4}   # the authors' Downsample / Upsample filt_size defaults


class Layer(NamedTuple):
  """One reference layer: torch module prefix, Flax module path, kind and whether it has a bias.

  ``norm_bias``: the bias is the reference's ``use_bias`` (a conv feeding a norm layer, and the
  pixel discriminator's head), which its code leaves out for ``norm="none"`` as for batch norm.
  ``channels``: blur layers only, ``(torch key, axis)`` of the weight whose size there is the
  blur's channel count (the conv before a ``Downsample``, the conv after an ``Upsample``).
  """
  prefix: str
  path: tuple[str, ...]
  kind: str          # "conv", "convT", "norm", "linear", "blur_down" or "blur_up"
  bias: bool = True
  norm_bias: bool = False
  channels: tuple[str, int] = ("", 0)


def blur_buffer(kind: str, channels: int) -> np.ndarray:
  """The authors' ``filt`` buffer of a ``Downsample`` (``blur_down``) or ``Upsample`` (``blur_up``):
  float32 ``[channels, 1, k, k]``, the normalised binomial filter (times stride**2 = 4 for ``Upsample``)."""
  size = BLUR_SIZE[kind]
  f = antialias.blur_filter(size) * (4.0 if kind == "blur_up" else 1.0)
  return np.ascontiguousarray(np.tile(f[None, None], (int(channels), 1, 1, 1)).astype(np.float32))


def _resnet_layers(n_blocks: int, norm: str, use_dropout: bool, no_antialias: bool = True,
                   no_antialias_up: bool = True) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("model.1", ("stem_conv",), "conv", b, True)
  yield Layer("model.2", ("stem_norm",), "norm")
  i = 4                                   # after [pad, conv, norm, relu]
  for d in range(2):
    yield Layer(f"model.{i}", (f"down_{d}_conv",), "conv", b, True)
    yield Layer(f"model.{i + 1}", (f"down_{d}_norm",), "norm")
    if no_antialias:
      i += 3                              # [conv s2, norm, relu]
    else:
      yield Layer(f"model.{i + 3}", (), "blur_down", False, channels=(f"model.{i}.weight", 0))
      i += 4                              # [conv s1, norm, relu, Downsample]
  idx = (1, 2, 6, 7) if use_dropout else (1, 2, 5, 6)
  for k in range(n_blocks):
    base, blk = f"model.{i + k}.conv_block", f"block_{k}"
    yield Layer(f"{base}.{idx[0]}", (blk, "conv_0"), "conv", b, True)
    yield Layer(f"{base}.{idx[1]}", (blk, "norm_0"), "norm")
    yield Layer(f"{base}.{idx[2]}", (blk, "conv_1"), "conv", b, True)
    yield Layer(f"{base}.{idx[3]}", (blk, "norm_1"), "norm")
  i += n_blocks
  for u in range(2):
    if no_antialias_up:                   # [ConvTranspose2d, norm, relu]
      yield Layer(f"model.{i}", (f"up_{u}_conv",), "convT", b, True)
      yield Layer(f"model.{i + 1}", (f"up_{u}_norm",), "norm")
      i += 3
    else:                                 # [Upsample, Conv2d 3x3, norm, relu]
      yield Layer(f"model.{i}", (), "blur_up", False, channels=(f"model.{i + 1}.weight", 1))
      yield Layer(f"model.{i + 1}", (f"up_{u}_conv",), "conv", b, True)
      yield Layer(f"model.{i + 2}", (f"up_{u}_norm",), "norm")
      i += 4
  yield Layer(f"model.{i + 1}", ("head_conv",), "conv", True)   # after the reflect pad


def _unet_layers(num_downs: int, norm: str) -> Iterator[Layer]:
  b = norm != "batch"
  prefix, path = "model.model", ("level_0",)
  yield Layer(f"{prefix}.0", path + ("down", "conv"), "conv", b, True)
  yield Layer(f"{prefix}.3", path + ("up", "conv"), "convT", True)
  prefix = f"{prefix}.1.model"
  for level in range(1, num_downs):
    path = path + (f"level_{level}",)
    yield Layer(f"{prefix}.1", path + ("down", "conv"), "conv", b, True)
    if level == num_downs - 1:  # innermost: no down norm, no child
      yield Layer(f"{prefix}.3", path + ("up", "conv"), "convT", b, True)
      yield Layer(f"{prefix}.4", path + ("up", "norm"), "norm")
    else:
      yield Layer(f"{prefix}.2", path + ("down", "norm"), "norm")
      yield Layer(f"{prefix}.5", path + ("up", "conv"), "convT", b, True)
      yield Layer(f"{prefix}.6", path + ("up", "norm"), "norm")
      prefix = f"{prefix}.3.model"


def _nlayer_layers(n_layers: int, norm: str, no_antialias: bool = True) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("model.0", ("conv_0",), "conv", True)
  i = 2                                   # after [conv, lrelu]
  if not no_antialias:
    yield Layer("model.2", (), "blur_down", False, channels=("model.0.weight", 0))
    i = 3
  for n in range(1, n_layers + 1):
    yield Layer(f"model.{i}", (f"conv_{n}",), "conv", b, True)
    yield Layer(f"model.{i + 1}", (f"norm_{n}",), "norm")
    if n < n_layers and not no_antialias:   # [conv s1, norm, lrelu, Downsample]
      yield Layer(f"model.{i + 3}", (), "blur_down", False, channels=(f"model.{i}.weight", 0))
      i += 4
    else:                                 # [conv, norm, lrelu]
      i += 3
  yield Layer(f"model.{i}", (f"conv_{n_layers + 1}",), "conv", True)


def _pixel_layers(norm: str) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("net.0", ("conv_0",), "conv", True)
  yield Layer("net.2", ("conv_1",), "conv", b, True)
  yield Layer("net.3", ("norm_1",), "norm")
  yield Layer("net.5", ("conv_2",), "conv", b, True)


def _patch_head_layers(n_mlps: int) -> Iterator[Layer]:
  for i in range(n_mlps):
    yield Layer(f"mlp_{i}.0", (f"mlp_{i}_fc_0",), "linear", True)
    yield Layer(f"mlp_{i}.2", (f"mlp_{i}_fc_2",), "linear", True)


def reference_layers(*, kind: str, net: str = "", norm: str = "instance", n_layers_D: int = 3,
                     use_dropout: bool = False, no_antialias: bool = True, no_antialias_up: bool = True,
                     n_mlps: int = 0) -> list[Layer]:
  """The reference layers of one network, in order, with their Flax module paths.

  ``no_antialias`` / ``no_antialias_up`` False: CUT's anti-aliased ResNet generator and PatchGAN
  (``no_antialias_up`` is the generator's only). ``kind="F"``: CUT's patch head with ``n_mlps`` MLPs
  (``net`` and ``norm`` unused).
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be 'G', 'D' or 'F', got {kind!r}")
  if kind == "F":
    if int(n_mlps) < 1:
      raise ValueError(f"the patch head F needs n_mlps >= 1 (one MLP per NCE layer), got {n_mlps}")
    return list(_patch_head_layers(int(n_mlps)))
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
  if kind == "G":
    try:
      family, n = parse_netG(net)
    except ValueError:
      raise ValueError(f"net={net!r} is not a generator: use resnet_9blocks, resnet_6blocks (resnet_<n>blocks), "
                       "unet_256, unet_128 or unet_<N> (N a power of two >= 32)") from None
    if family == "resnet":
      return list(_resnet_layers(n, norm, use_dropout, no_antialias, no_antialias_up))
    return list(_unet_layers(n, norm))
  if net == "pixel":
    return list(_pixel_layers(norm))
  if net in ("basic", "n_layers"):
    n_layers = 3 if net == "basic" else int(n_layers_D)
    if n_layers < 1:
      raise ValueError(f"n_layers_D must be >= 1, got {n_layers_D}")
    return list(_nlayer_layers(n_layers, norm, no_antialias))
  raise ValueError(f"net={net!r} is not a discriminator: use basic, n_layers or pixel")
