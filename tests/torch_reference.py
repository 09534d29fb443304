"""PyTorch reference of the pix2pix / CycleGAN networks and training iterations (tests only).

Written for the parity tests from the papers and the published architecture of
the authors' PyTorch project, with the *same module tree* as theirs, so its
``state_dict`` keys and tensor layouts are the reference's and a real reference
``.pth`` file loads into it:

* ``ResnetGenerator``: one flat ``nn.Sequential`` ``model.<i>``; residual blocks
  hold ``conv_block.<j>`` (reflection pad, conv, norm, ReLU, [dropout], pad, conv, norm).
* ``UnetGenerator``: ``model`` is the outermost ``UnetSkipConnectionBlock``; each
  block's layers are ``model.<j>`` with the inner block at ``model.1`` (outermost)
  or ``model.3`` (intermediate), giving keys like ``model.model.1.model.3.model.1.weight``.
* ``NLayerDiscriminator`` (``model.<i>``) and ``PixelDiscriminator`` (``net.<i>``).

Norms: ``batch`` = ``BatchNorm2d`` (affine, running statistics), ``instance`` =
``InstanceNorm2d`` (no affine, no running statistics), ``none`` = ``nn.Identity``
(kept as a module so the layer indices do not move). Convolutions followed by a
norm have a bias exactly when the norm is not batch norm. One deliberate deviation
from the reference, shared with jaxgan: with ``norm="none"`` those convolutions
keep their bias (the reference drops it there, which leaves the layers bias-free);
``authors_none=True`` builds them as the reference does (no bias with ``norm="none"``),
for the tests that save files exactly as the authors' code would.

Tensors are NCHW here; jaxgan is NHWC.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

NORMS = ("batch", "instance", "none")


def _norm(norm: str, channels: int) -> nn.Module:
  if norm == "batch":
    return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
  if norm == "instance":
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
  if norm == "none":
    return nn.Identity()
  raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def _conv_bias(norm: str, authors_none: bool = False) -> bool:
  """Bias of a conv that feeds a norm layer: none with batch norm (its shift replaces it), and with
  ``norm="none"`` too when ``authors_none`` (the reference's ``use_bias`` is true for instance norm only)."""
  return norm == "instance" or (norm == "none" and not authors_none)


class ResnetBlock(nn.Module):
  """x + conv_block(x) with reflection padding; same channels in and out."""

  def __init__(self, dim: int, norm: str, use_dropout: bool, authors_none: bool = False):
    super().__init__()
    bias = _conv_bias(norm, authors_none)
    layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True)]
    if use_dropout:
      layers.append(nn.Dropout(0.5))
    layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
    self.conv_block = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """7x7 stem, two stride-2 downsamples, ``n_blocks`` residual blocks, two upsamples, 7x7 head, tanh."""

  def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "batch",
               use_dropout: bool = False, n_blocks: int = 6, authors_none: bool = False):
    super().__init__()
    bias = _conv_bias(norm, authors_none)
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _norm(norm, ngf), nn.ReLU(True)]
    for i in range(2):
      c = ngf * 2 ** i
      layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), _norm(norm, 2 * c), nn.ReLU(True)]
    layers += [ResnetBlock(ngf * 4, norm, use_dropout, authors_none) for _ in range(n_blocks)]
    for i in range(2):
      c = ngf * 2 ** (2 - i)
      layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                 _norm(norm, c // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
  """down (LeakyReLU 0.2, 4x4/2 conv, norm) -> inner block -> up (ReLU, 4x4/2 deconv, norm) -> concat(x, .)."""

  def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
               submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
               norm: str = "batch", use_dropout: bool = False, authors_none: bool = False):
    super().__init__()
    self.outermost = outermost
    bias = _conv_bias(norm, authors_none)
    input_nc = outer_nc if input_nc is None else input_nc
    down_conv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
    if outermost:
      up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, stride=2, padding=1)
      layers = [down_conv, submodule, nn.ReLU(True), up_conv, nn.Tanh()]
    elif innermost:
      up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
      layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, _norm(norm, outer_nc)]
    else:
      up_conv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
      layers = [nn.LeakyReLU(0.2, True), down_conv, _norm(norm, inner_nc), submodule,
                nn.ReLU(True), up_conv, _norm(norm, outer_nc)]
      if use_dropout:
        layers.append(nn.Dropout(0.5))
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
  """U-Net with ``num_downs`` stride-2 levels (input sides must be multiples of 2**num_downs)."""

  def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch",
               use_dropout: bool = False, authors_none: bool = False):
    super().__init__()
    if num_downs < 5:
      raise ValueError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
    q = {"norm": norm, "authors_none": authors_none}
    block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **q)
    for _ in range(num_downs - 5):
      block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **q)
    block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **q)
    block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **q)
    block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, **q)
    self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **q)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


