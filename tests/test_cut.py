"""CUT / FastCUT: the anti-aliased networks, PatchNCE and one training iteration against the PyTorch reference
written from the authors' recipe (tests/torch_reference_cut.py), and the authors' parameter counts.

Parity setup as tests/test_parity_steps.py: random torch weights copied into the JAX state (the rest of the
state zero: a fresh Adam), the same batch, the same patch positions (the JAX step's own draws, read with
``cut.step_draws``/``cut.patch_ids`` and handed to torch) and flip; losses to LOSS_RTOL, updates to
UPDATE_TOL * lr (its ``compare_update``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import config as config_lib, cut, losses, models, objectives

SIZE = 32
LAYERS = (0, 4, 8, 12, 16)


def tiny_cut_config(**overrides):
  c = config_lib.get_base_config("cut")
  c.update(dict(netG="resnet_5blocks", ngf=4, ndf=4, crop_size=SIZE, load_size=SIZE, batch_size=2,
                num_train_steps=100, num_patches=16, netF_nc=8))
  c.update(overrides)
  return c


# ----------------------------------------------------------------------------- without torch


def test_parameter_counts_are_the_authors():
  """G 11,378,179, D 2,764,737, F 560,384 at ngf = ndf = 64, netF_nc 256, 256x256 (shapes only)."""
  c = config_lib.get_base_config("cut")
  c.num_train_steps = 10
  assert (c.no_antialias, c.no_antialias_up, c.init_type, c.nce_layers) == (False, False, "xavier", LAYERS)
  x = np.zeros((1, 256, 256, 3), np.float32)
  state = jax.eval_shape(lambda: cut.init(jax.random.PRNGKey(0), c, {"A": x, "B": x}))
  counts = {k: models.count_params(v) for k, v in state.params.items()}
  assert counts == {"G": 11_378_179, "D": 2_764_737, "F": 560_384}
  G, D = cut.networks(c)["G"], cut.networks(c)["D"]
  assert jax.eval_shape(lambda p: D.apply({"params": p}, x), state.params["D"]).shape == (1, 30, 30, 1)
  feats = jax.eval_shape(lambda p: G.apply({"params": p}, x, features=LAYERS), state.params["G"])
  assert [f.shape for f in feats] == [(1, 262, 262, 3), (1, 256, 256, 128), (1, 128, 128, 256),
                                      (1, 64, 64, 256), (1, 64, 64, 256)]


def test_registered_with_its_keys():
  assert "cut" in objectives.NAMES and objectives.get("cut") is cut
  assert cut.DIRECTIONS == ("AtoB",) and cut.GENERATOR_FOR == {"AtoB": "G"}
  c = config_lib.get_base_config("cyclegan")
  c.lambda_NCE = 1.0
  with pytest.raises(ValueError, match="lambda_NCE is a key of model cut"):
    config_lib.check_objective_keys(c)


def test_recipes_are_the_authors_presets():
  from jaxgan.commands import config_args
  cut_c, fast_c, demo = (config_args.load_config_file(n) for n in ("cut_horse2zebra", "fastcut_horse2zebra",
                                                                     "cut_demo"))
  for c in (cut_c, fast_c, demo):
    config_lib.validate(c)
    assert c.model == "cut"
  assert not cut_c.no_antialias and not cut_c.no_antialias_up and not fast_c.no_antialias
  assert (cut_c.lambda_NCE, cut_c.nce_idt, cut_c.flip_equivariance, cut_c.n_epochs, cut_c.n_epochs_decay) == (
      1.0, True, False, 200, 200)
  assert (fast_c.lambda_NCE, fast_c.nce_idt, fast_c.flip_equivariance, fast_c.n_epochs, fast_c.n_epochs_decay) == (
      10.0, False, True, 150, 50)
  assert cut_c.dataset == fast_c.dataset == "tfds:cycle_gan/horse2zebra" and demo.dataset == "demo:seasons"


def test_patch_nce_loss_matches_its_definition_and_detaches_keys():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 5, 4)).astype(np.float32)
  k = rng.normal(size=(2, 5, 4)).astype(np.float32)
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  k /= np.linalg.norm(k, axis=-1, keepdims=True)
  want = []
  for b in range(2):
    for i in range(5):
      logits = [q[b, i] @ k[b, i]] + [(-10.0 if j == i else q[b, i] @ k[b, j]) for j in range(5)]
      logits = np.asarray(logits, np.float64) / 0.07
      want.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0])
  got = losses.patch_nce_loss(q, k, temperature=0.07)
  np.testing.assert_allclose(float(got), np.mean(want), rtol=1e-5)
  g_k = jax.grad(lambda kk: losses.patch_nce_loss(q, kk))(jnp.asarray(k))
  assert float(jnp.abs(g_k).max()) == 0.0
  assert float(jnp.abs(jax.grad(lambda qq: losses.patch_nce_loss(qq, k))(jnp.asarray(q))).max()) > 0
  # All negatives from the minibatch: one image of B*P rows.
  flat = losses.patch_nce_loss(q.reshape(1, 10, 4), k.reshape(1, 10, 4))
  np.testing.assert_allclose(float(losses.patch_nce_loss(q, k, all_negatives_from_minibatch=True)), float(flat),
                             rtol=1e-6)
  assert abs(float(flat) - float(got)) > 1e-3


def test_patch_positions_are_distinct_static_and_keyed():
  feats = [jax.ShapeDtypeStruct((2, 6, 6, 3), jnp.float32), jax.ShapeDtypeStruct((2, 3, 3, 8), jnp.float32)]
  ids = cut.patch_ids(jax.random.PRNGKey(1), feats, 16)
  assert [i.shape for i in ids] == [(16,), (9,)]
  assert len(set(np.asarray(ids[0]).tolist())) == 16 and sorted(np.asarray(ids[1]).tolist()) == list(range(9))
  again = cut.patch_ids(jax.random.PRNGKey(2), feats, 16)
  assert not np.array_equal(np.asarray(ids[0]), np.asarray(again[0]))


# ----------------------------------------------------------------------------- against the PyTorch reference


def _torch():
  from conftest import require_torch
  return require_torch()



def _tree(net, kind: str, value=lambda p: p.detach().numpy().copy()):
  """The Flax params of the torch CUT ``G``/``D``/``F`` (``value``: the weight, or its ``.grad``)."""
  import torch
  import torch_reference as R
  out = {}

  def put(name, m):
    w = value(m.weight)
    k = w.transpose(2, 3, 0, 1) if isinstance(m, torch.nn.ConvTranspose2d) else w.transpose(2, 3, 1, 0)
    entry = {"kernel": k}
    if m.bias is not None:
      entry["bias"] = value(m.bias)
    return name, entry

  if kind == "F":
    for name, mlp in net.named_children():
      for j in (0, 2):
        out[f"{name}_fc_{j}"] = {"kernel": value(mlp[j].weight).T, "bias": value(mlp[j].bias)}
    return out
  convs = [m for m in net.model if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, R.ResnetBlock))]
  if kind == "D":
    return dict(put(f"conv_{i}", m) for i, m in enumerate(convs))
  blocks = [m for m in convs if isinstance(m, R.ResnetBlock)]
  plain = [m for m in convs if not isinstance(m, R.ResnetBlock)]
  names = ["stem_conv", "down_0_conv", "down_1_conv", "up_0_conv", "up_1_conv", "head_conv"]
  out.update(dict(put(n, m) for n, m in zip(names, plain)))
  for i, blk in enumerate(blocks):
    out[f"block_{i}"] = dict(put(f"conv_{j}", blk.conv_block[idx]) for j, idx in ((0, 1), (1, 5)))
  return out


def _nhwc(t):
  return np.asarray(t.detach().numpy()).transpose(0, 2, 3, 1)


def _nchw(x):
  import torch
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@pytest.mark.torch
@pytest.mark.parametrize("aa", [True, False], ids=["antialiased", "plain"])
def test_networks_and_features_match_reference(aa):
  """Outputs of G and D and G's features at nce_layers 0,4,8,12,16 (both layouts: the indices land on other
  modules without anti-aliasing, and the in-place ReLU after a tapped norm shows in the authors' list)."""
  torch = _torch()
  import torch_reference as R
  import torch_reference_cut as RC
  netG = R.randomize_(RC.ResnetGenerator(3, 3, 4, "instance", 7, no_antialias=not aa, no_antialias_up=not aa),
                      0, scale=0.6)
  netD = R.randomize_(RC.NLayerDiscriminator(3, 4, 3, "instance", no_antialias=not aa), 1)
  G = models.define_G(3, 3, 4, "resnet_7blocks", norm="instance", no_antialias=not aa, no_antialias_up=not aa)
  D = models.define_D(3, 4, "basic", norm="instance", no_antialias=not aa)
  x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, 48, 3)).astype(np.float32)   # non-square
  pg, pd = {"params": _tree(netG, "G")}, {"params": _tree(netD, "D")}
  with torch.no_grad():
    want_g, want_d = netG(_nchw(x)), netD(_nchw(x))
    want_f = netG(_nchw(x), list(LAYERS), encode_only=True)
  np.testing.assert_allclose(np.asarray(G.apply(pg, x)), _nhwc(want_g), atol=2e-5)
  np.testing.assert_allclose(np.asarray(D.apply(pd, x)), _nhwc(want_d), rtol=1e-4, atol=2e-5)
  got_f = G.apply(pg, x, features=LAYERS)
  for i, (g, w) in enumerate(zip(got_f, want_f)):
    np.testing.assert_allclose(np.asarray(g), _nhwc(w), rtol=1e-4, atol=2e-5, err_msg=f"layer {LAYERS[i]}")
  if not aa:   # layer 8 is down_1's norm: the authors' list holds it after the in-place ReLU
    assert float(np.asarray(got_f[2]).min()) >= 0.0


