"""CUT/FastCUT networks in the authors' layout (taesungp/contrastive-unpaired-translation): import, export, zoo.

The ``.pth`` files are written as the authors' code writes them (``torch.save(net.state_dict())``) from
``tests/torch_reference_cut.py`` networks (their ``nn.Sequential`` layout, the ``Downsample`` /
``Upsample`` modules with their ``filt`` buffers) with random weights; outputs are compared with the
PyTorch networks on the same images (8-bit PNGs at most 1 level apart, float outputs to 1e-4).
"""
from __future__ import annotations

import os
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
from jaxgan.interop import detect  # noqa: E402
from helpers import read_meta  # noqa: E402

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


# ----------------------------------------------------------------------------- export


def cut_nets(seed: int, layout: str = "antialiased") -> dict:
  """A CUT run's three networks as the authors' code saves them (F built for G's features at 0,4,8,12,16)."""
  g = cut_G(seed, layout)
  d = R.randomize_(RC.NLayerDiscriminator(3, 8, 2, "instance", no_antialias=LAYOUTS[layout][0]), seed + 1)
  with torch.no_grad():
    chans = [f.shape[1] for f in g(torch.zeros(1, 3, 32, 32), [0, 4, 8, 12, 16], encode_only=True)]
  torch.manual_seed(seed)
  return {"G": g, "D": d, "F": RC.PatchSampleF(chans, 16)}


@pytest.mark.parametrize("layout", ["antialiased", "no_antialias_up"])
def test_cut_run_import_then_export_gives_back_the_same_tensors(tmp_path, layout):
  """G + D + F of a CUT run -> a trainable cut workdir -> export: the same keys (filt buffers included), in
  the same order, and the same tensors."""
  nets = cut_nets(11, layout)
  files = []
  for role, net in nets.items():
    files.append(tmp_path / f"latest_net_{role}.pth")
    torch.save(net.state_dict(), files[-1])
  wd, out = tmp_path / "wd", tmp_path / "out"
  assert run_cli("import-torch", *files, "--workdir", wd, "--config", "cut_demo") == 0
  meta = read_meta(wd)
  assert checkpoint.TRANSLATE_ONLY_KEY not in meta
  c = meta["config"]
  assert (c["model"], c["netD"], c["n_layers_D"], c["netF_nc"], c["no_antialias"], c["no_antialias_up"]) == \
      ("cut", "n_layers", 2, 16) + LAYOUTS[layout]
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0
  assert files_under(out) == ["latest_net_D.pth", "latest_net_F.pth", "latest_net_G.pth"]
  for role, net in nets.items():
    back, original = torch.load(out / f"latest_net_{role}.pth", weights_only=True), net.state_dict()
    assert list(back) == list(original), role
    assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in original.items()), role


def make_cut_workdir(path: Path, config, trained: bool) -> Path:
  """A tiny jaxgan CUT model saved as a run saves it: two real train steps (``trained``), or random
  weights in the state's shapes; the EMA apart from the weights either way (translate and export use it)."""
  from jaxgan import objectives, train
  import jax.numpy as jnp
  rng = np.random.default_rng(8)
  batch = {k: rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32) for k in ("A", "B")}
  if trained:
    import functools
    from jaxgan import cut
    state = cut.init(jax.random.PRNGKey(0), config, batch)
    step = jax.jit(functools.partial(cut.train_step, config=config))
    for _ in range(2):
      state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["G"]))
  else:
    abstract = objectives.abstract_state(config, {k: v.shape for k, v in batch.items()})
    state = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)
    params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), abstract.params)
    state = state.replace(params=params, rng=jax.random.PRNGKey(0).astype(abstract.rng.dtype))
  ema = jax.tree_util.tree_map(lambda x: x + 0.05 * np.std(x) * rng.standard_normal(x.shape).astype(x.dtype),
                               {"G": state.params["G"]})
  state = state.replace(ema=ema)
  ckpt = checkpoint.Checkpointer(path, keep=0, async_save=False)
  ckpt.save(int(state.step), state, meta=train.make_meta(config, batch))
  ckpt.wait()
  ckpt.close()
  return path


