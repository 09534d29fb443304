"""Two full training iterations, PyTorch reference vs ``jaxgan.pix2pix`` / ``jaxgan.cyclegan``.

Same weights (random torch weights and BatchNorm statistics, imported with
``jaxgan.interop``), same batches, dropout off, image pool off. Compared after each of two
iterations: every loss, every updated parameter and every BatchNorm running
statistic. (One iteration cannot see Adam's betas or bias correction: its first
update is ``lr * g / (|g| + eps)`` whatever they are; the second can.)

How parameters are compared: Adam's first step moves each weight by
``lr * g / (|g| + eps)``, i.e. by about ``lr`` whatever the size of ``g``. So the
test compares the *updates* (new - old) in units of ``lr``: for every weight
the updates must agree to ``UPDATE_TOL * lr`` beyond float32 rounding of the
weight itself, plus how far float32 noise on the gradients (``GRAD_NOISE`` times
the largest gradient of the same tensor) can move Adam's update -- which only
matters for gradients within a few orders of magnitude of Adam's ``eps``.
Tensors whose gradient is structurally zero -- the bias of a conv followed by
InstanceNorm, which cancels it -- get a gradient of pure
rounding noise (~1e-7 of the network's largest) in both frameworks and hence an
arbitrary update in [-lr, lr]; for those only ``|update| <= lr`` is checked, and
the test asserts that only such biases, and only under instance norm, are
classified as noise.

The states are the structure of ``init`` (from ``jax.eval_shape``, so no
parameter initialisation is compiled: on the 2-core CI machine that costs tens of
seconds) filled with zeros -- exactly what a fresh Adam state, step counter and
empty image pool hold -- with the imported params and BatchNorm statistics put in.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import require_torch

torch = require_torch()

import torch_reference as R  # noqa: E402  (needs torch)
from jaxgan import config as config_lib  # noqa: E402
from jaxgan import cyclegan, pix2pix  # noqa: E402
from jaxgan.interop import convert_state_dict  # noqa: E402

pytestmark = pytest.mark.torch
LOSS_RTOL = 1e-5
UPDATE_TOL = 1e-3    # |delta_jax - delta_torch| <= UPDATE_TOL * lr (+ float32 rounding of the weight)
STATS_TOL = 1e-5
GRAD_NOISE = 1e-6    # float32 gradient noise, relative to the largest gradient of the same tensor
ADAM_EPS = 1e-8
NOISE_FLOOR = 1e-5   # a tensor whose largest gradient is below NOISE_FLOOR * the network's largest is noise
SIZE = 32


def _config(base, **overrides):
  c = base()
  c.update(dict(ngf=4, ndf=4, crop_size=SIZE, load_size=SIZE, no_dropout=True, num_train_steps=100, lr=2e-4,
                beta1=0.5, pool_size=0))
  c.update(overrides)
  return c


def _images(rng: np.random.Generator, n: int, channels: int = 3) -> np.ndarray:
  return rng.uniform(-1, 1, (n, SIZE, SIZE, channels)).astype(np.float32)


def nchw(x: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(k): np.asarray(v, np.float64) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _grads_as_flax(net, spec: dict) -> dict:
  """The torch ``.grad`` of every parameter, laid out like the Flax params (zeros for no grad)."""
  grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in net.named_parameters()}
  sd = {k: v.detach() for k, v in net.state_dict().items()}
  sd.update(grads)
  return convert_state_dict(sd, **spec)["params"]


def adam_first(g: np.ndarray) -> np.ndarray:
  """Adam's first update in units of lr (bias-corrected): g / (|g| + eps)."""
  return g / (np.abs(g) + ADAM_EPS)


def adam_second(g1: np.ndarray, g2: np.ndarray, b1: float, b2: float = 0.999) -> np.ndarray:
  """Adam's second update in units of lr, from the gradients of both steps."""
  m = (b1 * (1 - b1) * g1 + (1 - b1) * g2) / (1 - b1 ** 2)
  v = (b2 * (1 - b2) * g1 ** 2 + (1 - b2) * g2 ** 2) / (1 - b2 ** 2)
  return m / (np.sqrt(v) + ADAM_EPS)


