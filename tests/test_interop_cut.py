"""CUT/FastCUT networks in the authors' layout (taesungp/contrastive-unpaired-translation): import, export, zoo.

The ``.pth`` files are written as the authors' code writes them (``torch.save(net.state_dict())``) from
``tests/torch_reference_cut.py`` networks (their ``nn.Sequential`` layout, the ``Downsample`` /
``Upsample`` modules with their ``filt`` buffers) with random weights; outputs are compared with the
PyTorch networks on the same images (8-bit PNGs at most 1 level apart, float outputs to 1e-4).
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import require_torch

torch = require_torch()

import torch_reference as R  # noqa: E402  (needs torch)
import torch_reference_cut as RC  # noqa: E402
from jaxgan import checkpoint, cli, models  # noqa: E402
from jaxgan.interop import detect, pytorch  # noqa: E402

pytestmark = pytest.mark.torch
CACHE = os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
G_SCALE = 0.6   # random-weight scale that keeps tanh out of saturation
LAYOUTS = {"antialiased": (False, False), "no_antialias": (True, False), "no_antialias_up": (False, True),
           "plain": (True, True)}   # (no_antialias, no_antialias_up) as the authors' options


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", CACHE)


def run_cli(*args) -> int:
  return cli.main([str(a) for a in args])


def cut_G(seed: int, layout: str = "antialiased", n_blocks: int = 1, ngf: int = 8) -> torch.nn.Module:
  no_aa, no_aa_up = LAYOUTS[layout]
  return R.randomize_(RC.ResnetGenerator(3, 3, ngf, "instance", n_blocks, no_antialias=no_aa,
                                         no_antialias_up=no_aa_up), seed, G_SCALE)


def numpy_sd(net) -> dict:
  return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def torch_png(net, images: np.ndarray) -> np.ndarray:
  """The authors' test.py on uint8 NHWC images: [-1, 1] in, 8-bit out, as jaxgan writes PNGs."""
  x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)
  net.eval()
  with torch.no_grad():
    y = net(x).permute(0, 2, 3, 1).numpy()
  return np.rint((np.clip(y, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def translate(wd: Path, folder: Path, images: np.ndarray, *extra) -> np.ndarray:
  """``jaxgan translate`` of ``images`` (uint8 NHWC); the PNGs it writes, stacked."""
  src, out = folder / "in", folder / "out"
  src.mkdir(parents=True)
  for i, im in enumerate(images):
    Image.fromarray(im).save(src / f"{i}.png")
  assert run_cli("translate", "--workdir", wd, "--input", src, "--output", out, *extra) == 0
  return np.stack([np.asarray(Image.open(out / f"{i}.png")) for i in range(len(images))])


def read_meta(wd: Path, step: int = 0) -> dict:
  ckpt = checkpoint.Checkpointer(wd, read_only=True)
  try:
    return ckpt.read_meta(step)
  finally:
    ckpt.close()


def files_under(folder: Path) -> list:
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------------------- import


def test_authors_cut_generator_imports_and_translates_as_theirs(tmp_path, capsys):
  """latest_net_G.pth of a CUT run (anti-aliased, the default): a translate-only ``cut`` workdir whose
  translate output is the PyTorch network's, on a non-square image."""
  g = cut_G(1)
  f = tmp_path / "latest_net_G.pth"
  torch.save(g.state_dict(), f)
  wd = tmp_path / "wd"
  assert run_cli("import-torch", f, "--workdir", wd) == 0
  assert "CUT anti-aliased down / anti-aliased up" in capsys.readouterr().out
  meta = read_meta(wd)
  c = meta["config"]
  assert (c["model"], c["netG"], c["ngf"], c["norm"], c["no_antialias"], c["no_antialias_up"]) == \
      ("cut", "resnet_1blocks", 8, "instance", False, False)
  assert "latest_net_D.pth" in meta[checkpoint.TRANSLATE_ONLY_KEY]
  images = np.random.default_rng(2).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
  got = translate(wd, tmp_path, images)
  assert np.abs(got.astype(int) - torch_png(g, images).astype(int)).max() <= 1


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_antialias_layout_is_detected_and_computes_as_theirs(layout):
  """The four layouts of --no_antialias / --no_antialias_up: detected from the filt buffers (G and
  PatchGAN), converted, and the Flax networks give the PyTorch networks' outputs."""
  no_aa, no_aa_up = LAYOUTS[layout]
  g = cut_G(3, layout, n_blocks=2)
  spec, variables = detect.detect(numpy_sd(g))
  assert (spec.kind, spec.net, spec.no_antialias, spec.no_antialias_up) == ("G", "resnet_2blocks", no_aa, no_aa_up)
  x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 32, 24)).astype(np.float32)
  flax_g = models.define_G(3, 3, 8, "resnet_2blocks", norm="instance", no_antialias=no_aa, no_antialias_up=no_aa_up)
  with torch.no_grad():
    want = g.eval()(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
  got = flax_g.apply(variables, x.transpose(0, 2, 3, 1), train=False)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)
  d = R.randomize_(RC.NLayerDiscriminator(3, 8, 2, "instance", no_antialias=no_aa), 5)
  spec_d, variables_d = detect.detect(numpy_sd(d))
  assert (spec_d.kind, spec_d.net, spec_d.n_layers_D, spec_d.no_antialias) == ("D", "n_layers", 2, no_aa)
  flax_d = models.define_D(3, 8, "n_layers", n_layers_D=2, norm="instance", no_antialias=no_aa)
  x = np.random.default_rng(6).uniform(-1, 1, (1, 3, 40, 32)).astype(np.float32)
  with torch.no_grad():
    want = d(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(flax_d.apply(variables_d, x.transpose(0, 2, 3, 1), train=False)), want,
                             atol=1e-4)


def test_filt_buffers_must_be_the_fixed_blur(tmp_path, capsys):
  """A ``filt`` that is not the authors' blur (other values, other channel count) is refused naming its key;
  a CUT network asked for as pix2pix is refused naming --model cut. Nothing is written."""
  cases = []
  sd = dict(cut_G(7).state_dict())
  sd["model.7.filt"] = sd["model.7.filt"] * 2.0                     # a Downsample's
  cases.append((sd, [], ["model.7.filt", "not the authors' fixed blur filter", "Downsample"]))
  sd = dict(cut_G(7).state_dict())
  sd["model.13.filt"] = sd["model.13.filt"][:-1]                    # an Upsample's, one channel short
  cases.append((sd, [], ["model.13.filt", "shape (31, 1, 4, 4)", "(32, 1, 4, 4)"]))
  cases.append((cut_G(7).state_dict(), ["--model", "pix2pix"], ["is a CUT network", "--model cut"]))
  for i, (sd, extra, expected) in enumerate(cases):
    f = tmp_path / f"case{i}_net_G.pth"
    torch.save(sd, f)
    wd = tmp_path / f"wd{i}"
    capsys.readouterr()
    assert run_cli("import-torch", f, "--workdir", wd, *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith("jaxgan import-torch: error: ") and all(e in err for e in expected), (i, err)
    assert not wd.exists()