@pytest.mark.parametrize("trained", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["random", "trained"])
def test_jaxgan_cut_exports_for_the_authors_networks(request, tmp_path, capsys, trained):
  """A jaxgan CUT model's latest_net_{G,D,F}.pth load with strict=True into the authors' networks; G gives
  translate --eval's PNGs within 1 level, D and F the Flax networks' outputs."""
  if trained and "slow" not in (request.config.getoption("markexpr") or ""):
    pytest.skip("slow (two compiled CUT steps, ~30 s on 2 cores): run with -m slow")
  from jaxgan import config as config_lib, cut
  config = config_lib.get_base_config("cut")
  config.update(dict(netG="resnet_1blocks", ngf=4, ndf=4, netD="n_layers", n_layers_D=2, crop_size=32,
                     load_size=32, batch_size=1, num_train_steps=10, num_patches=8, netF_nc=8, ema_decay=0.9))
  wd = make_cut_workdir(tmp_path / "wd", config, trained)
  images = np.random.default_rng(9).integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
  pngs = translate(wd, tmp_path, images, "--eval")
  out = tmp_path / "pth"
  capsys.readouterr()
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0
  err = capsys.readouterr().err
  assert "--model cut" in err and "--normG instance" in err and "--netF_nc 8" in err and "--no_antialias" not in err
  assert files_under(out) == ["latest_net_D.pth", "latest_net_F.pth", "latest_net_G.pth"]
  g = RC.ResnetGenerator(3, 3, 4, "instance", 1)
  g.load_state_dict(torch.load(out / "latest_net_G.pth", weights_only=True), strict=True)
  assert np.abs(torch_png(g, images).astype(int) - pngs.astype(int)).max() <= 1
  d = RC.NLayerDiscriminator(3, 4, 2, "instance")
  d.load_state_dict(torch.load(out / "latest_net_D.pth", weights_only=True), strict=True)
  from jaxgan.interop import export
  state = export.load_workdir(wd).state
  x = np.random.default_rng(10).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
  want_d = cut.networks(config)["D"].apply({"params": state.params["D"]}, x, train=False)
  with torch.no_grad():
    got_d = d(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got_d, np.asarray(want_d), atol=1e-4)
  with torch.no_grad():
    chans = [f.shape[1] for f in g(torch.zeros(1, 3, 32, 32), [0, 4, 8, 12, 16], encode_only=True)]
  f = RC.PatchSampleF(chans, 8)
  f.load_state_dict(torch.load(out / "latest_net_F.pth", weights_only=True), strict=True)
  rows = [np.random.default_rng(11 + i).normal(size=(5, c)).astype(np.float32) for i, c in enumerate(chans)]
  want_f = cut.networks(config)["F"].apply({"params": state.params["F"]}, rows)
  for i, (r, w) in enumerate(zip(rows, want_f)):
    with torch.no_grad():
      y = getattr(f, f"mlp_{i}")(torch.from_numpy(r)).numpy()
    np.testing.assert_allclose(y / (np.linalg.norm(y, axis=1, keepdims=True) + 1e-7), np.asarray(w), atol=1e-5)


def test_patch_head_that_does_not_fit_nce_layers_is_named(tmp_path):
  """F's MLPs are built for G's features at the run's nce_layers: a recipe with other layers is refused
  naming F's file and both channel lists; nothing is written."""
  from jaxgan import config as config_lib
  from jaxgan.interop import workdir
  nets = cut_nets(13)
  files = []
  for role, net in nets.items():
    files.append(tmp_path / f"latest_net_{role}.pth")
    torch.save(net.state_dict(), files[-1])
  recipe = config_lib.get_base_config("cut")
  recipe.nce_layers = (0, 4, 8, 12, 13)   # the run's were 0,4,8,12,16: 13 is the Upsample of 32 channels
  wd = tmp_path / "wd"
  with pytest.raises(ValueError, match=r"latest_net_F.pth: the patch head F's MLPs take \[3, 16, 32, 32, 16\] "
                                       r"channels but G's features at config.nce_layers=\(0, 4, 8, 12, 13\) have "
                                       r"\[3, 16, 32, 32, 32\]"):
    workdir.import_files(files, wd, base_config=recipe)
  assert not wd.exists()


def test_jaxgan_cut_exports_to_onnx_as_translate_eval(tmp_path):
  """The anti-aliased CUT generator (blur down/up-sampling, reflect and replicate padding) exported to ONNX
  gives translate --eval's PNGs within 1 level in onnxruntime, for a batch of 1 and of 2, non-square."""
  import onnx
  import onnxruntime as ort

  from jaxgan import config as config_lib
  config = config_lib.get_base_config("cut")
  config.update(dict(netG="resnet_1blocks", ngf=4, ndf=4, netD="n_layers", n_layers_D=2, crop_size=32,
                     load_size=32, batch_size=1, num_train_steps=10, num_patches=8, netF_nc=8, ema_decay=0.9))
  wd = make_cut_workdir(tmp_path / "wd", config, trained=False)
  images = np.random.default_rng(12).integers(0, 256, (2, 32, 40, 3), dtype=np.uint8)
  pngs = translate(wd, tmp_path, images, "--eval")
  out = tmp_path / "onnx"
  assert run_cli("export", "--workdir", wd, "--format", "onnx", "--output", out) == 0
  assert files_under(out) == ["AtoB.onnx"]
  meta = {p.key: p.value for p in onnx.load(out / "AtoB.onnx").metadata_props}
  assert (meta["objective"], meta["direction"], meta["input_size"]) == ("cut", "AtoB", "dynamic")
  session = ort.InferenceSession(str(out / "AtoB.onnx"))
  for batch in (images[:1], images):
    got = session.run(None, {"images": batch})[0]
    assert got.dtype == np.uint8 and got.shape == pngs[:len(batch)].shape
    assert np.abs(got.astype(int) - pngs[:len(batch)].astype(int)).max() <= 1
