"""CycleGAN: state contents, the jitted step learns and compiles once, pools, translate."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import cyclegan
from helpers import smooth_images, tiny_cyclegan_config


def _unpaired(n=8, seed=0):
  rng = np.random.default_rng(seed)
  a = smooth_images(rng, n)
  b = np.clip(smooth_images(rng, n)[..., ::-1] * 0.5 + 0.3, -1, 1)  # another "style"
  return a, b


def test_init_state_holds_everything():
  cfg = tiny_cyclegan_config()
  a, b = _unpaired(2)
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": a, "B": b})
  assert set(st.params) == {"G_AB", "G_BA", "D_A", "D_B"}
  assert set(st.opt_state) == {"G", "D"}
  assert st.pools["A"].images.shape == (4, 32, 32, 3) and int(st.pools["B"].count) == 0
  assert all(v == {} for v in st.batch_stats.values())  # instance norm: no running statistics


def test_cyclegan_learns_fills_pools_and_compiles_once():
  cfg = tiny_cyclegan_config(lr=1e-3, num_train_steps=100)
  a, b = _unpaired(8)
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": a[:2], "B": b[:2]})
  traces = []

  def counted(state, batch):
    traces.append(1)
    return cyclegan.train_step(state, batch, config=cfg)

  step = jax.jit(counted, donate_argnums=0)
  cyc = []
  for i in range(100):
    ia, ib = np.arange(2 * i, 2 * i + 2) % 8, np.arange(3 * i, 3 * i + 2) % 8
    st, m = step(st, {"A": jnp.asarray(a[ia]), "B": jnp.asarray(b[ib])})
    cyc.append(float(m["cycle_A"]) + float(m["cycle_B"]))
    if i == 0:
      assert set(m) >= {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "G", "D", "lr"}
      assert float(m["idt_A"]) > 0
  assert len(traces) == 1
  assert int(st.pools["A"].count) == 4 and int(st.pools["B"].count) == 4
  assert np.all(np.isfinite(cyc))
  assert np.mean(cyc[-10:]) < 0.5 * np.mean(cyc[:5]), (cyc[:5], cyc[-10:])


def test_identity_needs_equal_channels():
  cfg = tiny_cyclegan_config(output_nc=1)
  a, b = _unpaired(2)
  with pytest.raises(ValueError, match="lambda_identity"):
    cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": a, "B": b[..., :1]})
  cfg.lambda_identity = 0.0
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": a, "B": b[..., :1]})
  st, m = jax.jit(functools.partial(cyclegan.train_step, config=cfg))(st, {"A": a, "B": b[..., :1]})
  assert float(m["idt_A"]) == 0.0
  out = cyclegan.translate(st, jnp.asarray(a), config=cfg, direction="AtoB")
  back = cyclegan.translate(st, out, config=cfg, direction="BtoA")
  assert out.shape == (2, 32, 32, 1) and back.shape == (2, 32, 32, 3)
  with pytest.raises(ValueError, match="channels"):
    cyclegan.translate(st, jnp.asarray(a), config=cfg, direction="BtoA")


def test_batch_norm_variant_keeps_running_stats():
  cfg = tiny_cyclegan_config(norm="batch", pool_size=0, lambda_identity=0.0)
  a, b = _unpaired(2)
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": a, "B": b})
  before = jax.tree.map(np.asarray, st.batch_stats)
  st, _ = jax.jit(functools.partial(cyclegan.train_step, config=cfg))(st, {"A": a, "B": b})
  for name in ("G_AB", "G_BA", "D_A", "D_B"):
    leaves_b = jax.tree.leaves(before[name]); leaves_a = jax.tree.leaves(st.batch_stats[name])
    assert leaves_b and any(not np.allclose(x, y) for x, y in zip(leaves_b, leaves_a)), name