def noise_sensitivity(update, *grads: np.ndarray) -> np.ndarray:
  """How far float32 noise on the gradients (GRAD_NOISE x each tensor's largest) can move ``update(*grads)``."""
  base = update(*grads)
  total = np.zeros_like(base)
  for i, g in enumerate(grads):
    delta = GRAD_NOISE * np.abs(g).max()
    moved = [update(*grads[:i], g + sign * delta, *grads[i + 1:]) for sign in (1.0, -1.0)]
    total += np.maximum(np.abs(moved[0] - base), np.abs(moved[1] - base))
  return total


def compare_update(name: str, before, after_jax, after_torch, grads, lr: float, norm: str, report: dict) -> None:
  """Updates (after - before) of jax and torch agree to UPDATE_TOL * lr (see the module docstring)."""
  b, j, t, g = _flat(before), _flat(after_jax), _flat(after_torch), _flat(grads)
  assert b.keys() == j.keys() == t.keys() == g.keys()
  g_max = max(float(np.abs(v).max()) for v in g.values())
  noise = [k for k in g if float(np.abs(g[k]).max()) < NOISE_FLOOR * g_max]
  # Only the biases of convs feeding an InstanceNorm may have a (structurally) zero gradient.
  assert all(k.endswith("['bias']") for k in noise) and (norm == "instance" or not noise), (name, noise)
  worst = 0.0
  for k in b:
    d_jax, d_torch = j[k] - b[k], t[k] - b[k]
    if k in noise:
      assert np.all(np.abs(d_jax) <= lr * (1 + 1e-3)), (name, k)
      continue
    rounding = 2 * np.spacing(np.abs(b[k]).astype(np.float32)).astype(np.float64)
    err = (np.abs(d_jax - d_torch) - rounding) / lr
    # d update / d g = eps / (|g| + eps)^2: a gradient at float32 noise level of its tensor moves the update.
    sensitivity = noise_sensitivity(adam_first, g[k])
    assert np.all(err <= UPDATE_TOL + sensitivity), (name, k, float(np.max(err - sensitivity)))
    well_conditioned = sensitivity < 0.1 * UPDATE_TOL
    if well_conditioned.any():
      worst = max(worst, float(err[well_conditioned].max()))
  report[name] = (worst, len(noise))


def compare_second_step(name: str, before, after_jax, after_torch, grads1, grads2, lr: float, beta1: float,
                        report: dict) -> None:
  """Parameters after two iterations agree to 2 * UPDATE_TOL * lr (+ the near-zero-gradient sensitivity)."""
  b, j, t = _flat(before), _flat(after_jax), _flat(after_torch)
  g1, g2 = _flat(grads1), _flat(grads2)
  g_max = max(float(np.abs(v).max()) for v in g1.values())
  worst = 0.0
  for k in b:
    assert np.all(np.isfinite(j[k])), (name, k)
    if float(np.abs(g1[k]).max()) < NOISE_FLOOR * g_max:  # structurally zero gradient: update is noise
      continue
    rounding = 2 * np.spacing(np.abs(b[k]).astype(np.float32)).astype(np.float64)
    err = (np.abs(j[k] - t[k]) - rounding) / lr
    sensitivity = (noise_sensitivity(adam_first, g1[k])
                   + noise_sensitivity(lambda x, y: adam_second(x, y, beta1), g1[k], g2[k]))
    assert np.all(err <= 2 * UPDATE_TOL + sensitivity), (name, k, float(np.max(err - sensitivity)))
    well_conditioned = sensitivity < 0.1 * UPDATE_TOL
    if well_conditioned.any():
      worst = max(worst, float(err[well_conditioned].max()))
  report[name] = report[name] + (worst,)


def compare_stats(name: str, got, want) -> None:
  g, w = _flat(got), _flat(want)
  assert g.keys() == w.keys(), name
  for k in w:
    np.testing.assert_allclose(g[k], w[k], rtol=0, atol=STATS_TOL, err_msg=f"{name}{k}")


