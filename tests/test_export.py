"""``jaxgan export``: the authors' ``.pth`` layout and ONNX, checked against PyTorch and ``translate --eval``.

* Round trip: authors'-format files (``tests/torch_reference.py`` networks, every netG family, batch /
  instance / none norm) imported and exported give the same keys and tensors.
* Tiny jaxgan models (init + perturbed BatchNorm statistics + an EMA that differs from the weights,
  saved through the checkpoint module): the exported ``.pth`` files load with ``strict=True`` into the
  reference networks and give ``jaxgan translate --eval``'s PNGs within 1 level; the exported ONNX run
  in onnxruntime does too, for a square and a non-square size and batches of 1 and 3.
* Bad input: clear one-line errors, nothing written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import require_torch
from helpers import tiny_cyclegan_config, tiny_pix2pix_config

from jaxgan import checkpoint, cli, objectives, train

G_SCALE = 0.6   # random-weight scale that keeps tanh out of saturation


def run_cli(*args) -> int:
  return cli.main([str(a) for a in args])


def torch_and_reference():
  """(torch, tests/torch_reference): the .pth tests need them (skipped without torch); the ONNX test does not."""
  torch = require_torch()
  import torch_reference  # pylint: disable=import-outside-toplevel
  return torch, torch_reference


def save(net, path: Path) -> Path:
  torch, _ = torch_and_reference()
  torch.save(net.state_dict(), path)   # as the reference's save_networks
  return path


def files_under(folder: Path) -> list:
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("net,norm,dropout", [("resnet_1blocks", "instance", False), ("resnet_2blocks", "batch", True),
                                              ("unet_32", "batch", True), ("unet_32", "instance", False),
                                              ("resnet_1blocks", "none", False)])
@pytest.mark.torch
def test_import_then_export_gives_back_the_same_tensors(tmp_path, net, norm, dropout):
  torch, R = torch_and_reference()
  g = R.randomize_(R.define_G(3, 2, 4, net, norm, use_dropout=dropout, authors_none=True), 1, G_SCALE)
  d = R.randomize_(R.define_D(5, 4, "n_layers", 2, norm, authors_none=True), 2)
  files = [save(g, tmp_path / "latest_net_G.pth"), save(d, tmp_path / "latest_net_D.pth")]
  wd, out = tmp_path / "wd", tmp_path / "out"
  drop = [] if net.startswith("resnet") else ["--dropout" if dropout else "--no_dropout"]
  assert run_cli("import-torch", *files, "--workdir", wd, *drop) == 0
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0
  assert files_under(out) == ["latest_net_D.pth", "latest_net_G.pth"]
  for name, original in (("latest_net_G.pth", g.state_dict()), ("latest_net_D.pth", d.state_dict())):
    back = torch.load(out / name, weights_only=True)
    assert list(back) == list(original), name   # the same keys in the same order
    for k, v in original.items():
      assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
      if not k.endswith("num_batches_tracked"):   # jaxgan does not count batches (written 0; never read)
        assert torch.equal(back[k], v), k


@pytest.mark.torch
def test_cyclegan_round_trip_keeps_the_authors_file_names(tmp_path):
  torch, R = torch_and_reference()
  nets = {"G_A": R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 3, G_SCALE),
          "G_B": R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 4, G_SCALE),
          "D_A": R.randomize_(R.define_D(3, 4, "pixel", 3, "instance"), 5),
          "D_B": R.randomize_(R.define_D(3, 4, "pixel", 3, "instance"), 6)}
  wd, out = tmp_path / "wd", tmp_path / "out"
  assert run_cli("import-torch", *[save(n, tmp_path / f"latest_net_{r}.pth") for r, n in nets.items()],
                 "--workdir", wd) == 0
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0
  assert files_under(out) == sorted(f"latest_net_{r}.pth" for r in nets)
  for r, n in nets.items():
    back = torch.load(out / f"latest_net_{r}.pth", weights_only=True)
    assert list(back) == list(n.state_dict()) and all(torch.equal(back[k], v) for k, v in n.state_dict().items())
  out_b = tmp_path / "only_b"   # one direction: its generator only
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out_b, "--direction", "BtoA") == 0
  assert files_under(out_b) == ["latest_net_G_B.pth"]


# ----------------------------------------------------------------------------- jaxgan-made models


def make_workdir(path: Path, config) -> Path:
  """A tiny model saved as a run saves it: init, running statistics and EMA moved away from their init."""
  objective = objectives.for_config(config)
  batch = {k: np.zeros((1, 32, 32, 3), np.float32) for k in ("A", "B")}
  state = objective.init(jax.random.PRNGKey(0), config, batch)
  rng = np.random.default_rng(1)

  def bump(x, scale):
    return x + scale * (np.abs(x).mean() + 0.05) * rng.standard_normal(x.shape).astype(x.dtype)

  stats = jax.tree_util.tree_map(lambda x: jnp.abs(bump(x, 0.3)), state.batch_stats)
  ema = jax.tree_util.tree_map(lambda x: bump(x, 0.5), state.ema)
  state = state.replace(batch_stats=stats, ema=ema, step=jnp.asarray(7, state.step.dtype))
  ckpt = checkpoint.Checkpointer(path, keep=0, async_save=False)
  ckpt.save(7, state, meta=train.make_meta(config, batch))
  ckpt.wait()
  ckpt.close()
  return path


MODELS = {   # name -> (config, image sizes: a square and a non-square one)
    "cyclegan": (tiny_cyclegan_config(netG="resnet_1blocks", ema_decay=0.9), [(32, 32), (32, 48)]),
    "pix2pix": (tiny_pix2pix_config(ema_decay=0.9), [(32, 32), (32, 64)]),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request, tmp_path_factory):
  """(config, workdir, {size: (images [3,H,W,3] uint8, {direction: translate --eval PNGs [3,H,W,C]})})."""
  name = request.param
  config, sizes = MODELS[name]
  tmp = tmp_path_factory.mktemp(name)
  wd = make_workdir(tmp / "wd", config)
  rng = np.random.default_rng(2)
  results = {}
  for h, w in sizes:
    src = tmp / f"in_{h}x{w}"
    src.mkdir()
    images = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
    for i, im in enumerate(images):
      Image.fromarray(im).save(src / f"{i}.png")
    outs = {}
    for d in objectives.for_config(config).DIRECTIONS:
      out = tmp / f"out_{h}x{w}_{d}"
      assert run_cli("translate", "--workdir", wd, "--input", src, "--output", out, "--direction", d, "--eval") == 0
      outs[d] = np.stack([np.asarray(Image.open(out / f"{i}.png")) for i in range(3)])
    results[(h, w)] = (images, outs)
  return config, wd, results


def reference_generator(R, config, direction: str):
  c_in, c_out = (config.input_nc, config.output_nc) if direction == "AtoB" else (config.output_nc, config.input_nc)
  return R.define_G(c_in, c_out, config.ngf, config.netG, config.norm, use_dropout=not config.no_dropout)


@pytest.mark.torch
def test_exported_pth_loads_strictly_and_translates_as_translate_eval(model, tmp_path):
  torch, R = torch_and_reference()
  config, wd, results = model
  out = tmp_path / "pth"
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0
  objective = objectives.for_config(config)
  roles = {slot: role for role, slot in objective.IMPORT_SLOTS.items()}
  assert files_under(out) == sorted(f"latest_net_{r}.pth" for r in roles.values())   # discriminators too
  for slot, role in roles.items():
    sd = torch.load(out / f"latest_net_{role}.pth", weights_only=True)
    if role.startswith("D"):
      n_in = config.input_nc + config.output_nc if slot == "D" else 3
      R.define_D(n_in, config.ndf, config.netD, config.n_layers_D, config.norm).load_state_dict(sd, strict=True)
  for d in objective.DIRECTIONS:
    net = reference_generator(R, config, d)
    net.load_state_dict(torch.load(out / f"latest_net_{roles[objective.GENERATOR_FOR[d]]}.pth", weights_only=True),
                        strict=True)
    net.eval()
    for images, pngs in results.values():
      x = torch.from_numpy((images.astype(np.float32) / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)
      with torch.no_grad():
        y = net(x).permute(0, 2, 3, 1).numpy()
      got = np.rint((np.clip(y, -1, 1) + 1) * 127.5).astype(int)
      assert np.abs(got - pngs[d].astype(int)).max() <= 1, (d, images.shape)


def test_exported_onnx_gives_translate_eval_output(model, tmp_path):
  import onnx
  import onnxruntime as ort
  config, wd, results = model
  out = tmp_path / "onnx"
  assert run_cli("export", "--workdir", wd, "--format", "onnx", "--output", out) == 0
  directions = objectives.for_config(config).DIRECTIONS
  assert files_under(out) == sorted(f"{d}.onnx" for d in directions)
  for d in directions:
    meta = {p.key: p.value for p in onnx.load(out / f"{d}.onnx").metadata_props}
    assert (meta["objective"], meta["direction"], meta["input_size"]) == (config.model, d, "dynamic")
    assert meta["jaxgan_version"] and json.loads(meta["config"])["netG"] == config.netG
    session = ort.InferenceSession(str(out / f"{d}.onnx"))
    for images, pngs in results.values():
      for batch in (images[:1], images):
        got = session.run(None, {"images": batch})[0]
        assert got.dtype == np.uint8 and got.shape == pngs[d][:len(batch)].shape
        assert np.abs(got.astype(int) - pngs[d][:len(batch)].astype(int)).max() <= 1, (d, batch.shape)


def test_onnx_one_direction_to_a_file_at_a_fixed_size(model, tmp_path, capsys):
  import onnxruntime as ort
  config, wd, results = model
  directions = objectives.for_config(config).DIRECTIONS
  target = tmp_path / "g.onnx"
  if len(directions) > 1:   # one file cannot hold two generators
    assert run_cli("export", "--workdir", wd, "--format", "onnx", "--output", target) == 1
    assert "give --direction" in capsys.readouterr().err and not target.exists()
  d = directions[-1]
  (h, w), (images, pngs) = sorted(results.items())[-1]   # the non-square size
  assert run_cli("export", "--workdir", wd, "--format", "onnx", "--output", target, "--direction", d,
                 "--size", f"{h}x{w}") == 0
  session = ort.InferenceSession(str(target))
  assert session.get_inputs()[0].shape[1:] == [h, w, 3]
  got = session.run(None, {"images": images})[0]
  assert np.abs(got.astype(int) - pngs[d].astype(int)).max() <= 1


def test_onnx_traces_the_plain_layer_forms(model):
  """The exported program has none of the XLA:CPU forms' custom VJPs, which the tests' CPU would trace."""
  from jaxgan.interop import export, onnx_export
  config, wd, _ = model
  fn = onnx_export.image_fn(export.load_workdir(wd), "AtoB")
  x = np.zeros((1, 32, 32, 3), np.uint8)
  assert "custom_vjp" in str(jax.make_jaxpr(fn)(x))   # this CPU's default forms
  with onnx_export.plain_forms():
    assert "custom_vjp" not in str(jax.make_jaxpr(fn)(x))


def test_export_uses_the_ema_weights(model, tmp_path):
  """The EMA differs from the weights here, so a graph of the raw weights would not match translate."""
  from jaxgan.interop import export
  config, wd, _ = model
  loaded = export.load_workdir(wd)
  slot = objectives.for_config(config).GENERATOR_FOR["AtoB"]
  chosen = export.generator_variables(loaded, slot)["params"]
  leaf = lambda t: np.asarray(jax.tree_util.tree_leaves(t)[0])
  assert np.array_equal(leaf(chosen), leaf(loaded.state.ema[slot]))
  assert not np.array_equal(leaf(chosen), leaf(loaded.state.params[slot]))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.torch
def test_bad_requests_are_refused_and_nothing_is_written(tmp_path, capsys):
  torch, R = torch_and_reference()
  empty = tmp_path / "empty"
  empty.mkdir()
  out = tmp_path / "out"
  assert run_cli("export", "--workdir", empty, "--format", "pth", "--output", out) == 1
  assert "holds no checkpoint" in capsys.readouterr().err and not out.exists()

  assert run_cli("export", "--workdir", empty, "--format", "tflite", "--output", out) == 2   # argparse
  assert "invalid choice: 'tflite'" in capsys.readouterr().err and not out.exists()

  g = R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 7, G_SCALE)
  wd = tmp_path / "released"   # one generator, as the authors' released models: translate only
  assert run_cli("import-torch", save(g, tmp_path / "latest_net_G_A.pth"), "--workdir", wd) == 0
  capsys.readouterr()
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out, "--discriminators", "yes") == 1
  err = capsys.readouterr().err
  assert "no trained discriminators" in err and "nothing was written" in err and not out.exists()
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 0   # auto: the generator
  assert files_under(out) == ["latest_net_G.pth"]

  target = out / "latest_net_G.pth"
  target.write_bytes(b"keep me")
  capsys.readouterr()
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 1
  assert "already exists" in capsys.readouterr().err and target.read_bytes() == b"keep me"
  onnx_file = tmp_path / "g.onnx"
  onnx_file.write_bytes(b"keep me too")
  assert run_cli("export", "--workdir", wd, "--format", "onnx", "--output", onnx_file) == 1
  assert "--overwrite" in capsys.readouterr().err and onnx_file.read_bytes() == b"keep me too"
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out, "--overwrite") == 0
  assert torch.load(target, weights_only=True).keys() == g.state_dict().keys()
  assert files_under(out) == ["latest_net_G.pth"]   # no temporary file left


@pytest.mark.torch
def test_pth_without_torch_says_so(tmp_path, capsys, monkeypatch):
  torch, R = torch_and_reference()
  g = R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 8, G_SCALE)
  wd = tmp_path / "wd"
  assert run_cli("import-torch", save(g, tmp_path / "latest_net_G.pth"), "--workdir", wd) == 0
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch -> ImportError
  capsys.readouterr()
  out = tmp_path / "out"
  assert run_cli("export", "--workdir", wd, "--format", "pth", "--output", out) == 1
  err = capsys.readouterr().err
  assert "pip install torch" in err and "nothing was written" in err and not out.exists()
