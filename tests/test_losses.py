"""Loss functions against values computed by hand (numpy, written out formulas)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import losses

PRED = np.array([[-2.0, 0.0], [0.5, 3.0]], np.float32)


def _bce(p, target):
  sig = 1.0 / (1.0 + np.exp(-p.astype(np.float64)))
  return float(np.mean(-(target * np.log(sig) + (1 - target) * np.log(1 - sig))))


@pytest.mark.parametrize("real", [True, False])
def test_vanilla_is_bce_with_logits(real):
  got = float(losses.gan_loss(jnp.asarray(PRED), target_is_real=real, gan_mode="vanilla"))
  assert got == pytest.approx(_bce(PRED, 1.0 if real else 0.0), rel=1e-6)


def test_vanilla_is_stable_for_large_logits():
  big = jnp.array([100.0, -100.0])
  assert float(losses.gan_loss(big, target_is_real=True, gan_mode="vanilla")) == pytest.approx(50.0, rel=1e-6)
  assert np.isfinite(float(losses.gan_loss(big, target_is_real=False, gan_mode="vanilla")))


def test_lsgan_is_mse_to_label():
  # real: mean((p-1)^2) = (9 + 1 + 0.25 + 4) / 4
  assert float(losses.gan_loss(jnp.asarray(PRED), target_is_real=True, gan_mode="lsgan")) == pytest.approx(14.25 / 4)
  # fake: mean(p^2) = (4 + 0 + 0.25 + 9) / 4
  assert float(losses.gan_loss(jnp.asarray(PRED), target_is_real=False, gan_mode="lsgan")) == pytest.approx(13.25 / 4)


def test_wgan_sign():
  assert float(losses.gan_loss(jnp.asarray(PRED), target_is_real=True, gan_mode="wgangp")) == pytest.approx(-0.375)
  assert float(losses.gan_loss(jnp.asarray(PRED), target_is_real=False, gan_mode="wgangp")) == pytest.approx(0.375)


def test_unknown_gan_mode_names_choices():
  with pytest.raises(ValueError, match="vanilla"):
    losses.gan_loss(jnp.zeros(3), target_is_real=True, gan_mode="hinge")


def test_discriminator_loss_is_halved_sum():
  real, fake = jnp.array([1.0, 2.0]), jnp.array([-1.0, 0.5])
  total, lr, lf = losses.discriminator_loss(real, fake, gan_mode="lsgan")
  assert float(lr) == pytest.approx((0 + 1) / 2)
  assert float(lf) == pytest.approx((1 + 0.25) / 2)
  assert float(total) == pytest.approx(0.5 * (0.5 + 0.625))


def test_l1_cycle_identity():
  x = jnp.array([[0.0, 1.0], [-1.0, 0.5]])
  y = jnp.array([[1.0, 1.0], [1.0, -0.5]])
  assert float(losses.l1_loss(x, y)) == pytest.approx((1 + 0 + 2 + 1) / 4)
  assert float(losses.cycle_loss(x, y, weight=10.0)) == pytest.approx(10.0)
  assert float(losses.identity_loss(x, y, lambda_domain=10.0, lambda_identity=0.5)) == pytest.approx(5.0)
  # bfloat16 inputs are upcast: result is float32
  assert losses.l1_loss(x.astype(jnp.bfloat16), y).dtype == jnp.float32


def test_gradient_penalty_of_linear_critic():
  # critic(x) = sum(w * x) per sample -> gradient w everywhere, norm ||w||.
  w = jnp.full((2, 2, 1), 0.5)
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  real = jnp.ones((3, 2, 2, 1)); fake = -real
  norm = math.sqrt(4 * 0.25)  # = 1
  gp = losses.gradient_penalty(critic, real, fake, rng=jax.random.PRNGKey(0), weight=10.0)
  assert float(gp) == pytest.approx(10.0 * (norm - 1.0) ** 2, abs=1e-6)
  w2 = 2 * w  # norm 2 -> penalty 10 * 1
  critic2 = lambda x: jnp.sum(x * w2, axis=(1, 2, 3))
  assert float(losses.gradient_penalty(critic2, real, fake, rng=jax.random.PRNGKey(0), weight=10.0)) == pytest.approx(10.0, rel=1e-5)
