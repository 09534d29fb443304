"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020): one generator, PatchNCE, one pure train step.

Names follow the authors' ``CUTModel``: ``G`` (netG, A -> B), ``D`` (netD, judges B images), ``F``
(netF, the patch MLP head of :class:`PatchSampleF`, its own Adam). One :func:`train_step` is their
``optimize_parameters``:

1. ``real = concat([A, B])`` when ``nce_idt`` else ``A``; with ``flip_equivariance`` the whole batch is
   flipped horizontally with probability 0.5 (one draw per step); ``fake = G(real)`` once,
   ``fake_B = fake[:N]``, ``idt_B = fake[N:]``;
2. discriminator update on ``fake_B`` detached: ``0.5 * (GAN(D(fake_B), fake) + GAN(D(B), real))``
   (fake first, as theirs), no image pool;
3. one backward through G and F, both updated: ``lambda_GAN * GAN(D(fake_B), real)`` through the
   *updated* D, plus ``NCE(A, fake_B)`` (and ``0.5 * (NCE(A, fake_B) + NCE(B, idt_B))`` with
   ``nce_idt``). ``NCE(src, tgt)``: G's encoder features at ``nce_layers`` of ``tgt`` (queries,
   flipped back when the batch was flipped) and of ``src`` (keys, no gradient); per layer
   ``num_patches`` positions drawn from the step's key (a permutation's first positions, the same for
   every image of the batch, as the authors), F's MLP and L2 normalisation, then
   :func:`jaxgan.losses.patch_nce_loss` times ``lambda_NCE``; the mean over layers.

FastCUT is the same step with ``lambda_NCE=10``, ``nce_idt=False``, ``flip_equivariance=True``
(``configs/fastcut_horse2zebra.py``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import linen as nn

from jaxgan import checks, config as config_lib, losses, models, nets, optim, parallel
from jaxgan.images import to_model_range

Batch = Mapping[str, jax.Array]
DIRECTIONS = ("AtoB",)
GENERATOR_FOR = {"AtoB": "G"}
PAIRED = False
STATE_KEYS = ("netF_nc", "nce_layers", "ema_decay", "no_antialias", "no_antialias_up")
IMPORT_SLOTS = {"G": "G", "D": "D", "F": "F"}   # the authors' saved roles (latest_net_G/D/F.pth) -> params slots
ONE_IMAGE_SIZE = ""
CONFIG_KEYS = {   # the authors' options with their CUT_mode=CUT defaults (FastCUT: lambda_NCE 10, nce_idt off, flip on)
    "lambda_GAN": 1.0,           # weight of the GAN loss GAN(G(A))
    "lambda_NCE": 1.0,           # weight of PatchNCE(G(A), A) (each layer's loss; the mean over the layers)
    "nce_idt": True,             # also PatchNCE(G(B), B), the identity term: NCE = 0.5 (NCE_X + NCE_Y)
    "nce_layers": (0, 4, 8, 12, 16),   # G's layers for PatchNCE: indices into the authors' nn.Sequential
    "nce_T": 0.07,               # PatchNCE temperature
    "num_patches": 256,          # patch positions per layer (drawn per step; the same for every image)
    "netF_nc": 256,              # width of the patch head F's 2-layer MLP
    "flip_equivariance": False,  # flip the batch horizontally with probability 0.5 before G (FastCUT)
    "nce_includes_all_negatives_from_minibatch": False,   # negatives from every image of the batch
}
CONFIG_DEFAULTS = {"dataset": "demo:seasons", "netG": "resnet_9blocks", "norm": "instance", "no_dropout": True,
                   "gan_mode": "lsgan", "init_type": "xavier", "no_antialias": False, "no_antialias_up": False,
                   "n_epochs": 200, "n_epochs_decay": 200}   # the authors' base/train options


class PatchSampleF(nn.Module):
  """The authors' ``PatchSampleF`` (``netF=mlp_sample``) on already-sampled patches.

  ``__call__(feats)``: a list, one ``[M, C_l]`` array per NCE layer -> a list of ``[M, nc]``:
  ``Linear(C_l, nc) -> ReLU -> Linear(nc, nc)`` (one MLP ``mlp_<l>`` per layer, ``fc_0``/``fc_2`` as the
  torch ``mlp_<l>.0``/``.2``), then ``x / (|x|_2 + 1e-7)``. Weights by ``init_type``/``init_gain``
  (the authors' ``init_net`` at F's lazy creation: xavier normal, gain 0.02), biases 0.
  """
  nc: int = 256
  init_type: str = "xavier"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array]) -> list[jax.Array]:
    init = models.layers.kernel_init(self.init_type, self.init_gain)
    out = []
    for i, x in enumerate(feats):
      x = jnp.asarray(x, jnp.float32)
      x = nn.Dense(self.nc, kernel_init=init, name=f"mlp_{i}_fc_0")(x)
      x = nn.Dense(self.nc, kernel_init=init, name=f"mlp_{i}_fc_2")(nn.relu(x))
      out.append(x / (_safe_norm(x) + 1e-7))
    return out


