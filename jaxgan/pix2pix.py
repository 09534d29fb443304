"""pix2pix (Isola et al. 2017): conditional GAN with an L1 term, as one pure train step.

One :func:`train_step` is the reference iteration (``Pix2PixModel.optimize_parameters``):

1. ``fake_B = G(real_A)`` (train mode: BatchNorm batch statistics, dropout on);
2. discriminator update: ``loss_D = 0.5 * (GAN(D([A, fake_B]), fake) + GAN(D([A, B]), real))``
   with ``fake_B`` detached, D evaluated on the fake pair first, then the real pair;
3. generator update through the *updated* D: ``loss_G = GAN(D([A, fake_B]), real) +
   lambda_L1 * |fake_B - B|_1``, reusing step 1's forward pass (one G forward per step,
   its vjp is kept; nothing is recomputed).

D is conditioned on the input: it sees ``concat([A, B_or_fake], channels)``. Each D
call in train mode updates its BatchNorm running statistics, in the reference order
(fake, real, fake). ``gan_mode="wgangp"`` adds the gradient penalty (weight
``lambda_gp``) to the discriminator loss, which the reference code leaves out.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgan import checks, config as config_lib, losses, nets, optim, parallel
from jaxgan.images import to_model_range

Batch = Mapping[str, jax.Array]
DIRECTIONS = ("AtoB",)            # one generator: input -> output of the training pairs
GENERATOR_FOR = {"AtoB": "G"}     # direction -> generator in ``params``
PAIRED = True                     # trains on aligned A/B pairs
STATE_KEYS = ("ema_decay",)       # config keys beyond the networks' that fix the state's shapes
ONE_IMAGE_SIZE = ""               # why training needs one image size ('' : only a batch of > 1 does)
CONFIG_KEYS = {   # its own config keys and defaults (another objective's config refuses them)
    "lambda_L1": 100.0,   # weight of the L1 loss between G(A) and B, beside the GAN loss
}
CONFIG_DEFAULTS = {"dataset": "demo:facades", "netG": "unet_256", "norm": "batch", "no_dropout": False,
                   "gan_mode": "vanilla"}   # its defaults of the shared keys (the reference's pix2pix options)
IMPORT_SLOTS = {"G": "G", "D": "D"}   # the reference's saved roles (*_net_G.pth, ...) -> params slots


@flax.struct.dataclass
class Pix2PixState:
  """Everything a pix2pix run needs to continue.

  ``params`` / ``batch_stats`` / ``opt_state`` are dicts keyed ``"G"`` and ``"D"``;
  ``batch_stats`` entries are ``{}`` when the norm is not batch norm. ``rng`` is a
  raw uint32[2] key; the key of step ``s`` is ``fold_in(rng, s)``.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  ema: Any = flax.struct.field(default_factory=dict)


def networks(config: ml_collections.ConfigDict):
  """(G, D) Linen modules for this config; D sees input_nc + output_nc channels."""
  G = nets.build_generator(config, int(config.input_nc), int(config.output_nc))
  D = nets.build_discriminator(config, int(config.input_nc) + int(config.output_nc))
  return G, D


def init(rng: jax.Array, config: ml_collections.ConfigDict, batch: Batch) -> Pix2PixState:
  """Initialise networks and optimisers for batches shaped like ``batch``."""
  checks.validate_config(config, "pix2pix")
  checks.check_batch(batch, config)
  rng = nets.to_key(rng)
  k_g, k_d, k_state = jax.random.split(rng, 3)
  G, D = networks(config)
  a = to_model_range(batch["A"][:1], name="batch['A']")
  b = to_model_range(batch["B"][:1], name="batch['B']")
  params_g, stats_g = nets.init_network(G, k_g, a)
  params_d, stats_d = nets.init_network(D, k_d, jnp.concatenate([a, b], axis=-1))
  tx = optim.make_optimizer(config)
  params = {"G": params_g, "D": params_d}
  return Pix2PixState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats={"G": stats_g, "D": stats_d},
      opt_state={"G": tx.init(params_g), "D": tx.init(params_d)},
      rng=k_state,
      ema=optim.init_ema(config, {"G": params_g}),
  )


def train_step(state: Pix2PixState, batch: Batch, *, config: ml_collections.ConfigDict
               ) -> tuple[Pix2PixState, dict[str, jax.Array]]:
  """One reference iteration (D update, then G update). Pure; jit with config bound.

  Returns the new state and float32 metrics: ``G_GAN, G_L1, G, D_real, D_fake, D, lr``.
  ``batch`` images: NHWC float32 in [-1, 1], or uint8/uint16 pixels (made [-1, 1] inside the
  step, on the device: :func:`jaxgan.images.to_model_range`). Inside
  :func:`jaxgan.parallel.jit_train_step` over several devices the iteration runs per
  device on its part of the batch and each network's gradient is averaged over the
  devices once (:func:`jaxgan.parallel.per_device_step`).
  """
  with checks.matmul_precision(config):   # config.matmul_precision: every conv traced inside
    return parallel.per_device_step(_train_step, state, batch, config=config)


