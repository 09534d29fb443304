"""``jaxgan import-torch``: the reference's saved networks -> a workdir that translates, evaluates and fine-tunes.

Every ``.pth`` here is written as the authors' code writes it (``torch.save(net.state_dict(), ...)``,
their file names) from ``tests/torch_reference.py`` networks with random weights; each
import goes through the CLI, and ``jaxgan translate``'s PNGs are compared with the
PyTorch network's output on the same images after the same 8-bit rounding (at most
1 level apart): ResNets in the reference's test-time mode (no ``--eval``), dropout
networks with ``--eval`` (dropout makes the default mode random).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import require_torch

torch = require_torch()

import torch_reference as R  # noqa: E402  (needs torch)
from jaxgan import checkpoint, cli  # noqa: E402
from jaxgan import config as config_lib  # noqa: E402
from jaxgan.interop import pytorch, workdir  # noqa: E402
from helpers import read_meta  # noqa: E402

pytestmark = pytest.mark.torch
CACHE = os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
G_SCALE = 0.6  # random-weight scale that keeps tanh out of saturation

RECIPE = '''
from jaxgan.config import get_cyclegan_base_config

def get_config():
  c = get_cyclegan_base_config()
  c.dataset = "demo:seasons"
  c.demo_train_size, c.demo_test_size = 4, 2
  c.netG, c.ngf, c.ndf, c.netD, c.n_layers_D = "resnet_1blocks", 4, 4, "n_layers", 1
  c.load_size = c.crop_size = 32
  c.pool_size, c.batch_size, c.num_train_steps = 2, 1, 2
  c.log_every_steps, c.checkpoint_every_steps, c.sample_every_steps, c.eval_batches = 1, 2, 0, 1
  return c
'''


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", CACHE)


def run_cli(*args) -> int:
  return cli.main([str(a) for a in args])


def save(net, path: Path, transform=None, legacy_format: bool = False) -> Path:
  """``torch.save(net.state_dict(), path)`` as the reference's ``save_networks`` (optionally altered);
  ``legacy_format``: the pre-1.6 serialisation (not a zip) of older checkpoints."""
  sd = net.state_dict()
  torch.save(transform(sd) if transform else sd, path, _use_new_zipfile_serialization=not legacy_format)
  return path


def torch_png(net, image: np.ndarray, *, eval_mode: bool) -> np.ndarray:
  """The reference's test.py on one image: [0,255] -> [-1,1] -> net -> 8-bit, as jaxgan writes PNGs."""
  x = torch.from_numpy(((image.astype(np.float32) / 255.0) - 0.5) / 0.5).permute(2, 0, 1)[None]
  net.train(not eval_mode)  # without --eval the reference keeps the train-mode forward
  with torch.no_grad():
    y = net(x)[0].permute(1, 2, 0).numpy()
  return np.rint((np.clip(y, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def translate_and_compare(wd: Path, tmp: Path, net, image: np.ndarray, *, direction="AtoB", eval_mode=False,
                          tag="x") -> int:
  """``jaxgan translate`` one image; returns the largest 8-bit difference to the PyTorch network."""
  src = tmp / f"in_{tag}" / "img.png"
  src.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(src)
  out = tmp / f"out_{tag}"
  args = ["translate", "--workdir", wd, "--input", src.parent, "--output", out, "--direction", direction,
          "--step", 0]
  assert run_cli(*args, *(["--eval"] if eval_mode else [])) == 0
  got = np.asarray(Image.open(out / "img.png"))
  want = torch_png(net, image, eval_mode=eval_mode)
  got = got.reshape(want.shape)
  return int(np.abs(got.astype(int) - want.astype(int)).max())


def norm_prefixes(net_name: str, kind: str = "G") -> list[str]:
  return [l.prefix for l in pytorch.reference_layers(kind=kind, net=net_name, norm="instance") if l.kind == "norm"]


# ----------------------------------------------------------------------------- CycleGAN: G_A + G_B + D_A + D_B


@pytest.fixture(scope="module")
def cyclegan_import(tmp_path_factory):
  """A full CycleGAN saved as a training run saves it; G_A as an old file (pre-0.4 InstanceNorm statistics,
  pre-1.6 serialisation), G_B with DataParallel's ``module.`` keys."""
  tmp = tmp_path_factory.mktemp("cyc")
  nets = {"G_A": R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 1, G_SCALE),
          "G_B": R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 2, G_SCALE),
          "D_A": R.randomize_(R.define_D(3, 4, "n_layers", 1, "instance"), 3),
          "D_B": R.randomize_(R.define_D(3, 4, "n_layers", 1, "instance"), 4)}

  def legacy(sd):  # InstanceNorm running statistics of pre-0.4 checkpoints (the reference drops them)
    sd = dict(sd)
    for p in norm_prefixes("resnet_1blocks"):
      sd[f"{p}.running_mean"] = torch.zeros(1)
      sd[f"{p}.running_var"] = torch.ones(1)
    return sd

  transforms = {"G_A": legacy, "G_B": lambda sd: {f"module.{k}": v for k, v in sd.items()}}
  files = [save(n, tmp / f"latest_net_{r}.pth", transforms.get(r), legacy_format=r == "G_A")
           for r, n in nets.items()]
  recipe = tmp / "tiny_cyclegan.py"
  recipe.write_text(RECIPE)
  wd = tmp / "run"
  assert run_cli("import-torch", *files, "--workdir", wd, "--config", recipe) == 0
  return tmp, wd, nets, recipe


def test_cyclegan_import_translates_both_ways_and_evaluates(cyclegan_import, tmp_path, capsys):
  tmp, wd, nets, _ = cyclegan_import
  meta = read_meta(wd)
  c = meta["config"]
  assert (c["model"], c["netG"], c["norm"], c["ngf"], c["netD"], c["n_layers_D"], c["ndf"], c["no_dropout"]) == \
      ("cyclegan", "resnet_1blocks", "instance", 4, "n_layers", 1, 4, True)
  imported = meta[checkpoint.IMPORTED_KEY]
  assert {f["slot"]: f["role"] for f in imported["files"]} == {"G_AB": "G_A", "G_BA": "G_B", "D_A": "D_A",
                                                              "D_B": "D_B"}
  assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in imported["files"])
  assert checkpoint.TRANSLATE_ONLY_KEY not in meta
  image = np.random.default_rng(5).integers(0, 256, (32, 48, 3), dtype=np.uint8)   # not square
  assert translate_and_compare(wd, tmp_path, nets["G_A"], image, tag="ab") <= 1
  assert translate_and_compare(wd, tmp_path, nets["G_B"], image, direction="BtoA", tag="ba") <= 1
  capsys.readouterr()
  assert run_cli("evaluate", "--workdir", wd, "--step", 0, "--batches", 1) == 0
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert result["step"] == 0 and math.isfinite(result["l1"]) and math.isfinite(result["BtoA_l1"])


