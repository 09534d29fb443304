"""CycleGAN (Zhu et al. 2017): two generators, two discriminators, one pure train step.

Naming follows the reference code: ``G_AB`` (netG_A) maps A->B, ``G_BA`` (netG_B)
maps B->A, ``D_A`` (netD_A) scores domain-B images (real B vs ``G_AB(A)``) and
``D_B`` (netD_B) scores domain-A images. One :func:`train_step` is the reference
iteration (``CycleGANModel.optimize_parameters``):

1. ``fake_B = G_AB(A); rec_A = G_BA(fake_B); fake_A = G_BA(B); rec_B = G_AB(fake_A)``;
   identity ``G_AB(B)`` and ``G_BA(A)`` when ``lambda_identity > 0``;
2. generator update (one Adam over both generators) with the discriminators frozen:
   ``GAN(D_A(fake_B), real) + GAN(D_B(fake_A), real) + lambda_A |rec_A - A| +
   lambda_B |rec_B - B| + lambda_identity (lambda_B |G_AB(B) - B| + lambda_A |G_BA(A) - A|)``;
3. the fakes of step 1 (detached) go through the image pools, then the discriminator
   update (one Adam over both): ``0.5 * (GAN(D(real), real) + GAN(D(pooled fake), fake))``
   for each discriminator, real evaluated first.

``gan_mode="wgangp"`` adds the gradient penalty to each discriminator loss.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgan import checks, config as config_lib, losses, nets, optim, parallel, pool
from jaxgan.images import to_model_range

Batch = Mapping[str, jax.Array]
GENERATORS = ("G_AB", "G_BA")
DIRECTIONS = ("AtoB", "BtoA")
GENERATOR_FOR = {"AtoB": "G_AB", "BtoA": "G_BA"}   # direction -> generator in ``params``
PAIRED = False                                     # unpaired domains
STATE_KEYS = ("pool_size", "ema_decay")           # the image pools' shapes; whether the state keeps an EMA
ONE_IMAGE_SIZE = ("CycleGAN's image pools hold images of one fixed shape (and every new size would compile the "
                  "train step again)")
CONFIG_KEYS = {   # its own config keys and defaults (another objective's config refuses them)
    "lambda_A": 10.0,          # weight of the cycle loss A -> B -> A
    "lambda_B": 10.0,          # weight of the cycle loss B -> A -> B
    "lambda_identity": 0.5,    # identity loss weight, relative to lambda_A / lambda_B (0: off)
    "pool_size": 50,           # images in each discriminator's pool of earlier fakes (0: no pool)
}
CONFIG_DEFAULTS = {"dataset": "demo:seasons", "netG": "resnet_9blocks", "norm": "instance", "no_dropout": True,
                   "gan_mode": "lsgan"}   # its defaults of the shared keys (the reference's CycleGAN options)
IMPORT_SLOTS = {"G_A": "G_AB", "G_B": "G_BA", "D_A": "D_A", "D_B": "D_B"}   # reference roles -> params slots
DISCRIMINATORS = ("D_A", "D_B")
# The step's dropout key of each generator application, by the name of what it makes (the reference's names:
# idt_A = G_AB(B), idt_B = G_BA(A)): jax.random.fold_in(step key, DROPOUT_CALLS[name]). A call's mask depends
# on what the call is, not on how many calls ran before it (the numbers are the order of the step's calls, so
# the masks are those of the former call counter).
DROPOUT_CALLS = {"fake_B": 0, "rec_A": 1, "fake_A": 2, "rec_B": 3, "idt_A": 4, "idt_B": 5}


@flax.struct.dataclass
class CycleGANState:
  """Everything a CycleGAN run needs to continue.

  ``params`` / ``batch_stats``: dicts keyed ``G_AB, G_BA, D_A, D_B``; ``opt_state``:
  ``{"G": adam state over (G_AB, G_BA), "D": adam state over (D_A, D_B)}``;
  ``pools``: ``{"A": PoolState of fake A images, "B": PoolState of fake B images}``.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  pools: Any
  rng: jax.Array
  ema: Any = flax.struct.field(default_factory=dict)


def networks(config: ml_collections.ConfigDict) -> dict:
  """The four Linen modules; D_A judges B images (output_nc), D_B judges A images."""
  a_nc, b_nc = int(config.input_nc), int(config.output_nc)
  return {
      "G_AB": nets.build_generator(config, a_nc, b_nc),
      "G_BA": nets.build_generator(config, b_nc, a_nc),
      "D_A": nets.build_discriminator(config, b_nc),
      "D_B": nets.build_discriminator(config, a_nc),
  }


def _subset(tree: Mapping, names) -> dict:
  return {n: tree[n] for n in names}