class NLayerDiscriminator(nn.Module):
  """PatchGAN: 4x4 convs (n_layers stride 2, then two stride 1), LeakyReLU 0.2, no norm on the first."""

  def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
               authors_none: bool = False):
    super().__init__()
    bias = _conv_bias(norm, authors_none)
    layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
      prev, mult = mult, min(2 ** n, 8)
      stride = 2 if n < n_layers else 1
      layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                 _norm(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
    self.model = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.model(x)


class PixelDiscriminator(nn.Module):
  """1x1 PatchGAN (PixelGAN). Its last conv has a bias only when the norm is not batch norm."""

  def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch", authors_none: bool = False):
    super().__init__()
    bias = _conv_bias(norm, authors_none)
    self.net = nn.Sequential(
        nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), _norm(norm, 2 * ndf), nn.LeakyReLU(0.2, True),
        nn.Conv2d(2 * ndf, 1, 1, bias=bias))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.net(x)


def unet_depth(netG: str) -> int:
  """``unet_<N>`` -> number of stride-2 levels log2(N) (unet_256 -> 8, unet_128 -> 7)."""
  size = int(netG.split("_", 1)[1])
  depth = int(round(math.log2(size)))
  if 2 ** depth != size:
    raise ValueError(f"{netG}: the size after unet_ must be a power of two")
  return depth


def define_G(input_nc: int, output_nc: int, ngf: int, netG: str, norm: str = "batch",
             use_dropout: bool = False, authors_none: bool = False) -> nn.Module:
  """The reference generators by name; also ``resnet_<n>blocks`` and ``unet_<N>`` (N a power of two >= 32)."""
  if netG.startswith("resnet_") and netG.endswith("blocks"):
    return ResnetGenerator(input_nc, output_nc, ngf, norm, use_dropout, n_blocks=int(netG[7:-6]),
                           authors_none=authors_none)
  if netG.startswith("unet_"):
    return UnetGenerator(input_nc, output_nc, unet_depth(netG), ngf, norm, use_dropout, authors_none)
  raise ValueError(f"unknown netG {netG!r}")


def define_D(input_nc: int, ndf: int, netD: str, n_layers_D: int = 3, norm: str = "batch",
             authors_none: bool = False) -> nn.Module:
  """The reference discriminators by name: ``basic`` (3 layers), ``n_layers``, ``pixel``."""
  if netD == "basic":
    return NLayerDiscriminator(input_nc, ndf, 3, norm, authors_none)
  if netD == "n_layers":
    return NLayerDiscriminator(input_nc, ndf, n_layers_D, norm, authors_none)
  if netD == "pixel":
    return PixelDiscriminator(input_nc, ndf, norm, authors_none)
  raise ValueError(f"unknown netD {netD!r}")


