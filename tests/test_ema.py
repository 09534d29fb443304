"""config.ema_decay: an exponential moving average of the generators' weights, used by translate."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import checkpoint, cyclegan, objectives, optim, pix2pix
from helpers import smooth_images, tiny_cyclegan_config, tiny_pix2pix_config


def _max_diff(a, b):
  return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_update_is_the_debiased_average():
  cfg = tiny_pix2pix_config(ema_decay=0.9)
  weights = [jnp.full((3,), float(v)) for v in (5.0, -1.0, 2.0, 7.0)]
  ema = {"G": {"w": jnp.full((3,), 100.0)}}          # what init copies: never part of the average
  for step, w in enumerate(weights):
    ema = optim.update_ema(cfg, ema, {"G": {"w": w}}, jnp.int32(step))
    k = np.array([0.9 ** (step - i) for i in range(step + 1)])
    expected = sum(k[i] * float(weights[i][0]) for i in range(step + 1)) / k.sum()
    np.testing.assert_allclose(np.asarray(ema["G"]["w"]), expected, rtol=1e-5)
  new = {"G": {"w": weights[0]}}
  assert optim.update_ema(tiny_pix2pix_config(), {}, new, jnp.int32(3)) == {}
  assert optim.init_ema(tiny_pix2pix_config(), new) == {}
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match="ema_decay"):
      optim.ema_decay(tiny_pix2pix_config(ema_decay=bad))


def _cyclegan_run(cfg, steps=3):
  rng = np.random.default_rng(0)
  a, b = smooth_images(rng, 2), smooth_images(rng, 2)[..., ::-1]
  batch = {"A": jnp.asarray(a), "B": jnp.asarray(b)}
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, batch)
  step = jax.jit(lambda s, x: cyclegan.train_step(s, x, config=cfg))
  for _ in range(steps):
    st, _ = step(st, batch)
  return st, batch


def test_cyclegan_keeps_an_average_and_translates_with_it():
  cfg = tiny_cyclegan_config(ema_decay=0.9, netG="resnet_1blocks", ngf=4, ndf=4)
  st, batch = _cyclegan_run(cfg)
  assert set(st.ema) == {"G_AB", "G_BA"}
  assert _max_diff(st.ema["G_AB"], st.params["G_AB"]) > 0      # an average, not a copy
  out = cyclegan.translate(st, batch["A"], config=cfg)
  with_avg = st.replace(params={**st.params, "G_AB": st.ema["G_AB"]}, ema={})
  np.testing.assert_array_equal(np.asarray(out), np.asarray(cyclegan.translate(with_avg, batch["A"], config=cfg)))
  assert _max_diff(out, cyclegan.translate(st.replace(ema={}), batch["A"], config=cfg)) > 0


def test_pix2pix_keeps_an_average():
  cfg = tiny_pix2pix_config(ema_decay=0.5, batch_size=1, ngf=4, ndf=4)
  rng = np.random.default_rng(1)
  batch = {"A": jnp.asarray(smooth_images(rng, 1)), "B": jnp.asarray(smooth_images(rng, 1))}
  st = pix2pix.init(jax.random.PRNGKey(0), cfg, batch)
  np.testing.assert_array_equal(np.asarray(jax.tree_util.tree_leaves(st.ema["G"])[0]),
                                np.asarray(jax.tree_util.tree_leaves(st.params["G"])[0]))
  g0 = st.params["G"]
  step = jax.jit(lambda s, x: pix2pix.train_step(s, x, config=cfg))
  st, _ = step(st, batch)
  assert _max_diff(st.ema["G"], st.params["G"]) < 1e-7   # after one step the average is that step's weights
  assert _max_diff(st.ema["G"], g0) > 1e-5
  st, _ = step(st, batch)
  assert _max_diff(st.ema["G"], st.params["G"]) > 0
  out = pix2pix.translate(st, batch["A"], config=cfg)
  np.testing.assert_array_equal(
      np.asarray(out), np.asarray(pix2pix.translate(st.replace(params={**st.params, "G": st.ema["G"]}, ema={}),
                                                    batch["A"], config=cfg)))


def test_a_checkpoint_from_before_the_ema_field_restores(tmp_path):
  cfg = tiny_cyclegan_config(netG="resnet_1blocks", ngf=4, ndf=4)
  rng = np.random.default_rng(0)
  st = cyclegan.init(jax.random.PRNGKey(0), cfg, {"A": smooth_images(rng, 1), "B": smooth_images(rng, 1)})
  assert st.ema == {}   # off by default
  legacy = {f.name: getattr(st, f.name) for f in dataclasses.fields(st) if f.name != "ema"}
  ck = checkpoint.Checkpointer(tmp_path, async_save=False)
  ck.save(1, legacy, meta={"config": cfg.to_dict()})
  ck.wait()
  abstract = objectives.abstract_state(cfg, {"A": (2, 32, 32, 3), "B": (2, 32, 32, 3)})
  restored = ck.restore(1, abstract)
  ck.close()
  assert isinstance(restored, cyclegan.CycleGANState) and restored.ema == {}
  assert _max_diff(restored.params, st.params) == 0
  # A saved config without the key is an EMA-off run: not a mismatch with ema_decay = 0.
  saved = {k: v for k, v in cfg.to_dict().items() if k != "ema_decay"}
  assert checkpoint.config_differences(saved, cfg.to_dict()) == []
  assert checkpoint.config_differences(saved, tiny_cyclegan_config(ema_decay=0.9).to_dict())
  # Another decay keeps the state's shapes: a run may continue with it.
  assert checkpoint.config_differences(tiny_cyclegan_config(ema_decay=0.9).to_dict(),
                                       tiny_cyclegan_config(ema_decay=0.99).to_dict()) == []