def compare_losses(metrics, want: dict) -> float:
  """Every reference loss term matches; returns the largest relative error."""
  assert set(want) <= set(metrics), sorted(set(want) - set(metrics))
  for k, v in want.items():
    np.testing.assert_allclose(float(metrics[k]), v, rtol=LOSS_RTOL, atol=1e-7, err_msg=k)
  return max(abs(float(metrics[k]) - v) / max(abs(v), 1e-7) for k, v in want.items())


def _torch_net(kind: str, cfg, in_nc: int, out_nc: int, seed: int):
  if kind == "G":
    net = R.define_G(in_nc, out_nc, cfg.ngf, cfg.netG, cfg.norm, use_dropout=False)
  else:
    net = R.define_D(in_nc, cfg.ndf, cfg.netD, cfg.n_layers_D, cfg.norm)
  return R.randomize_(net, seed, scale=0.6 if kind == "G" else 1.0)


def _spec(kind: str, cfg) -> dict:
  return dict(kind=kind, net=cfg.netG if kind == "G" else cfg.netD, norm=cfg.norm,
              n_layers_D=None if kind == "G" else cfg.n_layers_D)


def fresh_state(init, cfg, batch):
  """``init``'s state with every leaf zero: a fresh Adam state, step 0, empty pools (params replaced later)."""
  shapes = jax.eval_shape(lambda: init(jax.random.PRNGKey(0), cfg, batch))
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _import(net, spec):
  v = convert_state_dict(net.state_dict(), **spec)
  return v["params"], v["batch_stats"]


def run_and_compare(step, state, nets: dict, specs: dict, torch_iteration, batches, cfg, label: str) -> None:
  """Run the jitted JAX step and the torch iteration on each batch; compare after every iteration.

  ``nets``/``specs`` are keyed like ``state.params``. After the first iteration the
  updates are compared with :func:`compare_update`; after the second (which
  depends on Adam's moments, betas, bias correction and the schedule, none of
  which show in a first step) the parameters are compared with twice the budget.
  """
  lr = float(cfg.lr)
  before = {name: _import(net, specs[name])[0] for name, net in nets.items()}
  first_grads, report = {}, {}
  for it, (a, b) in enumerate(batches):
    state, metrics = step(state, {"A": jnp.asarray(a), "B": jnp.asarray(b)})
    want = torch_iteration(nchw(a), nchw(b))
    report[f"loss_rel_err_{it}"] = compare_losses(metrics, want)
    np.testing.assert_allclose(float(metrics["lr"]), lr, rtol=1e-6)
    for name, net in nets.items():
      after_params, after_stats = _import(net, specs[name])
      grads = _grads_as_flax(net, specs[name])
      compare_stats(name, state.batch_stats[name], after_stats)
      if it == 0:
        compare_update(name, before[name], state.params[name], after_params, grads, lr, cfg.norm, report)
        first_grads[name] = grads
      else:
        compare_second_step(name, before[name], state.params[name], after_params, first_grads[name], grads, lr,
                            float(cfg.beta1), report)
  assert int(state.step) == len(batches)
  print(f"{label}: worst |update error| / lr (well-conditioned weights), noise tensors:", report)


# ----------------------------------------------------------------------------- pix2pix

PIX2PIX_CASES = [  # gan_mode, batch size, networks (the reference pix2pix defaults first)
    ("vanilla", 1, dict(netG="unet_32", netD="basic", norm="batch")),
    ("lsgan", 2, dict(netG="resnet_6blocks", netD="n_layers", n_layers_D=2, norm="instance")),
]


@pytest.mark.parametrize("gan_mode,n,overrides", PIX2PIX_CASES,
                         ids=[f"{c[0]}-b{c[1]}-{c[2]['netG']}-{c[2]['norm']}" for c in PIX2PIX_CASES])
