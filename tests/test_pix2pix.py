"""pix2pix: state contents, the jitted step learns and compiles once, translate semantics."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import optim, pix2pix
from helpers import paired_problem, tiny_pix2pix_config


def _batch(a, b, idx):
  return {"A": jnp.asarray(a[idx]), "B": jnp.asarray(b[idx])}


def test_init_state_holds_everything():
  cfg = tiny_pix2pix_config()
  a, b = paired_problem(2)
  st = pix2pix.init(jax.random.PRNGKey(0), cfg, _batch(a, b, slice(0, 2)))
  assert int(st.step) == 0
  assert set(st.params) == {"G", "D"} and set(st.opt_state) == {"G", "D"}
  assert st.batch_stats["G"] and st.batch_stats["D"]  # norm=batch -> running statistics kept
  # D is conditioned on the input: its first kernel sees input_nc + output_nc channels
  first = jax.tree.leaves(st.params["D"])
  assert any(x.ndim == 4 and x.shape[2] == 6 for x in first)


def test_pix2pix_learns_and_compiles_once():
  cfg = tiny_pix2pix_config(lr=1e-3, no_dropout=True, num_train_steps=120)
  a, b = paired_problem(8)
  st = pix2pix.init(jax.random.PRNGKey(0), cfg, _batch(a, b, slice(0, 2)))
  traces = []

  def counted(state, batch):
    traces.append(1)
    return pix2pix.train_step(state, batch, config=cfg)

  step = jax.jit(counted, donate_argnums=0)
  l1 = []
  for i in range(120):
    idx = np.arange(2 * i, 2 * i + 2) % 8
    st, m = step(st, _batch(a, b, idx))
    l1.append(float(m["G_L1"]))
    if i == 0:
      assert set(m) == {"G_GAN", "G_L1", "G", "D_real", "D_fake", "D", "lr"}
      assert all(v.dtype == jnp.float32 and v.shape == () for v in m.values())
  assert len(traces) == 1, "train_step retraced"
  assert int(st.step) == 120
  assert np.all(np.isfinite(l1))
  assert np.mean(l1[-10:]) < 0.5 * np.mean(l1[:5]), (l1[:5], l1[-10:])
  assert float(m["lr"]) == pytest.approx(float(optim.lr_schedule(cfg)(119)), rel=1e-5)


def test_wgangp_adds_a_positive_penalty():
  cfg = tiny_pix2pix_config(gan_mode="wgangp", norm="instance")
  a, b = paired_problem(2)
  st = pix2pix.init(jax.random.PRNGKey(1), cfg, _batch(a, b, slice(0, 2)))
  _, m = jax.jit(functools.partial(pix2pix.train_step, config=cfg))(st, _batch(a, b, slice(0, 2)))
  penalty = float(m["D"]) - 0.5 * (float(m["D_real"]) + float(m["D_fake"]))
  assert penalty > 0 and np.isfinite(penalty)


def test_translate_each_image_as_if_alone():
  cfg = tiny_pix2pix_config(no_dropout=True)
  a, b = paired_problem(3)
  st = pix2pix.init(jax.random.PRNGKey(0), cfg, _batch(a, b, slice(0, 2)))
  st, _ = jax.jit(functools.partial(pix2pix.train_step, config=cfg))(st, _batch(a, b, slice(0, 2)))
  both = pix2pix.translate(st, jnp.asarray(a[:3]), config=cfg)
  alone = pix2pix.translate(st, jnp.asarray(a[1:2]), config=cfg)
  np.testing.assert_allclose(both[1], alone[0], atol=1e-5)
  assert both.shape == (3, 32, 32, 3) and float(jnp.max(jnp.abs(both))) <= 1.0
  # --eval mode uses the running statistics: different from per-image statistics
  ev = pix2pix.translate(st, jnp.asarray(a[:3]), config=cfg, eval_mode=True)
  ev1 = pix2pix.translate(st, jnp.asarray(a[1:2]), config=cfg, eval_mode=True)
  np.testing.assert_allclose(ev[1], ev1[0], atol=1e-5)
  assert not np.allclose(ev, both, atol=1e-3)


def test_bad_batch_and_direction_are_reported():
  cfg = tiny_pix2pix_config()
  a, b = paired_problem(2)
  with pytest.raises(ValueError, match=r"batch\['B'\].*1 channels"):
    pix2pix.init(jax.random.PRNGKey(0), cfg, {"A": a, "B": b[..., :1]})
  with pytest.raises(ValueError, match="multiples of 32"):
    pix2pix.init(jax.random.PRNGKey(0), cfg, {"A": a[:, :24], "B": b[:, :24]})
  with pytest.raises(ValueError, match="netD"):
    pix2pix.init(jax.random.PRNGKey(0), tiny_pix2pix_config(netD="huge"), _batch(a, b, slice(0, 2)))
  st = pix2pix.init(jax.random.PRNGKey(0), cfg, _batch(a, b, slice(0, 2)))
  with pytest.raises(ValueError, match="AtoB"):
    pix2pix.translate(st, jnp.asarray(a), config=cfg, direction="BtoA")
