"""PyTorch reference of CUT / FastCUT (Park et al. 2020) for the parity tests (tests only).

Written from the authors' recipe (taesungp/contrastive-unpaired-translation: ``models/networks.py``,
``models/cut_model.py``, ``models/patchnce.py``), with their module tree, so state_dict keys match theirs:

* ``ResnetGenerator``: one flat ``nn.Sequential`` ``model.<i>``; anti-aliased by default: down =
  ``[Conv2d(3x3, s1), norm, ReLU(True), Downsample]``, up = ``[Upsample, Conv2d(3x3), norm, ReLU(True)]``
  (``Downsample``/``Upsample`` hold the fixed blur as a ``filt`` buffer ``[C, 1, k, k]``);
  ``forward(x, layers, encode_only)`` returns the outputs of ``model.<i>`` for ``i in layers`` as theirs
  (the list keeps the tensor, so an in-place ReLU after a tapped norm shows in it).
* ``NLayerDiscriminator``: ``model.<i>``; anti-aliased: stride-1 4x4 convs, each followed by ``Downsample``.
* ``PatchSampleF``: ``mlp_<l>`` = ``Sequential(Linear(C, nc), ReLU, Linear(nc, nc))`` per layer, L2 norm.
* :func:`cut_iteration`: ``CUTModel.optimize_parameters`` with given patch positions and flip.

Tensors are NCHW here; jaxgan is NHWC. Residual blocks and norms come from ``torch_reference``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

import torch_reference as R


def get_filter(size: int) -> torch.Tensor:
  a = {3: [1., 2., 1.], 4: [1., 3., 3., 1.]}[size]
  a = np.asarray(a)
  f = torch.tensor(a[:, None] * a[None, :], dtype=torch.float32)
  return f / f.sum()


class Downsample(nn.Module):
  """Reflect pad 1, depthwise [1,2,1]^2/16 blur, stride 2."""

  def __init__(self, channels: int):
    super().__init__()
    self.register_buffer("filt", get_filter(3)[None, None].repeat(channels, 1, 1, 1))
    self.pad = nn.ReflectionPad2d(1)

  def forward(self, x):
    return nn.functional.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class Upsample(nn.Module):
  """Replicate pad 1, depthwise transposed [1,3,3,1]^2/64*4 blur (stride 2, padding 2), crop [1:-1]."""

  def __init__(self, channels: int):
    super().__init__()
    self.register_buffer("filt", (get_filter(4) * 4)[None, None].repeat(channels, 1, 1, 1))
    self.pad = nn.ReplicationPad2d(1)

  def forward(self, x):
    y = nn.functional.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])
    return y[:, :, 1:, 1:][:, :, :-1, :-1]


class ResnetGenerator(nn.Module):
  def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, norm: str = "instance", n_blocks: int = 9,
               no_antialias: bool = False, no_antialias_up: bool = False):
    super().__init__()
    bias = R._conv_bias(norm)
    m = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), R._norm(norm, ngf), nn.ReLU(True)]
    for i in range(2):
      c = ngf * 2 ** i
      if no_antialias:
        m += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), R._norm(norm, 2 * c), nn.ReLU(True)]
      else:
        m += [nn.Conv2d(c, 2 * c, 3, stride=1, padding=1, bias=bias), R._norm(norm, 2 * c), nn.ReLU(True),
              Downsample(2 * c)]
    m += [R.ResnetBlock(ngf * 4, norm, False) for _ in range(n_blocks)]
    for i in range(2):
      c = ngf * 2 ** (2 - i)
      if no_antialias_up:
        m += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
              R._norm(norm, c // 2), nn.ReLU(True)]
      else:
        m += [Upsample(c), nn.Conv2d(c, c // 2, 3, padding=1, bias=bias), R._norm(norm, c // 2), nn.ReLU(True)]
    m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    self.model = nn.Sequential(*m)

  def forward(self, x, layers: Sequence[int] = (), encode_only: bool = False):
    if not layers:
      return self.model(x)
    feats = []
    for i, layer in enumerate(self.model):
      x = layer(x)
      if i in layers:
        feats.append(x)
      if i == layers[-1] and encode_only:
        return feats
    return x, feats


class NLayerDiscriminator(nn.Module):
  def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
               no_antialias: bool = False):
    super().__init__()
    bias = R._conv_bias(norm)
    if no_antialias:
      m = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    else:
      m = [nn.Conv2d(input_nc, ndf, 4, stride=1, padding=1), nn.LeakyReLU(0.2, True), Downsample(ndf)]
    mult = 1
    for n in range(1, n_layers):
      prev, mult = mult, min(2 ** n, 8)
      if no_antialias:
        m += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), R._norm(norm, ndf * mult),
              nn.LeakyReLU(0.2, True)]
      else:
        m += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), R._norm(norm, ndf * mult),
              nn.LeakyReLU(0.2, True), Downsample(ndf * mult)]
    prev, mult = mult, min(2 ** n_layers, 8)
    m += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), R._norm(norm, ndf * mult),
          nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
    self.model = nn.Sequential(*m)

  def forward(self, x):
    return self.model(x)


class PatchSampleF(nn.Module):
  """``mlp_sample`` with its MLPs built for the given channels (the authors build them at the first call)."""

  def __init__(self, channels: Sequence[int], nc: int = 256):
    super().__init__()
    for i, c in enumerate(channels):
      setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))

  def forward(self, feats, num_patches: int, patch_ids):
    out = []
    for i, (f, ids) in enumerate(zip(feats, patch_ids)):
      rows = f.permute(0, 2, 3, 1).flatten(1, 2)
      x = rows[:, torch.as_tensor(np.array(ids), dtype=torch.long), :].flatten(0, 1)
      x = getattr(self, f"mlp_{i}")(x)
      norm = x.pow(2).sum(1, keepdim=True).pow(0.5)
      out.append(x.div(norm + 1e-7))
    return out


def patch_nce(feat_q, feat_k, batch_size: int, nce_T: float, all_negatives: bool = False):
  """PatchNCELoss.forward: per-row cross-entropy [B*P] (the keys detached)."""
  n, dim = feat_q.shape
  feat_k = feat_k.detach()
  l_pos = torch.bmm(feat_q.view(n, 1, -1), feat_k.view(n, -1, 1)).view(n, 1)
  b = 1 if all_negatives else batch_size
  q, k = feat_q.view(b, -1, dim), feat_k.view(b, -1, dim)
  p = q.size(1)
  l_neg = torch.bmm(q, k.transpose(2, 1))
  l_neg.masked_fill_(torch.eye(p, dtype=torch.bool)[None], -10.0)
  out = torch.cat((l_pos, l_neg.view(-1, p)), dim=1) / nce_T
  return nn.functional.cross_entropy(out, torch.zeros(out.size(0), dtype=torch.long), reduction="none")


def cut_iteration(netG, netD, netF, optG, optD, optF, real_A, real_B, *, opt: dict, flipped: bool,
                  patch_ids: Sequence[Sequence[np.ndarray]]) -> dict[str, float]:
  """One ``CUTModel.optimize_parameters`` (lsgan). ``opt``: lambda_GAN, lambda_NCE, nce_idt, nce_layers,
  nce_T, num_patches, flip_equivariance, batch_size; ``flipped``: the step's coin; ``patch_ids[c]``: the
  positions per layer of the c-th NCE call (0: NCE(A, fake_B), 1: NCE(B, idt_B))."""
  layers = list(opt["nce_layers"])
  real = torch.cat((real_A, real_B), 0) if opt["nce_idt"] else real_A
  if opt["flip_equivariance"] and flipped:
    real = torch.flip(real, [3])
  fake = netG(real)
  n = real_A.size(0)
  fake_B = fake[:n]
  idt_B = fake[n:] if opt["nce_idt"] else None
  # D.
  R.set_requires_grad([netD], True)
  optD.zero_grad()
  loss_D_fake = R.gan_loss(netD(fake_B.detach()), False, "lsgan").mean()
  loss_D_real = R.gan_loss(netD(real_B), True, "lsgan").mean()
  loss_D = 0.5 * (loss_D_fake + loss_D_real)
  loss_D.backward()
  optD.step()
  # G and F.
  R.set_requires_grad([netD], False)
  optG.zero_grad()
  optF.zero_grad()

  def nce(src, tgt, call):
    feat_q = netG(tgt, layers, encode_only=True)
    if opt["flip_equivariance"] and flipped:
      feat_q = [torch.flip(f, [3]) for f in feat_q]
    feat_k = netG(src, layers, encode_only=True)
    k_pool = netF(feat_k, opt["num_patches"], patch_ids[call])
    q_pool = netF(feat_q, opt["num_patches"], patch_ids[call])
    total = 0.0
    for fq, fk in zip(q_pool, k_pool):
      total = total + (patch_nce(fq, fk, src.size(0), opt["nce_T"], opt.get("all_negatives", False))
                       * opt["lambda_NCE"]).mean()
    return total / len(layers)

  loss_G_GAN = R.gan_loss(netD(fake_B), True, "lsgan").mean() * opt["lambda_GAN"]
  loss_NCE = nce(real_A, fake_B, 0)
  out = {}
  if opt["nce_idt"]:
    loss_NCE_Y = nce(real_B, idt_B, 1)
    both = 0.5 * (loss_NCE + loss_NCE_Y)
    out["NCE_Y"] = loss_NCE_Y.item()
  else:
    both = loss_NCE
  loss_G = loss_G_GAN + both
  loss_G.backward()
  optG.step()
  optF.step()
  R.set_requires_grad([netD], True)
  out.update({"G_GAN": loss_G_GAN.item(), "D_real": loss_D_real.item(), "D_fake": loss_D_fake.item(),
              "G": loss_G.item(), "NCE": loss_NCE.item(), "D": loss_D.item()})
  return out