@torch.no_grad()
def randomize_(net: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
  """Overwrite every parameter and BatchNorm statistic with random values (in place).

  Conv weights ~ N(0, scale * sqrt(2 / fan_in)) keep activations O(1) through
  deep stacks; biases ~ N(0, 0.1); BatchNorm scale ~ U(0.5, 1.5), shift ~ N(0, 0.1),
  running mean ~ N(0, 0.2), running var ~ U(0.5, 2). Returns ``net``.
  """
  g = torch.Generator().manual_seed(seed)
  for m in net.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
      w = m.weight
      fan_in = w.shape[1] * w.shape[2] * w.shape[3] if isinstance(m, nn.Conv2d) else \
          w.shape[0] * w.shape[2] * w.shape[3] / (m.stride[0] * m.stride[1])
      w.copy_(torch.randn(w.shape, generator=g) * scale * math.sqrt(2.0 / fan_in))
      if m.bias is not None:
        m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    elif isinstance(m, nn.BatchNorm2d):
      m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
      m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
      m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
  return net


# --------------------------------------------------------------------------- losses and iterations


def gan_loss(prediction: torch.Tensor, target_is_real: bool, gan_mode: str) -> torch.Tensor:
  """vanilla = BCE-with-logits, lsgan = MSE, against a constant 1 (real) / 0 (fake) target."""
  target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
  if gan_mode == "vanilla":
    return nn.functional.binary_cross_entropy_with_logits(prediction, target)
  if gan_mode == "lsgan":
    return nn.functional.mse_loss(prediction, target)
  raise ValueError(f"gan_mode must be vanilla or lsgan here, got {gan_mode!r}")


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
  for net in nets:
    for p in net.parameters():
      p.requires_grad_(flag)


def adam(params: Iterable[torch.nn.Parameter], lr: float, beta1: float) -> torch.optim.Adam:
  """The reference optimiser: Adam(lr, betas=(beta1, 0.999)), eps 1e-8."""
  return torch.optim.Adam(list(params), lr=lr, betas=(beta1, 0.999))


def pix2pix_iteration(netG: nn.Module, netD: nn.Module, optG: torch.optim.Optimizer,
                      optD: torch.optim.Optimizer, real_A: torch.Tensor, real_B: torch.Tensor,
                      gan_mode: str, lambda_L1: float) -> dict[str, float]:
  """One reference pix2pix iteration (``Pix2PixModel.optimize_parameters``), NCHW tensors.

  G forward once; D step on (A, fake_B.detach()) then (A, B); G step through the
  *updated* D. Afterwards each net's ``.grad`` holds the gradient of its own step.
  """
  fake_B = netG(real_A)
  # Discriminator.
  set_requires_grad([netD], True)
  optD.zero_grad()
  pred_fake = netD(torch.cat([real_A, fake_B.detach()], 1))
  loss_D_fake = gan_loss(pred_fake, False, gan_mode)
  pred_real = netD(torch.cat([real_A, real_B], 1))
  loss_D_real = gan_loss(pred_real, True, gan_mode)
  loss_D = 0.5 * (loss_D_fake + loss_D_real)
  loss_D.backward()
  optD.step()
  # Generator, through the updated discriminator.
  set_requires_grad([netD], False)
  optG.zero_grad()
  loss_G_GAN = gan_loss(netD(torch.cat([real_A, fake_B], 1)), True, gan_mode)
  loss_G_L1 = nn.functional.l1_loss(fake_B, real_B) * lambda_L1
  loss_G = loss_G_GAN + loss_G_L1
  loss_G.backward()
  optG.step()
  set_requires_grad([netD], True)
  return {"G_GAN": loss_G_GAN.item(), "G_L1": loss_G_L1.item(), "G": loss_G.item(),
          "D_real": loss_D_real.item(), "D_fake": loss_D_fake.item(), "D": loss_D.item()}


def cyclegan_iteration(netG_A: nn.Module, netG_B: nn.Module, netD_A: nn.Module, netD_B: nn.Module,
                       optG: torch.optim.Optimizer, optD: torch.optim.Optimizer, real_A: torch.Tensor,
                       real_B: torch.Tensor, lambda_A: float, lambda_B: float, lambda_idt: float,
                       gan_mode: str) -> dict[str, float]:
  """One reference CycleGAN iteration (``CycleGANModel.optimize_parameters``), image pool off.

  netG_A: A->B, netG_B: B->A, netD_A judges B images, netD_B judges A images.
  ``optG`` is one Adam over both generators, ``optD`` one over both discriminators.
  """
  fake_B = netG_A(real_A)
  rec_A = netG_B(fake_B)
  fake_A = netG_B(real_B)
  rec_B = netG_A(fake_A)
  # Generators, discriminators frozen.
  set_requires_grad([netD_A, netD_B], False)
  optG.zero_grad()
  if lambda_idt > 0:
    loss_idt_A = nn.functional.l1_loss(netG_A(real_B), real_B) * lambda_B * lambda_idt
    loss_idt_B = nn.functional.l1_loss(netG_B(real_A), real_A) * lambda_A * lambda_idt
  else:
    loss_idt_A = loss_idt_B = torch.zeros(())
  loss_G_A = gan_loss(netD_A(fake_B), True, gan_mode)
  loss_G_B = gan_loss(netD_B(fake_A), True, gan_mode)
  loss_cycle_A = nn.functional.l1_loss(rec_A, real_A) * lambda_A
  loss_cycle_B = nn.functional.l1_loss(rec_B, real_B) * lambda_B
  loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
  loss_G.backward()
  optG.step()
  # Discriminators (pool off: the fakes of this iteration).
  set_requires_grad([netD_A, netD_B], True)
  optD.zero_grad()
  losses_D = {}
  for name, netD, real, fake in (("D_A", netD_A, real_B, fake_B), ("D_B", netD_B, real_A, fake_A)):
    loss_real = gan_loss(netD(real), True, gan_mode)
    loss_fake = gan_loss(netD(fake.detach()), False, gan_mode)
    loss = 0.5 * (loss_real + loss_fake)
    loss.backward()
    losses_D[name] = loss.item()
  optD.step()
  return {"G_A": loss_G_A.item(), "G_B": loss_G_B.item(), "cycle_A": loss_cycle_A.item(),
          "cycle_B": loss_cycle_B.item(), "idt_A": loss_idt_A.item(), "idt_B": loss_idt_B.item(),
          "G": loss_G.item(), "D_A": losses_D["D_A"], "D_B": losses_D["D_B"],
          "D": losses_D["D_A"] + losses_D["D_B"]}