def test_pix2pix_iterations_match_reference(gan_mode, n, overrides):
  cfg = _config(config_lib.get_base_config, gan_mode=gan_mode, batch_size=n, lambda_L1=100.0, **overrides)
  rng = np.random.default_rng(0)
  batches = [(_images(rng, n), _images(rng, n)) for _ in range(2)]
  nets = {"G": _torch_net("G", cfg, 3, 3, 10), "D": _torch_net("D", cfg, 6, 3, 11)}
  specs = {"G": _spec("G", cfg), "D": _spec("D", cfg)}
  imported = {name: _import(net, specs[name]) for name, net in nets.items()}
  state = fresh_state(pix2pix.init, cfg, {"A": batches[0][0], "B": batches[0][1]})
  state = state.replace(params={k: v[0] for k, v in imported.items()},
                        batch_stats={k: v[1] for k, v in imported.items()})
  step = jax.jit(functools.partial(pix2pix.train_step, config=cfg))

  optG, optD = R.adam(nets["G"].parameters(), cfg.lr, cfg.beta1), R.adam(nets["D"].parameters(), cfg.lr, cfg.beta1)
  for net in nets.values():
    net.train()

  def torch_iteration(a, b):
    return R.pix2pix_iteration(nets["G"], nets["D"], optG, optD, a, b, gan_mode, cfg.lambda_L1)

  run_and_compare(step, state, nets, specs, torch_iteration, batches, cfg, f"pix2pix {gan_mode} b{n}")


# ----------------------------------------------------------------------------- CycleGAN

CYCLEGAN_CASES = [  # gan_mode, batch size, networks (the reference CycleGAN defaults first)
    ("lsgan", 1, dict(netG="resnet_6blocks", netD="n_layers", n_layers_D=2, norm="instance")),
    ("vanilla", 2, dict(netG="unet_32", netD="basic", norm="batch")),
]
NETS = {"G_AB": ("G", 3, 3), "G_BA": ("G", 3, 3), "D_A": ("D", 3, 0), "D_B": ("D", 3, 0)}


@pytest.mark.parametrize("gan_mode,n,overrides", CYCLEGAN_CASES,
                         ids=[f"{c[0]}-b{c[1]}-{c[2]['netG']}-{c[2]['norm']}" for c in CYCLEGAN_CASES])
def test_cyclegan_iterations_match_reference(gan_mode, n, overrides):
  cfg = _config(config_lib.get_cyclegan_base_config, gan_mode=gan_mode, batch_size=n, lambda_A=10.0,
                lambda_B=10.0, lambda_identity=0.5, **overrides)
  rng = np.random.default_rng(1)
  batches = [(_images(rng, n), _images(rng, n)) for _ in range(2)]
  nets = {name: _torch_net(kind, cfg, i, o, 20 + s) for s, (name, (kind, i, o)) in enumerate(NETS.items())}
  specs = {name: _spec(kind, cfg) for name, (kind, _, _) in NETS.items()}
  imported = {name: _import(net, specs[name]) for name, net in nets.items()}
  state = fresh_state(cyclegan.init, cfg, {"A": batches[0][0], "B": batches[0][1]})
  state = state.replace(params={k: v[0] for k, v in imported.items()},
                        batch_stats={k: v[1] for k, v in imported.items()})
  step = jax.jit(functools.partial(cyclegan.train_step, config=cfg))

  optG = R.adam(itertools.chain(nets["G_AB"].parameters(), nets["G_BA"].parameters()), cfg.lr, cfg.beta1)
  optD = R.adam(itertools.chain(nets["D_A"].parameters(), nets["D_B"].parameters()), cfg.lr, cfg.beta1)
  for net in nets.values():
    net.train()

  def torch_iteration(a, b):
    want = R.cyclegan_iteration(nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"], optG, optD, a, b,
                                cfg.lambda_A, cfg.lambda_B, cfg.lambda_identity, gan_mode)
    assert want["idt_A"] > 0 and want["idt_B"] > 0
    return want

  run_and_compare(step, state, nets, specs, torch_iteration, batches, cfg, f"cyclegan {gan_mode} b{n}")
