"""Optimiser and learning-rate schedule of the reference recipe.

Adam(lr, b1=beta1, b2=0.999, eps=adam_eps = 1e-8) with the schedule inside optax, so the
schedule position is part of the optimiser state (``count``) and checkpoints.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax


def lr_schedule(config: ml_collections.ConfigDict) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Learning rate as a function of the (0-based) optimiser step.

  * ``num_train_steps > 0``: constant for the first half of the run, then a
    linear decay that reaches ``lr / (decay_steps)`` on the last step (0 after).
  * otherwise the reference ``linear`` policy per epoch: in (1-based) epoch
    ``e = step // steps_per_epoch + epoch_count`` the factor is
    ``1 - max(0, e - n_epochs) / (n_epochs_decay + 1)``: constant for epochs
    1..``n_epochs``, then a linear decay over ``n_epochs_decay`` epochs, the
    last at ``lr / (n_epochs_decay + 1)``. This is the paper's schedule and the
    authors' original placement (the scheduler stepped at the end of each
    epoch); their current ``train.py`` steps it at the start of each epoch,
    which shifts everything one epoch earlier (99 constant epochs of 100, the
    last epoch at lr 0). ``epoch_count`` (reference ``--epoch_count``, default
    1) starts the schedule at a later epoch, to continue or fine-tune a run.
  """
  base = float(config.lr)
  total = int(config.get("num_train_steps", -1) or -1)
  epoch_count = int(config.get("epoch_count", 1))
  if epoch_count < 1:
    raise ValueError(f"config.epoch_count must be >= 1 (the 1-based epoch the schedule starts at), got {epoch_count}")
  if total > 0:
    if epoch_count != 1:
      raise ValueError(f"config.epoch_count={epoch_count} applies to the epoch schedule; with "
                       f"config.num_train_steps={total} set it is ignored, so unset one of them")
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
    epoch = step // spe + epoch_count
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


def ema_decay(config: ml_collections.ConfigDict) -> float:
  """``config.ema_decay`` checked: 0 (off, the reference) or in (0, 1)."""
  decay = float(config.get("ema_decay", 0.0) or 0.0)
  if not 0.0 <= decay < 1.0:
    raise ValueError(f"config.ema_decay must be 0 (off) or in (0, 1), got {decay}")
  return decay


def init_ema(config: ml_collections.ConfigDict, generators: dict) -> dict:
  """The generators' weight averages at step 0: copies of their weights, or ``{}`` when the EMA is off."""
  if ema_decay(config) == 0.0:
    return {}
  return jax.tree.map(lambda x: jnp.array(x, copy=True), dict(generators))


def update_ema(config: ml_collections.ConfigDict, ema: dict, generators: dict, step: jnp.ndarray) -> dict:
  """One step of the debiased exponential moving average of the generators' weights (``{}`` stays ``{}``).

  After ``t = step + 1`` updates (``step`` 0-based, the step that produced ``generators``) the
  average is ``sum_i d^(t-i) p_i / sum_i d^(t-i)`` over the weights ``p_1 .. p_t`` of steps 1..t,
  with ``d = ema_decay``: Adam's bias correction applied to an EMA started at zero, written as
  ``ema += (p - ema) * (1 - d) / (1 - d^t)``. So the initial weights never enter it, and
  ``ema_decay`` sets the window (about ``1 / (1 - d)`` steps) from the first step on.
  """
  if not ema:
    return ema
  d = jnp.float32(ema_decay(config))
  t = jnp.asarray(step, jnp.float32) + 1.0
  rate = (1.0 - d) / (1.0 - jnp.power(d, t))
  return {name: jax.tree.map(lambda e, p: e + (p - e) * rate, ema[name], generators[name]) for name in ema}