def init(rng: jax.Array, config: ml_collections.ConfigDict, batch: Batch) -> CycleGANState:
  """Initialise the four networks, both optimisers and both image pools."""
  checks.validate_config(config, "cyclegan")
  checks.check_batch(batch, config)
  if float(config.lambda_identity) > 0 and int(config.input_nc) != int(config.output_nc):
    raise ValueError(f"lambda_identity > 0 needs input_nc == output_nc, got {config.input_nc} and "
                     f"{config.output_nc}; set --config.lambda_identity=0")
  rng = nets.to_key(rng)
  keys = dict(zip(("G_AB", "G_BA", "D_A", "D_B", "state"), jax.random.split(rng, 5)))
  modules = networks(config)
  a = to_model_range(batch["A"][:1], name="batch['A']")
  b = to_model_range(batch["B"][:1], name="batch['B']")
  samples = {"G_AB": a, "G_BA": b, "D_A": b, "D_B": a}
  params, stats = {}, {}
  for name, module in modules.items():
    params[name], stats[name] = nets.init_network(module, keys[name], samples[name])
  tx = optim.make_optimizer(config)
  size = int(config.pool_size)
  return CycleGANState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=stats,
      opt_state={"G": tx.init(_subset(params, GENERATORS)), "D": tx.init(_subset(params, DISCRIMINATORS))},
      pools={"A": pool.init_pool(size, a.shape[1:]), "B": pool.init_pool(size, b.shape[1:])},
      rng=keys["state"],
      ema=optim.init_ema(config, _subset(params, GENERATORS)),
  )


def train_step(state: CycleGANState, batch: Batch, *, config: ml_collections.ConfigDict
               ) -> tuple[CycleGANState, dict[str, jax.Array]]:
  """One reference iteration (both generators, pool query, both discriminators).

  Returns the new state and float32 metrics ``D_A, G_A, cycle_A, idt_A, D_B, G_B,
  cycle_B, idt_B`` (the reference's names) plus ``G``, ``D`` totals and ``lr``.
  ``batch`` images: NHWC float32 in [-1, 1], or uint8/uint16 pixels (made [-1, 1] inside the
  step, on the device: :func:`jaxgan.images.to_model_range`). Inside
  :func:`jaxgan.parallel.jit_train_step` over several devices the iteration runs per
  device on its part of the batch, each network's gradient is averaged over the
  devices once (:func:`jaxgan.parallel.per_device_step`), and the image pools see
  the global batch in order, as on one device.
  """
  with checks.matmul_precision(config):   # config.matmul_precision: every conv traced inside
    return parallel.per_device_step(_train_step, state, batch, config=config)