CASES = {  # name -> overrides (the authors' CUT_mode presets)
    "CUT": dict(lambda_NCE=1.0, nce_idt=True, flip_equivariance=False),
    "FastCUT": dict(lambda_NCE=10.0, nce_idt=False, flip_equivariance=True),
}


# Float32 noise on G's gradients, relative to each tensor's largest: test_parity_steps' 1e-6 holds for CUT; in
# FastCUT (lambda_NCE 10: the NCE terms' larger, cancelling contributions) one of block_2/conv_0's 2,304
# weights has |g| = 7e-7 of the tensor's largest in torch and the opposite sign in JAX (a difference of
# 1.9e-6 of the largest), so Adam moves it by +lr in one and -lr in the other. Every other weight agrees.
GRAD_NOISE = {"CUT": 1e-6, "FastCUT": 3e-6}


@pytest.mark.torch
@pytest.mark.parametrize("mode", list(CASES))
def test_iteration_matches_reference(mode, monkeypatch):
  torch = _torch()
  import test_parity_steps as PS
  monkeypatch.setattr(PS, "GRAD_NOISE", GRAD_NOISE[mode])
  import torch_reference as R
  import torch_reference_cut as RC
  cfg = tiny_cut_config(**CASES[mode])
  n = int(cfg.batch_size)
  rng = np.random.default_rng(3)
  a = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  torch.manual_seed(0)
  netG = R.randomize_(RC.ResnetGenerator(3, 3, 4, "instance", 5), 10, scale=0.6)
  netD = R.randomize_(RC.NLayerDiscriminator(3, 4, 3, "instance"), 11)
  with torch.no_grad():
    chans = [f.shape[1] for f in netG(_nchw(a), list(LAYERS), encode_only=True)]
  netF = RC.PatchSampleF(chans, int(cfg.netF_nc))
  nets = {"G": netG, "D": netD, "F": netF}
  state = PS.fresh_state(cut.init, cfg, {"A": a, "B": b})
  seed = 0
  if cfg.flip_equivariance:   # a state key whose first step flips the batch: the flip path is checked
    while not bool(cut.step_draws(jax.random.PRNGKey(seed), 0, cfg)[0]):
      seed += 1
  state = state.replace(params={k: _tree(v, k) for k, v in nets.items()}, rng=jax.random.PRNGKey(seed))
  flipped, k_nce, _ = cut.step_draws(state.rng, 0, cfg)
  G = cut.networks(cfg)["G"]
  shapes = jax.eval_shape(lambda p: G.apply({"params": p}, a, features=LAYERS), state.params["G"])
  ids = [[np.asarray(i) for i in cut.patch_ids(jax.random.fold_in(k_nce, c), shapes, cfg.num_patches)]
         for c in range(2)]
  before = {k: _tree(v, k) for k, v in nets.items()}
  step = jax.jit(functools.partial(cut.train_step, config=cfg))
  new_state, metrics = step(state, {"A": jnp.asarray(a), "B": jnp.asarray(b)})

  opts = {k: R.adam(v.parameters(), cfg.lr, cfg.beta1) for k, v in nets.items()}
  for net in nets.values():
    net.train()
  opt = dict(cfg.to_dict(), nce_layers=list(LAYERS))
  want = RC.cut_iteration(netG, netD, netF, opts["G"], opts["D"], opts["F"], _nchw(a), _nchw(b), opt=opt,
                          flipped=bool(flipped), patch_ids=ids)
  assert ("NCE_Y" in want) == bool(cfg.nce_idt) and bool(flipped) == bool(cfg.flip_equivariance)
  report = {"loss_rel_err": PS.compare_losses(metrics, want)}
  grad = lambda p: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()  # noqa: E731
  for name, net in nets.items():
    PS.compare_update(name, before[name], new_state.params[name], _tree(net, name), _tree(net, name, grad),
                      float(cfg.lr), "instance", report)
  print(mode, report)