def test_fine_tune_imported_cyclegan(cyclegan_import, tmp_path, capsys):
  """``jaxgan train`` continues from the imported weights (fresh optimiser, step 0) for 2 finite steps."""
  _, src, nets, recipe = cyclegan_import
  wd = tmp_path / "ft"
  shutil.copytree(src, wd)
  # The reference's --continue_train --epoch_count: epoch 3 of n_epochs=2 + n_epochs_decay=1, i.e. lr / 2.
  extra = ["--config.num_train_steps=-1", "--config.n_epochs=2", "--config.n_epochs_decay=1",
           "--config.epoch_count=3", "--config.steps_per_epoch=2"]
  capsys.readouterr()
  assert run_cli("train", "--config", recipe, "--workdir", wd, *extra) == 0
  err = capsys.readouterr().err
  line = [l for l in err.splitlines() if l.startswith("step 2/2")][-1]
  losses = {k: float(v) for k, v in re.findall(r"\b(G|D|G_A|D_A|cycle_A|cycle_B) ([-+0-9.e]+|nan|inf)\b", line)}
  assert {"G", "D", "cycle_A"} <= set(losses) and all(math.isfinite(v) for v in losses.values()), line
  assert checkpoint.list_steps(wd)[-1] == 2
  from jaxgan import inference
  state, ft_config, _ = inference.load_for_inference(wd, 2)
  from jaxgan import optim
  assert float(optim.lr_schedule(ft_config)(0)) == pytest.approx(1e-4)   # the run started in epoch 3
  imported = pytorch.convert_state_dict(nets["G_A"].state_dict(), kind="G", net="resnet_1blocks", norm="instance")
  before = np.asarray(imported["params"]["stem_conv"]["kernel"])
  after = np.asarray(state.params["G_AB"]["stem_conv"]["kernel"])
  change = np.abs(after - before).max()
  assert 0 < change < 2.5 * 2 * float(2e-4), change   # two Adam steps of at most ~lr each from the import
  counts = [int(x) for p, x in jax.tree_util.tree_leaves_with_path(state.opt_state) if "count" in jax.tree_util.keystr(p)]
  assert counts and set(counts) == {2}, counts   # the optimiser started fresh at the import


