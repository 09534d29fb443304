"""Network parity with the PyTorch reference, and the ``.pth`` import (``jaxgan.interop``).

Random torch weights (BatchNorm running statistics randomised too) -> ``convert_state_dict``
-> the same outputs from ``jaxgan.models`` in eval mode (running statistics) and
train mode (batch statistics, dropout off), and the same BatchNorm running
statistics after one train-mode forward. float32 throughout; tolerance 1e-4 on
the generators' tanh outputs, 1e-4 relative to the largest logit for the
discriminators, 1e-5 on the running statistics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import require_torch

torch = require_torch()

import torch_reference as R  # noqa: E402  (needs torch)
from jaxgan import models  # noqa: E402
from jaxgan.interop import convert_state_dict, load_pth, to_state_dict  # noqa: E402

pytestmark = pytest.mark.torch
NORMS = ("batch", "instance", "none")
OUT_TOL = 1e-4
STATS_TOL = 1e-5
G_SCALE = 0.6  # random-weight scale that keeps the tanh outputs out of saturation

# name, netG, input_nc, output_nc, ngf, (N, H, W)
G_CASES = [
    ("resnet9", "resnet_9blocks", 3, 3, 8, (2, 64, 64)),
    ("resnet6_gray_nonsquare", "resnet_6blocks", 1, 3, 4, (2, 32, 48)),
    ("unet256", "unet_256", 3, 3, 4, (1, 256, 256)),
    ("unet128_nonsquare", "unet_128", 1, 1, 4, (2, 128, 256)),
    ("unet32_multispectral", "unet_32", 2, 5, 4, (3, 32, 32)),
]
# name, netD, n_layers_D, input_nc, ndf, (N, H, W)
D_CASES = [
    ("basic", "basic", 3, 6, 8, (2, 64, 64)),
    ("nlayers1_gray_nonsquare", "n_layers", 1, 1, 8, (2, 16, 24)),
    ("nlayers5", "n_layers", 5, 3, 4, (2, 96, 96)),
    ("pixel", "pixel", 3, 3, 8, (2, 16, 24)),
]


def nchw(x: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


def max_abs_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def assert_trees_close(got, want, tol: float) -> None:
  got_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(got)}
  want_flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(want)}
  assert got_flat.keys() == want_flat.keys()
  for k in want_flat:
    assert max_abs_diff(got_flat[k], want_flat[k]) <= tol, k


def disable_dropout(net) -> None:
  for m in net.modules():
    if isinstance(m, torch.nn.Dropout):
      m.eval()


def check_parity(torch_net, spec: dict, flax_train, flax_eval, variables, x: np.ndarray, tol: float) -> None:
  """Eval and train forward outputs, and BatchNorm statistics after the train forward.

  ``spec``: the ``kind``/``net``/``norm`` keywords of ``convert_state_dict`` for ``torch_net``.
  """
  torch_net.eval()
  with torch.no_grad():
    want_eval = nhwc(torch_net(nchw(x)))
  got_eval = flax_eval.apply(variables, jnp.asarray(x), train=False)
  assert got_eval.shape == want_eval.shape
  err_eval = max_abs_diff(got_eval, want_eval)
  assert err_eval <= tol

  torch_net.train()
  disable_dropout(torch_net)
  with torch.no_grad():
    want_train = nhwc(torch_net(nchw(x)))
  got_train, mutated = flax_train.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
  err_train = max_abs_diff(got_train, want_train)
  assert err_train <= tol
  stats_after = convert_state_dict(torch_net.state_dict(), **spec)["batch_stats"]
  assert_trees_close(mutated.get("batch_stats", {}), stats_after, STATS_TOL)
  err_stats = max((max_abs_diff(a, b) for a, b in zip(jax.tree_util.tree_leaves(mutated.get("batch_stats", {})),
                                                       jax.tree_util.tree_leaves(stats_after))), default=0.0)
  print(f"\n{spec['net']}/{spec['norm']}: max |diff| eval {err_eval:.1e} train {err_train:.1e} "
        f"(tol {tol:.1e}) running stats {err_stats:.1e}", end="")
  if variables["batch_stats"]:  # the statistics really moved away from the randomised ones
    assert max_abs_diff(jax.tree_util.tree_leaves(stats_after)[0],
                        jax.tree_util.tree_leaves(variables["batch_stats"])[0]) > 1e-3


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("case", G_CASES, ids=[c[0] for c in G_CASES])
def test_generator_parity(case, norm):
  _, net, in_nc, out_nc, ngf, (n, h, w) = case
  tnet = R.randomize_(R.define_G(in_nc, out_nc, ngf, net, norm), seed=1, scale=G_SCALE)
  spec = dict(kind="G", net=net, norm=norm)
  variables = convert_state_dict(tnet.state_dict(), **spec)
  assert bool(variables["batch_stats"]) == (norm == "batch")
  flax_net = models.define_G(in_nc, out_nc, ngf, net, norm=norm)
  x = np.random.default_rng(0).uniform(-1, 1, (n, h, w, in_nc)).astype(np.float32)
  check_parity(tnet, spec, flax_net, flax_net, variables, x, OUT_TOL)


@pytest.mark.parametrize("net,size", [("resnet_6blocks", (2, 32, 32)), ("unet_256", (1, 256, 256))])
def test_generator_with_dropout_parity(net, size):
  """Dropout nets: eval mode as is; train mode with dropout off on both sides (same weights)."""
  n, h, w = size
  tnet = R.randomize_(R.define_G(3, 3, 4, net, "batch", use_dropout=True), seed=2, scale=G_SCALE)
  spec = dict(kind="G", net=net, norm="batch")
  if net.startswith("resnet"):  # dropout shifts the residual blocks' layer indices
    assert "model.10.conv_block.6.weight" in tnet.state_dict()
    with pytest.raises(ValueError, match="missing keys"):
      convert_state_dict(tnet.state_dict(), kind="G", net=net, norm="batch", use_dropout=False)
  variables = convert_state_dict(tnet.state_dict(), kind="G", net=net, norm="batch")  # dropout inferred
  x = np.random.default_rng(1).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)
  check_parity(tnet, spec, models.define_G(3, 3, 4, net, norm="batch", use_dropout=False),
               models.define_G(3, 3, 4, net, norm="batch", use_dropout=True), variables, x, OUT_TOL)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("case", D_CASES, ids=[c[0] for c in D_CASES])
def test_discriminator_parity(case, norm):
  _, net, n_layers, in_nc, ndf, (n, h, w) = case
  tnet = R.randomize_(R.define_D(in_nc, ndf, net, n_layers, norm), seed=3)
  spec = dict(kind="D", net=net, norm=norm)
  variables = convert_state_dict(tnet.state_dict(), **spec)  # n_layers_D inferred from the keys
  flax_net = models.define_D(in_nc, ndf, net, n_layers_D=n_layers, norm=norm)
  x = np.random.default_rng(2).uniform(-1, 1, (n, h, w, in_nc)).astype(np.float32)
  tnet.eval()
  with torch.no_grad():
    scale = max(1.0, float(np.abs(nhwc(tnet(nchw(x)))).max()))
  check_parity(tnet, spec, flax_net, flax_net, variables, x, OUT_TOL * scale)


# ----------------------------------------------------------------------------- interop API


@pytest.mark.parametrize("kind,net,norm", [("G", "resnet_6blocks", "batch"), ("G", "unet_32", "instance"),
                                           ("D", "basic", "batch"), ("D", "pixel", "none")])
def test_to_state_dict_round_trip_through_torch(kind, net, norm):
  """Any Flax variables of the model's tree -> reference state_dict -> strict torch load -> back: identical."""
  if kind == "G":
    module, tnet = models.define_G(3, 2, 4, net, norm=norm), R.define_G(3, 2, 4, net, norm)
  else:
    module, tnet = models.define_D(3, 4, net, norm=norm), R.define_D(3, 4, net, 3, norm)
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
  rng = np.random.default_rng(7)
  variables = jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)
  sd = to_state_dict(variables, kind=kind, net=net, norm=norm)
  tnet.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
  back = convert_state_dict(tnet.state_dict(), kind=kind, net=net, norm=norm)
  assert_trees_close(back["params"], variables["params"], 0.0)
  assert_trees_close(back["batch_stats"], variables.get("batch_stats", {}), 0.0)