def _train_step(state: CycleGANState, batch: Batch, *, config: ml_collections.ConfigDict
                ) -> tuple[CycleGANState, dict[str, jax.Array]]:
  """:func:`train_step` on one device's batch; ``config.axis_name`` (when set) averages over the devices."""
  modules = networks(config)
  tx = optim.make_optimizer(config)
  gan_mode = str(config.gan_mode)
  lam_a, lam_b, lam_idt = float(config.lambda_A), float(config.lambda_B), float(config.lambda_identity)
  real_a = to_model_range(batch["A"], name="batch['A']")   # uint8/uint16 pixels: on the device
  real_b = to_model_range(batch["B"], name="batch['B']")
  key = jax.random.fold_in(state.rng, state.step)
  k_drop, k_pool_a, k_pool_b, k_gp = jax.random.split(key, 4)
  k_drop, k_gp = parallel.device_key(k_drop), parallel.device_key(k_gp)   # drawn per image: per device
  params, stats = state.params, state.batch_stats

  def d_apply(name, p, s, x):
    return nets.apply_train(modules[name], p, s, x, None)

  # 1-2. Generators, with the discriminators held fixed.
  def g_loss_fn(p_g):
    s = dict(stats)

    def g(name, x, call):
      """Generator ``name`` on ``x`` in train mode; ``call`` (a DROPOUT_CALLS name) keys its dropout."""
      y, s[name] = nets.apply_train(modules[name], p_g[name], s[name], x,
                                    jax.random.fold_in(k_drop, DROPOUT_CALLS[call]))
      return y

    fake_b = g("G_AB", real_a, "fake_B")
    rec_a = g("G_BA", fake_b, "rec_A")
    fake_a = g("G_BA", real_b, "fake_A")
    rec_b = g("G_AB", fake_a, "rec_B")
    if lam_idt > 0:
      idt_a = losses.identity_loss(g("G_AB", real_b, "idt_A"), real_b, lambda_domain=lam_b, lambda_identity=lam_idt)
      idt_b = losses.identity_loss(g("G_BA", real_a, "idt_B"), real_a, lambda_domain=lam_a, lambda_identity=lam_idt)
    else:
      idt_a = idt_b = jnp.zeros((), jnp.float32)
    pred_a, s["D_A"] = d_apply("D_A", params["D_A"], s["D_A"], fake_b)
    pred_b, s["D_B"] = d_apply("D_B", params["D_B"], s["D_B"], fake_a)
    terms = {
        "G_A": losses.gan_loss(pred_a, target_is_real=True, gan_mode=gan_mode),
        "G_B": losses.gan_loss(pred_b, target_is_real=True, gan_mode=gan_mode),
        "cycle_A": losses.cycle_loss(rec_a, real_a, weight=lam_a),
        "cycle_B": losses.cycle_loss(rec_b, real_b, weight=lam_b),
        "idt_A": idt_a,
        "idt_B": idt_b,
    }
    total = sum(terms.values())
    return total, (terms, s, fake_a, fake_b)

  (loss_g, (terms, stats, fake_a, fake_b)), grads_g = jax.value_and_grad(g_loss_fn, has_aux=True)(
      _subset(params, GENERATORS))
  grads_g = nets.cross_replica_mean(grads_g, config)
  updates_g, opt_g = tx.update(grads_g, state.opt_state["G"], _subset(params, GENERATORS))
  new_g = optax.apply_updates(_subset(params, GENERATORS), updates_g)

  # 3. Image pools, then the discriminators.
  # The pool takes the global batch in order (one device's semantics; per device: every device runs the
  # same pool on the gathered batch with the same key); each device then keeps its own rows, so it runs
  # the discriminators on its own 1/N of the batch.
  fake_b, fake_a = (parallel.gather_batch(jax.lax.stop_gradient(x)) for x in (fake_b, fake_a))
  pool_b, fake_b = pool.query(state.pools["B"], fake_b, k_pool_b)
  pool_a, fake_a = pool.query(state.pools["A"], fake_a, k_pool_a)
  fake_b, fake_a = parallel.local_rows(fake_b), parallel.local_rows(fake_a)

  def d_loss_fn(p_d):
    s = dict(stats)
    out = {}
    for name, real, fake, k in (("D_A", real_b, fake_b, 0), ("D_B", real_a, fake_a, 1)):
      pred_real, s[name] = d_apply(name, p_d[name], s[name], real)
      pred_fake, s[name] = d_apply(name, p_d[name], s[name], fake)
      loss, _, _ = losses.discriminator_loss(pred_real, pred_fake, gan_mode=gan_mode)
      if gan_mode == "wgangp":
        s_fixed = s[name]
        loss = loss + losses.gradient_penalty(
            lambda x, n=name, sf=s_fixed: d_apply(n, p_d[n], sf, x)[0], real, fake,
            rng=jax.random.fold_in(k_gp, k), weight=float(config.lambda_gp))
      out[name] = loss
    return out["D_A"] + out["D_B"], (out, s)

  (loss_d, (d_terms, stats)), grads_d = jax.value_and_grad(d_loss_fn, has_aux=True)(
      _subset(params, DISCRIMINATORS))
  grads_d = nets.cross_replica_mean(grads_d, config)
  updates_d, opt_d = tx.update(grads_d, state.opt_state["D"], _subset(params, DISCRIMINATORS))
  new_d = optax.apply_updates(_subset(params, DISCRIMINATORS), updates_d)

  new_state = state.replace(
      step=state.step + 1,
      params={**new_g, **new_d},
      batch_stats=stats,
      opt_state={"G": opt_g, "D": opt_d},
      pools={"A": pool_a, "B": pool_b},
      ema=optim.update_ema(config, state.ema, new_g, state.step),
  )
  metrics = {**terms, **d_terms, "G": loss_g, "D": loss_d,
             "lr": jnp.asarray(optim.lr_schedule(config)(state.step), jnp.float32)}
  return new_state, nets.cross_replica_mean(metrics, config)


def translate(state: CycleGANState, images: jax.Array, *, config: ml_collections.ConfigDict,
              direction: str = "AtoB", eval_mode: bool = False, rng: jax.Array | None = None,
              ids: jax.Array | None = None) -> jax.Array:
  """Translate images [N,H,W,C] in [-1,1] with ``G_AB`` (``AtoB``) or ``G_BA`` (``BtoA``).

  See :func:`jaxgan.nets.generate` for ``eval_mode`` (default False: train-mode
  BatchNorm, each image normalised with its own statistics, and dropout on, the
  reference's test-time behaviour; True: running statistics, no dropout) and
  ``ids`` (image ``i``'s randomness is keyed by ``ids[i]``, default ``i``).
  """
  if direction not in ("AtoB", "BtoA"):
    raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
  name = GENERATOR_FOR[direction]
  in_nc = int(config.input_nc) if direction == "AtoB" else int(config.output_nc)
  checks.check_images(images, channels=in_nc, name="images", stride=config_lib.generator_stride(str(config.netG)))
  module = networks(config)[name]
  key = rng if rng is not None else jax.random.fold_in(state.rng, 0x7E57)
  params = state.ema[name] if state.ema else state.params[name]
  with checks.matmul_precision(config):
    return nets.generate(module, params, state.batch_stats[name], to_model_range(images),
                         eval_mode=eval_mode, rng=key, ids=ids)