# ----------------------------------------------------------------------------- pix2pix and single generators


def test_pix2pix_unet_rgba_checkpoint_dict_and_dataparallel(tmp_path):
  """G + D -> pix2pix; a U-Net with dropout (compared with --eval), 4 channels, a {'state_dict': ...} file."""
  g = R.randomize_(R.define_G(4, 4, 4, "unet_32", "batch", use_dropout=True), 6, G_SCALE)
  d = R.randomize_(R.define_D(8, 4, "basic", 3, "batch"), 7)
  f_g = save(g, tmp_path / "latest_net_G.pth",
             lambda sd: {"epoch": 5, "state_dict": {f"module.{k}": v for k, v in sd.items()}})
  f_d = save(d, tmp_path / "latest_net_D.pth")
  wd = tmp_path / "p2p"
  assert run_cli("import-torch", f_g, f_d, "--workdir", wd, "--direction", "BtoA") == 0
  meta = read_meta(wd)
  c = meta["config"]
  assert (c["model"], c["netG"], c["norm"], c["input_nc"], c["output_nc"], c["netD"], c["no_dropout"],
          c["direction"]) == ("pix2pix", "unet_32", "batch", 4, 4, "basic", False, "BtoA")
  assert checkpoint.TRANSLATE_ONLY_KEY not in meta
  image = np.random.default_rng(8).integers(0, 256, (32, 64, 4), dtype=np.uint8)
  assert translate_and_compare(wd, tmp_path, g, image, eval_mode=True) <= 1


def test_single_generator_grayscale_batchnorm_is_translate_only(tmp_path, capsys):
  """One G (a released model's shape): translates in the reference's test-time mode; training is refused."""
  g = R.randomize_(R.define_G(1, 1, 4, "resnet_3blocks", "batch"), 9, G_SCALE)
  wd = tmp_path / "single"
  assert run_cli("import-torch", save(g, tmp_path / "latest_net_G.pth"), "--workdir", wd) == 0
  meta = read_meta(wd)
  assert meta["config"]["model"] == "pix2pix" and meta["config"]["input_nc"] == 1
  assert "one generator" in meta[checkpoint.TRANSLATE_ONLY_KEY]
  image = np.random.default_rng(10).integers(0, 256, (32, 48, 1), dtype=np.uint8)
  assert translate_and_compare(wd, tmp_path, g, image) <= 1   # BatchNorm with the image's own statistics
  before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
  recipe = tmp_path / "r.py"
  recipe.write_text("from jaxgan.config import get_base_config\ndef get_config():\n  return get_base_config()\n")
  capsys.readouterr()
  assert run_cli("train", "--config", recipe, "--workdir", wd) == 1
  err = capsys.readouterr().err
  assert "translate/evaluate only" in err and "cannot be trained" in err and "one generator" in err
  assert sorted(p.relative_to(wd) for p in wd.rglob("*")) == before   # nothing written


