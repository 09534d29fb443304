"""GAN and reconstruction losses: small pure functions with keyword-only arguments.

All losses return float32 scalars (inputs in a lower precision are upcast first),
averaged over every element, as the reference project's criteria do.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

GAN_MODES = ("vanilla", "lsgan", "wgangp")


def _f32(x: jax.Array) -> jax.Array:
  return jnp.asarray(x, jnp.float32)


def gan_loss(prediction: jax.Array, *, target_is_real: bool, gan_mode: str) -> jax.Array:
  """Adversarial loss of a discriminator output against a real/fake label.

  Args:
    prediction: discriminator logits of any shape (a PatchGAN map [N, h, w, 1]).
    target_is_real: whether the label is "real" (1) or "fake" (0).
    gan_mode: ``vanilla`` (sigmoid cross-entropy on logits), ``lsgan`` (mean
      squared error to 1/0) or ``wgangp`` (-mean for real, +mean for fake; pair
      it with :func:`gradient_penalty` in the discriminator loss).
  """
  p = _f32(prediction)
  if gan_mode == "vanilla":
    # BCE-with-logits to a constant target, written stably.
    if target_is_real:
      return jnp.mean(jax.nn.softplus(-p))
    return jnp.mean(jax.nn.softplus(p))
  if gan_mode == "lsgan":
    target = 1.0 if target_is_real else 0.0
    return jnp.mean(jnp.square(p - target))
  if gan_mode == "wgangp":
    return -jnp.mean(p) if target_is_real else jnp.mean(p)
  raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")


def discriminator_loss(pred_real: jax.Array, pred_fake: jax.Array, *, gan_mode: str) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The reference's halved discriminator loss: 0.5 * (real + fake).

  Returns (total, loss_real, loss_fake).
  """
  loss_real = gan_loss(pred_real, target_is_real=True, gan_mode=gan_mode)
  loss_fake = gan_loss(pred_fake, target_is_real=False, gan_mode=gan_mode)
  return 0.5 * (loss_real + loss_fake), loss_real, loss_fake


def l1_loss(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error over all elements (torch ``nn.L1Loss``)."""
  return jnp.mean(jnp.abs(_f32(x) - _f32(y)))


def cycle_loss(reconstructed: jax.Array, original: jax.Array, *, weight: float) -> jax.Array:
  """CycleGAN cycle-consistency term: ``weight * |F(G(x)) - x|_1``."""
  return weight * l1_loss(reconstructed, original)


def identity_loss(same: jax.Array, original: jax.Array, *, lambda_domain: float, lambda_identity: float) -> jax.Array:
  """CycleGAN identity term: ``lambda_domain * lambda_identity * |G(y) - y|_1``."""
  return lambda_domain * lambda_identity * l1_loss(same, original)


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    *,
    rng: jax.Array,
    kind: str = "mixed",
    constant: float = 1.0,
    weight: float = 10.0,
) -> jax.Array:
  """WGAN-GP penalty ``weight * E[(||grad critic(x)||_2 - constant)^2]``.

  Args:
    critic: maps images [N,H,W,C] to scores (any shape with leading N).
    real, fake: [N,H,W,C] images (``fake`` should already be stop-gradiented).
    rng: key for the per-sample interpolation weights (``kind="mixed"``).
    kind: ``real``, ``fake`` or ``mixed`` (random interpolates, the paper's choice).
  """
  if kind == "real":
    x = real
  elif kind == "fake":
    x = fake
  elif kind == "mixed":
    alpha = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x = alpha * real + (1.0 - alpha) * fake
  else:
    raise ValueError(f"gradient penalty kind must be real, fake or mixed, got {kind!r}")
  grads = jax.grad(lambda v: jnp.sum(_f32(critic(v))))(x)
  grads = _f32(grads).reshape(grads.shape[0], -1)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=1) + 1e-16)
  return weight * jnp.mean(jnp.square(norms - constant))


def patch_nce_loss(feat_q: jax.Array, feat_k: jax.Array, *, temperature: float = 0.07,
                   all_negatives_from_minibatch: bool = False) -> jax.Array:
  """CUT's PatchNCE loss (Park et al. 2020) of query features against key features of the same positions.

  Args:
    feat_q: [B, P, C] query features (the output image's patches), L2-normalised.
    feat_k: [B, P, C] key features (the input image's patches at the same P positions), L2-normalised.
      No gradient reaches them (the authors detach the keys).
    temperature: ``nce_T``; the logits are divided by it.
    all_negatives_from_minibatch: the authors' ``nce_includes_all_negatives_from_minibatch``: the other
      positions of every image of the batch are negatives (the batch read as one image of B*P patches);
      False (CUT, FastCUT): only the other positions of the same image.

  Returns the float32 scalar mean over the B*P rows of the cross-entropy of the logits
  ``[<q_i, k_i>, <q_i, k_j> for j in the image's positions (j = i set to -10)] / temperature``
  against the positive (index 0).
  """
  q, k = _f32(feat_q), jax.lax.stop_gradient(_f32(feat_k))
  if q.ndim != 3 or q.shape != k.shape:
    raise ValueError(f"patch_nce_loss: feat_q and feat_k must both be [B, P, C], got {q.shape} and {k.shape}")
  l_pos = jnp.sum(q * k, axis=-1)                                   # [B, P]
  if all_negatives_from_minibatch:
    q, k = q.reshape(1, -1, q.shape[-1]), k.reshape(1, -1, k.shape[-1])
  l_neg = jnp.einsum("bpc,bnc->bpn", q, k, precision=jax.lax.Precision.HIGHEST)
  n = l_neg.shape[-1]
  l_neg = jnp.where(jnp.eye(n, dtype=bool)[None], -10.0, l_neg).reshape(-1, n)
  logits = jnp.concatenate([l_pos.reshape(-1, 1), l_neg], axis=1) / temperature
  return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