def _basic_sd(norm="batch"):
  return {k: v.clone() for k, v in R.randomize_(R.define_D(3, 4, "basic", 3, norm), seed=4).state_dict().items()}


def test_convert_reports_missing_and_unexpected_keys():
  sd = _basic_sd()
  del sd["model.5.weight"]
  sd["model.12.weight"] = torch.zeros(1)
  with pytest.raises(ValueError) as err:
    convert_state_dict(sd, kind="D", net="basic", norm="batch")
  assert "model.5.weight" in str(err.value) and "model.12.weight" in str(err.value)


def test_convert_reports_wrong_norm_and_wrong_net():
  with pytest.raises(ValueError, match=r"model\.3\.weight"):  # batch-norm file read as instance norm
    convert_state_dict(_basic_sd("batch"), kind="D", net="basic", norm="instance")
  with pytest.raises(ValueError, match="missing keys"):
    convert_state_dict(_basic_sd("batch"), kind="D", net="n_layers", n_layers_D=4, norm="batch")
  with pytest.raises(ValueError, match="not a generator"):
    convert_state_dict(_basic_sd("batch"), kind="G", net="basic", norm="batch")


def test_convert_reports_shape_mismatch():
  sd = _basic_sd()
  sd["model.5.weight"] = torch.zeros(16, 4, 4, 4)  # expects (16, 8, 4, 4)
  with pytest.raises(ValueError, match=r"model\.5\.weight.*\(16, 4, 4, 4\)"):
    convert_state_dict(sd, kind="D", net="basic", norm="batch")