def _train_step(state: Pix2PixState, batch: Batch, *, config: ml_collections.ConfigDict
                ) -> tuple[Pix2PixState, dict[str, jax.Array]]:
  """:func:`train_step` on one device's batch; ``config.axis_name`` (when set) averages over the devices."""
  G, D = networks(config)
  tx = optim.make_optimizer(config)
  gan_mode = str(config.gan_mode)
  real_a = to_model_range(batch["A"], name="batch['A']")   # uint8/uint16 pixels: on the device
  real_b = to_model_range(batch["B"], name="batch['B']")
  key = jax.random.fold_in(state.rng, state.step)
  k_drop, k_gp = (parallel.device_key(k) for k in jax.random.split(key))   # drawn per image: per device
  params, stats = state.params, state.batch_stats

  # 1. Generator forward once; keep its vjp for the generator update.
  # The generator's gradient is split by the chain rule: dloss_G/dparams_G = (dfake_B/dparams_G)^T dloss_G/dfake_B.
  # jax.vjp runs G forward now and returns its pullback ``g_vjp`` (the forward's residuals kept); step 2 updates
  # D on fake_B detached; step 3 takes jax.grad of loss_G with respect to fake_B alone (through the updated D)
  # and pulls that cotangent back through G with ``g_vjp``. As in the reference (one forward, D step, then
  # loss_G.backward()), G runs once per step: D and G see the same dropout mask and batch statistics, and G's
  # BatchNorm running statistics are updated once. One jax.grad over G(params) would run G a second time.
  def g_forward(p_g):
    return nets.apply_train(G, p_g, stats["G"], real_a, k_drop)

  fake_b, g_vjp, stats_g = jax.vjp(g_forward, params["G"], has_aux=True)

  def d_apply(p_d, s_d, x):
    return nets.apply_train(D, p_d, s_d, x, None)

  # 2. Discriminator update on (A, fake_B) detached and (A, B).
  fake_ab = jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], axis=-1)
  real_ab = jnp.concatenate([real_a, real_b], axis=-1)

  def d_loss_fn(p_d):
    pred_fake, s_d = d_apply(p_d, stats["D"], fake_ab)
    pred_real, s_d = d_apply(p_d, s_d, real_ab)
    loss, loss_real, loss_fake = losses.discriminator_loss(pred_real, pred_fake, gan_mode=gan_mode)
    if gan_mode == "wgangp":
      loss = loss + losses.gradient_penalty(lambda x: d_apply(p_d, s_d, x)[0], real_ab, fake_ab, rng=k_gp,
                                            weight=float(config.lambda_gp))
    return loss, (s_d, loss_real, loss_fake)

  (loss_d, (stats_d, d_real, d_fake)), grads_d = jax.value_and_grad(d_loss_fn, has_aux=True)(params["D"])
  grads_d = nets.cross_replica_mean(grads_d, config)
  updates_d, opt_d = tx.update(grads_d, state.opt_state["D"], params["D"])
  params_d = optax.apply_updates(params["D"], updates_d)

  # 3. Generator update through the updated discriminator.
  def g_loss_fn(fake):
    pred_fake, s_d = d_apply(params_d, stats_d, jnp.concatenate([real_a, fake], axis=-1))
    loss_gan = losses.gan_loss(pred_fake, target_is_real=True, gan_mode=gan_mode)
    loss_l1 = float(config.lambda_L1) * losses.l1_loss(fake, real_b)
    return loss_gan + loss_l1, (s_d, loss_gan, loss_l1)

  (loss_g, (stats_d, g_gan, g_l1)), d_fake_b = jax.value_and_grad(g_loss_fn, has_aux=True)(fake_b)
  (grads_g,) = g_vjp(d_fake_b)   # dloss_G/dfake_B pulled back through step 1's forward of G
  grads_g = nets.cross_replica_mean(grads_g, config)
  updates_g, opt_g = tx.update(grads_g, state.opt_state["G"], params["G"])
  params_g = optax.apply_updates(params["G"], updates_g)

  new_state = state.replace(
      step=state.step + 1,
      params={"G": params_g, "D": params_d},
      batch_stats={"G": stats_g, "D": stats_d},
      opt_state={"G": opt_g, "D": opt_d},
      ema=optim.update_ema(config, state.ema, {"G": params_g}, state.step),
  )
  metrics = {"G_GAN": g_gan, "G_L1": g_l1, "G": loss_g, "D_real": d_real, "D_fake": d_fake, "D": loss_d,
             "lr": jnp.asarray(optim.lr_schedule(config)(state.step), jnp.float32)}
  return new_state, nets.cross_replica_mean(metrics, config)


def translate(state: Pix2PixState, images: jax.Array, *, config: ml_collections.ConfigDict,
              direction: str = "AtoB", eval_mode: bool = False, rng: jax.Array | None = None,
              ids: jax.Array | None = None) -> jax.Array:
  """Map input images [N,H,W,input_nc] in [-1,1] to outputs [N,H,W,output_nc].

  pix2pix learns one direction, so only ``direction="AtoB"`` (input -> output of
  the training pairs, whatever ``config.direction`` chose) is valid. See
  :func:`jaxgan.nets.generate` for ``eval_mode`` (default False: train-mode
  BatchNorm, each image normalised with its own statistics, and dropout on, the
  reference's test-time behaviour; True: running statistics, no dropout) and
  ``ids`` (image ``i``'s randomness is keyed by ``ids[i]``, default ``i``: pass
  stable ids for batch-independent results).
  """
  if direction != "AtoB":
    raise ValueError(f"pix2pix translates only AtoB (input to output of the training pairs), got {direction!r}")
  checks.check_images(images, channels=int(config.input_nc), name="images",
                      stride=config_lib.generator_stride(str(config.netG)))
  G, _ = networks(config)
  key = rng if rng is not None else jax.random.fold_in(state.rng, 0x7E57)
  params_g = state.ema["G"] if state.ema else state.params["G"]
  with checks.matmul_precision(config):
    return nets.generate(G, params_g, state.batch_stats["G"], to_model_range(images),
                         eval_mode=eval_mode, rng=key, ids=ids)