# ----------------------------------------------------------------------------- 8 devices


def _eight_device_worker() -> dict:
  """Run in a subprocess with 8 fake CPU devices: one CUT step over the 8-device mesh vs one device."""
  import jax
  from jaxgan import parallel
  assert jax.device_count() == 8
  out = {}
  for mode in ("CUT", "FastCUT"):
    # ngf = ndf = 8 as tests/test_parallel.py: at 4 an instance-norm channel is near-constant and turns the
    # blockings' float rounding into 2e-3 of G's largest gradient (FastCUT); at 8 it is 7e-6.
    cfg = tiny_cut_config(batch_size=8, netG="resnet_1blocks", nce_layers=(0, 4, 8, 12), ngf=8, ndf=8,
                          **CASES[mode])
    rng = np.random.default_rng(0)
    batch = {k: rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32) for k in ("A", "B")}
    seed = 0
    while bool(cut.step_draws(jax.random.PRNGKey(seed), 0, cfg)[0]) != bool(cfg.flip_equivariance):
      seed += 1
    state = cut.init(seed, cfg, batch)
    state = state.replace(rng=jax.random.PRNGKey(seed))
    one, m_one = jax.jit(functools.partial(cut.train_step, config=cfg))(state, batch)
    mesh = parallel.make_mesh()
    step = parallel.jit_train_step(cut.train_step, cfg, mesh, donate=False)
    many, m_many = step(parallel.replicate(state, mesh), parallel.shard_batch(batch, mesh))
    grads = 0.0   # after one Adam step mu = (1 - beta1) * grad: the gradients, relative to each network's largest
    for net in ("G", "D", "F"):
      pairs = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in
               zip(jax.tree.leaves(one.opt_state[net][0].mu), jax.tree.leaves(many.opt_state[net][0].mu))]
      top = max(float(np.abs(a).max()) for a, _ in pairs)
      grads = max(grads, max(float(np.abs(a - b).max()) for a, b in pairs) / top)
    metrics = max(abs(float(m_one[k]) - float(m_many[k])) / max(abs(float(m_one[k])), 1e-6) for k in m_one)
    out[mode] = {"grads": grads, "metrics": metrics, "keys": sorted(m_one)}
  return out


@pytest.mark.slow   # 90 s on the 2-core CI machine (an 8-device compile of each step): python -m pytest -m slow
def test_eight_devices_equal_one_device(request):
  """One CUT and one FastCUT step sharded over 8 fake devices: the one-device losses and gradients of every
  network (patch positions and the flip are the same draws on every device)."""
  if "slow" not in (request.config.getoption("markexpr") or ""):
    pytest.skip("slow: run with -m slow")
  import json
  import os
  import subprocess
  import sys
  from pathlib import Path
  here = Path(__file__).resolve().parent
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  code = f"import sys, json; sys.path.insert(0, {str(here)!r}); import test_cut; print(json.dumps(test_cut._eight_device_worker()))"
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                        cwd=str(here.parent))
  assert proc.returncode == 0, proc.stderr[-4000:]
  r = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
  for mode, rep in r.items():
    assert rep["metrics"] < 1e-5, (mode, rep)
    assert rep["grads"] < 1e-4, (mode, rep)
  assert "NCE_Y" in r["CUT"]["keys"] and "NCE_Y" not in r["FastCUT"]["keys"]