def test_lone_G_B_reference_norm_none_with_dropout(tmp_path):
  """norm=none saved by the authors' code (no conv biases), ResNet dropout (conv_block.6): BtoA recorded."""
  g = R.randomize_(R.define_G(3, 3, 4, "resnet_2blocks", "none", use_dropout=True, authors_none=True), 11, 0.3)
  sd = g.state_dict()
  assert "model.1.bias" not in sd and "model.10.conv_block.6.weight" in sd
  wd = tmp_path / "gb"
  assert run_cli("import-torch", save(g, tmp_path / "200_net_G_B.pth"), "--workdir", wd) == 0
  c = read_meta(wd)["config"]
  assert (c["norm"], c["no_dropout"], c["direction"]) == ("none", False, "BtoA")
  image = np.random.default_rng(12).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  assert translate_and_compare(wd, tmp_path, g, image, eval_mode=True) <= 1


# ----------------------------------------------------------------------------- every combination, no CLI


@pytest.mark.parametrize("norm", config_lib.NORMS)
def test_detect_every_reference_network(norm):
  """Each netG / netD the reference can save, with each norm (none: as the authors' code saves it)."""
  from jaxgan.interop import detect
  for net, drop in (("resnet_2blocks", False), ("resnet_2blocks", True), ("unet_32", False), ("unet_64", True)):
    t = R.define_G(2, 3, 4, net, norm, use_dropout=drop, authors_none=True)
    spec, variables = detect.detect({k: v.numpy() for k, v in t.state_dict().items()})
    assert (spec.kind, spec.net, spec.norm, spec.input_nc, spec.output_nc, spec.width) == ("G", net, norm, 2, 3, 4)
    assert spec.use_dropout == (drop if net.startswith("resnet") else None)
    assert bool(variables["batch_stats"]) == (norm == "batch")
  for net, n in (("basic", 3), ("n_layers", 1), ("n_layers", 4), ("pixel", 3)):
    t = R.define_D(5, 4, net, n, norm, authors_none=True)
    spec, _ = detect.detect({k: v.numpy() for k, v in t.state_dict().items()})
    assert (spec.kind, spec.net, spec.norm, spec.input_nc, spec.width, spec.n_layers_D) == ("D", net, norm, 5, 4, n)


def test_fresh_state_matches_the_objectives_init(monkeypatch):
  """build_state's zeros outside the networks equal a real init's (optimiser, pools, step)."""
  from jaxgan import nets as nets_lib, objectives
  from jaxgan.interop import detect
  real_init_network = nets_lib.init_network

  def zeros_init_network(module, rng, sample):  # skip the compiled initialisers: networks are replaced anyway
    shapes = jax.eval_shape(lambda: real_init_network(module, rng, sample))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)

  g = R.define_G(3, 3, 4, "resnet_2blocks", "instance")
  nets = [workdir.ImportedNet(f"/x/{r}.pth", r, *detect.detect({k: v.numpy() for k, v in net.state_dict().items()}),
                              sha256="0")
          for r, net in (("G_A", g), ("G_B", g), ("D_A", R.define_D(3, 4, "basic", 3, "instance")),
                         ("D_B", R.define_D(3, 4, "basic", 3, "instance")))]
  plan = workdir.plan_import(nets)
  with plan.config.unlocked():
    plan.config.crop_size, plan.config.pool_size = 32, 3
    plan.config.ema_decay = 0.999   # a recipe with a weight average: it starts at the imported weights
  state, batch = workdir.build_state(plan)
  assert set(state.ema) == {"G_AB", "G_BA"}
  for slot in state.ema:
    a, b = jax.tree_util.tree_leaves(state.ema[slot]), jax.tree_util.tree_leaves(state.params[slot])
    assert len(a) == len(b) and all(np.array_equal(x, y) and np.any(x != 0) for x, y in zip(a, b) if x.ndim == 4)
  monkeypatch.setattr(nets_lib, "init_network", zeros_init_network)
  fresh = objectives.for_config(plan.config).init(jax.random.PRNGKey(0), plan.config, batch)
  for field in ("step", "opt_state", "pools"):
    a, b = jax.tree_util.tree_leaves(getattr(state, field)), jax.tree_util.tree_leaves(getattr(fresh, field))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), field
  assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(fresh)