def _safe_norm(x: jax.Array) -> jax.Array:
  """|x|_2 over the last axis, [..., 1]; its gradient at x = 0 is 0 (the plain sqrt's is NaN there)."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


@flax.struct.dataclass
class CUTState:
  """Everything a CUT/FastCUT run needs to continue: ``params``/``opt_state`` keyed ``G``, ``D``, ``F``;
  ``batch_stats`` keyed ``G``, ``D`` (``{}`` without batch norm); ``rng`` raw uint32[2], the key of step
  ``s`` is ``fold_in(rng, s)``; ``ema``: the EMA of ``G`` when ``ema_decay > 0``."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  ema: Any = flax.struct.field(default_factory=dict)


def nce_layers(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """``config.nce_layers`` as sorted ints (a tuple, a list or the authors' ``"0,4,8,12,16"``)."""
  value = config.nce_layers
  items = value.split(",") if isinstance(value, str) else value
  layers_ = tuple(int(i) for i in items)
  if not layers_ or list(layers_) != sorted(set(layers_)) or layers_[0] < 0:
    raise ValueError(f"config.nce_layers must be increasing indices >= 0, got {value!r}")
  return layers_


def networks(config: ml_collections.ConfigDict) -> dict:
  """``G`` (input_nc -> output_nc), ``D`` (judges output_nc images), ``F`` (the patch head)."""
  return {
      "G": nets.build_generator(config, int(config.input_nc), int(config.output_nc)),
      "D": nets.build_discriminator(config, int(config.output_nc)),
      "F": PatchSampleF(int(config.netF_nc), str(config.init_type), float(config.init_gain)),
  }


def init(rng: jax.Array, config: ml_collections.ConfigDict, batch: Batch) -> CUTState:
  """Initialise G, D, F and their Adam states for batches shaped like ``batch``."""
  checks.validate_config(config, "cut")
  checks.check_batch(batch, config)
  rng = nets.to_key(rng)
  k_g, k_d, k_f, k_state = jax.random.split(rng, 4)
  mods = networks(config)
  a = to_model_range(batch["A"][:1], name="batch['A']")
  b = to_model_range(batch["B"][:1], name="batch['B']")
  params_g, stats_g = nets.init_network(mods["G"], k_g, a)
  params_d, stats_d = nets.init_network(mods["D"], k_d, b)
  feats = jax.eval_shape(lambda p: mods["G"].apply(nets.variables(p, stats_g), a, train=False,
                                                     features=nce_layers(config)), params_g)
  f_key = jax.random.wrap_key_data(nets.init_key_data(k_f), impl=nets.INIT_PRNG)
  params_f = mods["F"].init(f_key, [jnp.zeros((1, f.shape[-1]), jnp.float32) for f in feats])["params"]
  tx = optim.make_optimizer(config)
  params = {"G": params_g, "D": params_d, "F": params_f}
  return CUTState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={"G": stats_g, "D": stats_d},
                  opt_state={k: tx.init(v) for k, v in params.items()}, rng=k_state,
                  ema=optim.init_ema(config, {"G": params_g}))


def step_draws(rng: jax.Array, step: jax.Array, config: ml_collections.ConfigDict):
  """The step's random draws, the same on every device: (flipped: bool scalar, the FastCUT coin -- False
  without ``flip_equivariance``; the NCE key: ``fold_in(k, c)`` draws the positions of NCE call ``c``,
  0 = NCE(A, fake_B), 1 = NCE(B, idt_B), see :func:`patch_ids`; the dropout key)."""
  k_flip, k_nce, k_drop = jax.random.split(jax.random.fold_in(rng, step), 3)
  flipped = (jax.random.uniform(k_flip) < 0.5) if bool(config.flip_equivariance) else jnp.zeros((), bool)
  return flipped, k_nce, k_drop


def patch_ids(key: jax.Array, feats: Sequence[jax.Array], num_patches: int) -> list[jax.Array]:
  """Per layer, the first ``min(num_patches, H*W)`` positions of a random permutation of its H*W
  (``fold_in(key, layer)``): distinct positions, the same for every image (the authors' ``patch_id``)."""
  out = []
  for i, f in enumerate(feats):
    hw = f.shape[1] * f.shape[2]
    out.append(jax.random.permutation(jax.random.fold_in(key, i), hw)[:min(int(num_patches), hw)])
  return out