def test_convert_accepts_numpy_dataparallel_prefix_and_legacy_instance_stats():
  tnet = R.randomize_(R.define_D(3, 4, "basic", 3, "instance"), seed=5)
  want = convert_state_dict(tnet.state_dict(), kind="D", net="basic", norm="instance")
  sd = {f"module.{k}": v.numpy() for k, v in tnet.state_dict().items()}
  sd["module.model.3.running_mean"] = np.zeros(8, np.float32)  # pre-0.4 InstanceNorm checkpoints have these
  sd["module.model.3.running_var"] = np.ones(8, np.float32)
  got = convert_state_dict(sd, kind="D", net="basic", norm="instance")
  assert_trees_close(got, want, 0.0)


def test_load_pth(tmp_path):
  tnet = R.randomize_(R.define_G(3, 3, 4, "unet_32", "batch"), seed=6)
  path = tmp_path / "latest_net_G.pth"
  torch.save(tnet.state_dict(), path)
  got = load_pth(path, kind="G", net="unet_32", norm="batch")
  assert_trees_close(got, convert_state_dict(tnet.state_dict(), kind="G", net="unet_32", norm="batch"), 0.0)
  with pytest.raises(ValueError, match="latest_net_G.pth"):  # wrong options: the error names the file
    load_pth(path, kind="G", net="unet_64", norm="batch")


class _NotWeights:  # an object a weights-only load must refuse to unpickle
  pass


def test_load_pth_refuses_non_state_dicts(tmp_path):
  pickled = tmp_path / "object.pth"
  torch.save({"net": _NotWeights()}, pickled)
  with pytest.raises(ValueError, match="weights_only"):
    load_pth(pickled, kind="D", net="basic", norm="batch")
  as_list = tmp_path / "list.pth"
  torch.save([torch.zeros(2)], as_list)
  with pytest.raises(ValueError, match="not a state_dict"):
    load_pth(as_list, kind="D", net="basic", norm="batch")
  mixed = tmp_path / "checkpoint.pth"
  torch.save({"epoch": 3, "model.0.weight": torch.zeros(2)}, mixed)
  with pytest.raises(ValueError, match=r"not a state_dict.*'epoch'"):
    load_pth(mixed, kind="D", net="basic", norm="batch")
  nested = tmp_path / "nested.pth"   # a training checkpoint with the weights under "state_dict" is read
  torch.save({"epoch": 3, "state_dict": _basic_sd()}, nested)
  assert_trees_close(load_pth(nested, kind="D", net="basic", norm="batch"),
                     convert_state_dict(_basic_sd(), kind="D", net="basic", norm="batch"), 0.0)
  with pytest.raises(FileNotFoundError):
    load_pth(tmp_path / "missing.pth", kind="D", net="basic", norm="batch")