# ----------------------------------------------------------------------------- bad input: named, nothing written


class _RunsCode:
  """Unpickling this would create a folder: a weights-only load must refuse it first."""

  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (self.marker,))


def _bad_files(tmp: Path) -> list[tuple[str, list[Path], list[str]]]:
  g = R.define_G(3, 3, 4, "resnet_1blocks", "instance")
  d = R.define_D(3, 4, "basic", 3, "instance")
  cases = []
  torch.save([torch.zeros(2)], tmp / "list.pth")
  cases.append(("not a state_dict", [tmp / "list.pth"], ["list.pth", "not a state_dict"]))
  torch.save({"model.1.weight": _RunsCode(str(tmp / "pwned"))}, tmp / "code.pth")
  cases.append(("pickled code", [tmp / "code.pth"], ["code.pth", "weights_only", "nothing in it was executed"]))
  (tmp / "garbage.pth").write_bytes(b"garbage, not a pickle")
  cases.append(("corrupt", [tmp / "garbage.pth"], ["garbage.pth", "cannot be read"]))
  sd = dict(g.state_dict())
  del sd["model.4.weight"]
  torch.save(sd, tmp / "missing_net_G.pth")
  cases.append(("missing key", [tmp / "missing_net_G.pth"], ["missing_net_G.pth", "model.4.weight", "missing"]))
  sd = dict(g.state_dict())
  sd["model.4.weight"] = torch.zeros(8, 3, 3, 3)   # expects (8, 4, 3, 3)
  torch.save(sd, tmp / "shape_net_G.pth")
  cases.append(("wrong shape", [tmp / "shape_net_G.pth"], ["shape_net_G.pth", "model.4.weight", "(8, 3, 3, 3)"]))
  torch.save({"encoder.0.weight": torch.zeros(4, 3, 3, 3)}, tmp / "other.pth")
  cases.append(("unknown network", [tmp / "other.pth"], ["other.pth", "not a network of the reference",
                                                          "encoder.0.weight"]))
  save(d, tmp / "latest_net_G.pth")
  cases.append(("D named as G", [tmp / "latest_net_G.pth"], ["latest_net_G.pth", "expected a generator"]))
  save(d, tmp / "latest_net_D.pth")
  cases.append(("no generator", [tmp / "latest_net_D.pth"], ["no generator", "latest_net_D.pth"]))
  save(g, tmp / "x_net_G_A.pth")
  save(d, tmp / "x_net_D_A.pth")
  cases.append(("half a CycleGAN", [tmp / "x_net_G_A.pth", tmp / "x_net_D_A.pth"], ["G_A and G_B"]))
  return cases


def test_bad_inputs_are_named_and_nothing_is_written(tmp_path, capsys):
  for name, files, expected in _bad_files(tmp_path):
    wd = tmp_path / f"wd_{name.replace(' ', '_')}"
    capsys.readouterr()
    assert run_cli("import-torch", *files, "--workdir", wd) == 1, name
    err = capsys.readouterr().err
    assert err.startswith("jaxgan import-torch: error: ") and all(e in err for e in expected), (name, err)
    assert not wd.exists(), name
  assert not (tmp_path / "pwned").exists()   # the pickled call never ran


def test_existing_checkpoints_are_never_replaced(cyclegan_import, capsys):
  tmp, wd, _, _ = cyclegan_import
  before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
  capsys.readouterr()
  assert run_cli("import-torch", tmp / "latest_net_G_A.pth", "--workdir", wd) == 1
  assert "already holds checkpoints" in capsys.readouterr().err
  assert sorted(p.relative_to(wd) for p in wd.rglob("*")) == before