def sample_patches(feats: Sequence[jax.Array], ids: Sequence[jax.Array]) -> list[jax.Array]:
  """``[B,H,W,C]`` features -> ``[B*P, C]`` rows at positions ``ids`` (row-major H*W), image-major."""
  out = []
  for f, i in zip(feats, ids):
    rows = f.reshape(f.shape[0], -1, f.shape[-1])[:, i, :]
    out.append(rows.reshape(-1, f.shape[-1]))
  return out


def train_step(state: CUTState, batch: Batch, *, config: ml_collections.ConfigDict
               ) -> tuple[CUTState, dict[str, jax.Array]]:
  """One iteration of the authors' CUT/FastCUT (D update, then G and F together). Pure; jit with config bound.

  Returns the new state and float32 metrics ``G_GAN, D_real, D_fake, G, NCE`` (+ ``NCE_Y`` with
  ``nce_idt``), ``D``, ``lr``. ``batch``: ``{"A": [N,H,W,input_nc], "B": [N,H,W,output_nc]}``, float32
  in [-1, 1] or uint8/uint16 pixels. Inside :func:`jaxgan.parallel.jit_train_step` over several devices
  the iteration runs per device (:func:`jaxgan.parallel.per_device_step`), each network's gradient
  averaged once; the patch positions and the flip come from the step's key, the same on every device.
  """
  with checks.matmul_precision(config):
    return parallel.per_device_step(_train_step, state, batch, config=config)


def _train_step(state: CUTState, batch: Batch, *, config: ml_collections.ConfigDict
                ) -> tuple[CUTState, dict[str, jax.Array]]:
  mods = networks(config)
  G, D, F = mods["G"], mods["D"], mods["F"]
  tx = optim.make_optimizer(config)
  gan_mode = str(config.gan_mode)
  layers_ = nce_layers(config)
  lam_gan, lam_nce = float(config.lambda_GAN), float(config.lambda_NCE)
  nce_idt = bool(config.nce_idt) and lam_nce > 0
  all_neg = bool(config.nce_includes_all_negatives_from_minibatch)
  real_a = to_model_range(batch["A"], name="batch['A']")
  real_b = to_model_range(batch["B"], name="batch['B']")
  n = real_a.shape[0]
  flipped, k_nce, k_drop = step_draws(state.rng, state.step, config)
  k_drop = parallel.device_key(k_drop)
  params, stats = state.params, state.batch_stats

  real = jnp.concatenate([real_a, real_b], axis=0) if bool(config.nce_idt) else real_a
  if bool(config.flip_equivariance):
    real = jnp.where(flipped, real[:, :, ::-1, :], real)

  # 1. G forward once; its vjp carries the GAN and NCE terms' gradient with respect to the fake back.
  def g_forward(p_g):
    return nets.apply_train(G, p_g, stats["G"], real, jax.random.fold_in(k_drop, 0))

  fake, g_vjp, stats_g = jax.vjp(g_forward, params["G"], has_aux=True)
  fake_b = fake[:n]

  # 2. D on the detached fake (first), then the real B.
  def d_loss_fn(p_d):
    pred_fake, s_d = nets.apply_train(D, p_d, stats["D"], jax.lax.stop_gradient(fake_b), None)
    pred_real, s_d = nets.apply_train(D, p_d, s_d, real_b, None)
    loss, loss_real, loss_fake = losses.discriminator_loss(pred_real, pred_fake, gan_mode=gan_mode)
    return loss, (s_d, loss_real, loss_fake)

  (loss_d, (stats_d, d_real, d_fake)), grads_d = jax.value_and_grad(d_loss_fn, has_aux=True)(params["D"])
  grads_d = nets.cross_replica_mean(grads_d, config)
  updates_d, opt_d = tx.update(grads_d, state.opt_state["D"], params["D"])
  params_d = optax.apply_updates(params["D"], updates_d)

  # 3. G and F on GAN(D'(fake_B)) + PatchNCE, one backward.
  def encode(p_g, s_g, x, call):
    return _encode(G, p_g, s_g, x, jax.random.fold_in(k_drop, call), layers_)

  def nce(p_g, p_f, s_g, src, tgt, k, call):
    feat_q, s_g = encode(p_g, s_g, tgt, call)
    feat_q = [jnp.where(flipped, f[:, :, ::-1, :], f) for f in feat_q]
    feat_k, s_g = encode(p_g, s_g, src, call + 1)
    feat_k = jax.lax.stop_gradient(feat_k)
    ids = patch_ids(k, feat_k, int(config.num_patches))
    q = F.apply({"params": p_f}, sample_patches(feat_q, ids))
    kk = F.apply({"params": p_f}, sample_patches(feat_k, ids))
    total = 0.0
    for fq, fk in zip(q, kk):
      fq, fk = fq.reshape(src.shape[0], -1, fq.shape[-1]), fk.reshape(src.shape[0], -1, fk.shape[-1])
      if all_neg:   # negatives from the whole (global) batch: every device scores the gathered rows
        fq, fk = parallel.gather_batch(fq), parallel.gather_batch(fk)
      total = total + lam_nce * losses.patch_nce_loss(fq, fk, temperature=float(config.nce_T),
                                                      all_negatives_from_minibatch=all_neg)
    return total / len(layers_), s_g

  def g_loss_fn(fake_, p_g, p_f):
    fb = fake_[:n]
    s_g = stats_g
    if lam_gan > 0:
      pred_fake, s_d = nets.apply_train(D, params_d, stats_d, fb, None)
      g_gan = lam_gan * losses.gan_loss(pred_fake, target_is_real=True, gan_mode=gan_mode)
    else:
      s_d, g_gan = stats_d, jnp.zeros((), jnp.float32)
    zero = jnp.zeros((), jnp.float32)
    loss_nce, loss_nce_y = zero, zero
    if lam_nce > 0:
      loss_nce, s_g = nce(p_g, p_f, s_g, real_a, fb, jax.random.fold_in(k_nce, 0), 1)
    if nce_idt:
      loss_nce_y, s_g = nce(p_g, p_f, s_g, real_b, fake_[n:], jax.random.fold_in(k_nce, 1), 3)
      both = 0.5 * (loss_nce + loss_nce_y)
    else:
      both = loss_nce
    return g_gan + both, (s_g, s_d, g_gan, loss_nce, loss_nce_y)

  (loss_g, (stats_g, stats_d, g_gan, l_nce, l_nce_y)), (d_fake_out, grads_g_direct, grads_f) = \
      jax.value_and_grad(g_loss_fn, argnums=(0, 1, 2), has_aux=True)(fake, params["G"], params["F"])
  (grads_g_fake,) = g_vjp(d_fake_out)
  grads_g = jax.tree_util.tree_map(jnp.add, grads_g_fake, grads_g_direct)
  grads_g, grads_f = nets.cross_replica_mean((grads_g, grads_f), config)
  updates_g, opt_g = tx.update(grads_g, state.opt_state["G"], params["G"])
  params_g = optax.apply_updates(params["G"], updates_g)
  updates_f, opt_f = tx.update(grads_f, state.opt_state["F"], params["F"])
  params_f = optax.apply_updates(params["F"], updates_f)

  new_state = state.replace(
      step=state.step + 1,
      params={"G": params_g, "D": params_d, "F": params_f},
      batch_stats={"G": stats_g, "D": stats_d},
      opt_state={"G": opt_g, "D": opt_d, "F": opt_f},
      ema=optim.update_ema(config, state.ema, {"G": params_g}, state.step),
  )
  metrics = {"G_GAN": g_gan, "D_real": d_real, "D_fake": d_fake, "G": loss_g, "NCE": l_nce, "D": loss_d,
             "lr": jnp.asarray(optim.lr_schedule(config)(state.step), jnp.float32)}
  if nce_idt:
    metrics["NCE_Y"] = l_nce_y
  return new_state, nets.cross_replica_mean(metrics, config)


