"""Optimiser and learning-rate schedule of the reference recipe.

Adam(lr, b1=beta1, b2=0.999, eps=adam_eps = 1e-8) with the schedule inside optax, so the
schedule position is part of the optimiser state (``count``) and checkpoints.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import ml_collections
import optax


def lr_schedule(config: ml_collections.ConfigDict) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Learning rate as a function of the (0-based) optimiser step.

  * ``num_train_steps > 0``: constant for the first half of the run, then a
    linear decay that reaches ``lr / (decay_steps)`` on the last step (0 after).
  * otherwise the reference ``linear`` policy per epoch (1-based epoch
    ``e = step // steps_per_epoch + 1``): factor ``1 - max(0, e - n_epochs) /
    (n_epochs_decay + 1)``, i.e. constant for ``n_epochs`` epochs and then a
    linear decay towards zero over ``n_epochs_decay`` epochs.
  """
  base = float(config.lr)
  total = int(config.get("num_train_steps", -1) or -1)
  if total > 0:
    constant = total // 2
    decay = max(total - constant, 1)

    def by_steps(step):
      frac = jnp.clip((step - constant) / decay, 0.0, 1.0)
      return base * (1.0 - frac)

    return by_steps
  spe = int(config.get("steps_per_epoch", -1))
  if spe <= 0:
    raise ValueError(
        "config.steps_per_epoch must be > 0 for the epoch-based schedule (the training loop sets it "
        "from the dataset size), or set config.num_train_steps > 0")
  n_epochs, n_decay = int(config.n_epochs), int(config.n_epochs_decay)

  def by_epochs(step):
    epoch = step // spe + 1
    factor = 1.0 - jnp.maximum(0, epoch - n_epochs) / float(n_decay + 1)
    return base * jnp.maximum(factor, 0.0)

  return by_epochs


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the reference betas and epsilon and the schedule above (one per network group).

  ``config.adam_eps`` (1e-8 in the reference; configs saved before it existed get 1e-8).
  """
  eps = float(config.get("adam_eps", 1e-8))
  if not eps > 0:
    raise ValueError(f"config.adam_eps must be > 0, got {eps}")
  return optax.adam(learning_rate=lr_schedule(config), b1=float(config.beta1), b2=0.999, eps=eps)
