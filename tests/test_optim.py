"""The learning-rate schedule and the optimiser of the reference recipe."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgan import config as config_lib
from jaxgan import optim


def _cfg(**kw):
  c = config_lib.get_base_config()
  c.update(kw)
  return c


def test_epoch_schedule_matches_reference_linear_policy():
  c = _cfg(lr=1.0, n_epochs=2, n_epochs_decay=2, steps_per_epoch=3)
  f = optim.lr_schedule(c)
  got = [float(f(jnp.asarray(s))) for s in range(12)]
  # epochs 1-2 constant, epoch 3 -> 1 - 1/3, epoch 4 -> 1 - 2/3 (reference: 1 - max(0, e - n) / (n_decay + 1))
  want = [1.0] * 6 + [2 / 3] * 3 + [1 / 3] * 3
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_epoch_count_starts_the_schedule_later_and_shortens_the_run():
  """Reference --epoch_count: epoch e of the run is schedule epoch e + epoch_count - 1 (end-of-epoch placement)."""
  from jaxgan import train
  base = _cfg(lr=1.0, n_epochs=2, n_epochs_decay=2, steps_per_epoch=3)
  assert train.total_steps(base) == 12
  later = _cfg(lr=1.0, n_epochs=2, n_epochs_decay=2, steps_per_epoch=3, epoch_count=3)
  f = optim.lr_schedule(later)
  got = [float(f(jnp.asarray(s))) for s in range(train.total_steps(later))]
  np.testing.assert_allclose(got, [2 / 3] * 3 + [1 / 3] * 3, rtol=1e-6)   # epochs 3 and 4 only
  with pytest.raises(ValueError, match="epoch_count"):
    optim.lr_schedule(_cfg(epoch_count=2, num_train_steps=10))
  with pytest.raises(ValueError, match="epoch_count"):
    optim.lr_schedule(_cfg(epoch_count=0, steps_per_epoch=3))


def test_num_train_steps_overrides_epochs_and_decays_over_second_half():
  c = _cfg(lr=2.0, num_train_steps=10, steps_per_epoch=-1)
  f = optim.lr_schedule(c)
  got = np.array([float(f(jnp.asarray(s))) for s in range(11)])
  np.testing.assert_allclose(got[:6], 2.0)
  assert np.all(np.diff(got[5:]) < 0)
  np.testing.assert_allclose(got[10], 0.0, atol=1e-7)


def test_missing_steps_per_epoch_is_reported():
  with pytest.raises(ValueError, match="steps_per_epoch"):
    optim.lr_schedule(_cfg(steps_per_epoch=-1, num_train_steps=-1))


def test_adam_uses_reference_betas_and_schedule():
  c = _cfg(lr=0.1, beta1=0.5, num_train_steps=4)
  tx = optim.make_optimizer(c)
  p = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([0.3, -0.1])}
  st = tx.init(p)
  upd, st = tx.update(g, st, p)
  # first Adam step: m_hat = g, v_hat = g^2 -> update = -lr * g / (|g| + eps)
  np.testing.assert_allclose(upd["w"], -0.1 * np.sign([0.3, -0.1]) * np.abs([0.3, -0.1]) / (np.abs([0.3, -0.1]) + 1e-8), rtol=2e-5)
  ref = optax.adam(0.1, b1=0.5, b2=0.999, eps=1e-8)
  rst = ref.init(p)
  g2 = {"w": jnp.array([-0.2, 0.4])}
  upd2, _ = tx.update(g2, st, p)
  _, rst = ref.update(g, rst, p)
  rupd2, _ = ref.update(g2, rst, p)
  np.testing.assert_allclose(upd2["w"], rupd2["w"], rtol=1e-6)  # schedule still constant at step 1


def test_adam_eps_is_configurable_and_checked():
  """``config.adam_eps`` reaches Adam: the first update of a gradient g is -lr * g / (|g| + eps)."""
  g = {"w": jnp.array([1e-6, 0.5])}
  p = {"w": jnp.zeros(2)}
  for eps in (1e-8, 1e-4):
    tx = optim.make_optimizer(_cfg(lr=0.1, num_train_steps=4, adam_eps=eps))
    upd, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(upd["w"], -0.1 * np.array([1e-6, 0.5]) / (np.array([1e-6, 0.5]) + eps), rtol=1e-4)
  assert config_lib.get_base_config().adam_eps == 1e-8      # the reference's value by default
  with pytest.raises(ValueError, match="adam_eps"):
    optim.make_optimizer(_cfg(num_train_steps=4, adam_eps=0.0))