def _encode(G, p_g, s_g, x, rng, layers_):
  """G's encoder features at ``layers_`` in train mode: (list of [B,h,w,C], new batch_stats)."""
  feats, mutated = G.apply(nets.variables(p_g, s_g), x, train=True, features=layers_, rngs={"dropout": rng},
                           mutable=["batch_stats"])
  return feats, mutated.get("batch_stats", s_g)


def translate(state: CUTState, images: jax.Array, *, config: ml_collections.ConfigDict,
              direction: str = "AtoB", eval_mode: bool = False, rng: jax.Array | None = None,
              ids: jax.Array | None = None) -> jax.Array:
  """Map images [N,H,W,input_nc] in [-1,1] to [N,H,W,output_nc] with ``G`` (only ``AtoB``).

  ``eval_mode``/``rng``/``ids`` as :func:`jaxgan.nets.generate` (the EMA of G when the run keeps one).
  """
  if direction != "AtoB":
    raise ValueError(f"cut translates only AtoB (one generator), got direction {direction!r}")
  checks.check_images(images, channels=int(config.input_nc), name="images",
                      stride=config_lib.generator_stride(str(config.netG)))
  G = networks(config)["G"]
  key = rng if rng is not None else jax.random.fold_in(state.rng, 0x7E57)
  params_g = state.ema["G"] if state.ema else state.params["G"]
  with checks.matmul_precision(config):
    return nets.generate(G, params_g, state.batch_stats["G"], to_model_range(images),
                         eval_mode=eval_mode, rng=key, ids=ids)
