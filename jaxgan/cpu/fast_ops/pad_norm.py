"""Reflection padding and instance norm, written so that XLA:CPU fuses them well.

Owns: torch ``ReflectionPad2d`` from slices and reversals
(:func:`reflection_pad`; its transpose is slices and adds, not a scatter) and
torch ``InstanceNorm2d`` with a closed-form backward (:func:`instance_norm`),
each beside its plain form.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# ----------------------------------------------------------------------------- reflection padding

def reflection_pad_plain(x: jax.Array, pad: int) -> jax.Array:
  """torch ``ReflectionPad2d(pad)`` with ``jnp.pad(mode="reflect")`` (the plain form)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _reflect_axis(x: jax.Array, pad: int, axis: int) -> jax.Array:
  n = x.shape[axis]
  lo = jax.lax.rev(jax.lax.slice_in_dim(x, 1, pad + 1, axis=axis), (axis,))
  hi = jax.lax.rev(jax.lax.slice_in_dim(x, n - 1 - pad, n - 1, axis=axis), (axis,))
  return jnp.concatenate([lo, x, hi], axis=axis)


def reflection_pad(x: jax.Array, pad: int) -> jax.Array:
  """torch ``ReflectionPad2d(pad)`` on NHWC (edge not repeated); needs ``pad < H, W``."""
  if pad == 0:
    return x
  if pad >= x.shape[1] or pad >= x.shape[2]:
    raise ValueError(f"reflection padding {pad} needs H and W > {pad}, got shape {tuple(x.shape)}")
  return _reflect_axis(_reflect_axis(x, pad, 1), pad, 2)


# ----------------------------------------------------------------------------- instance norm

def instance_norm_plain(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """torch ``InstanceNorm2d`` (no affine): per image and channel over (H, W), biased variance."""
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
  return ((xf - mean) * jax.lax.rsqrt(var + epsilon)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def instance_norm(x: jax.Array, epsilon: float = 1e-5) -> jax.Array:
  """:func:`instance_norm_plain` with the closed-form backward
  ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` (statistics in float32)."""
  return instance_norm_plain(x, epsilon)


def _in_fwd(x, epsilon):
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
  rstd = jax.lax.rsqrt(jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True) + epsilon)
  return ((xf - mean) * rstd).astype(x.dtype), (x, mean, rstd)


def _in_bwd(epsilon, res, g):
  del epsilon
  x, mean, rstd = res
  xhat = (x.astype(jnp.float32) - mean) * rstd
  gf = g.astype(jnp.float32)
  mg = jnp.mean(gf, axis=(1, 2), keepdims=True)
  mgx = jnp.mean(gf * xhat, axis=(1, 2), keepdims=True)
  return (((gf - mg - xhat * mgx) * rstd).astype(x.dtype),)


instance_norm.defvjp(_in_fwd, _in_bwd)
