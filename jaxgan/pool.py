"""The CycleGAN image history buffer as a pure, jit-able function.

Semantics follow Shrivastava et al. 2017 as used by the reference CycleGAN code:
images are processed one by one in batch order; while the pool holds fewer than
``pool_size`` images each new image is stored and returned unchanged; once full,
with probability 0.5 a uniformly chosen stored image is returned and the new
image takes its slot, otherwise the new image is returned and the pool is kept.
``pool_size == 0`` returns the images unchanged and holds no arrays at all
(``images`` and ``count`` are ``None``: checkpoints cannot store zero-size arrays).

The state lives in arrays so it can sit inside the train state and checkpoints.
"""
from __future__ import annotations

from typing import Sequence

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class PoolState:
  """``images``: [pool_size, H, W, C] float32; ``count``: int32 number stored (both None for pool_size 0)."""
  images: jax.Array | None
  count: jax.Array | None

  @property
  def pool_size(self) -> int:
    return 0 if self.images is None else self.images.shape[0]


def init_pool(pool_size: int, image_shape: Sequence[int], dtype=jnp.float32) -> PoolState:
  """An empty pool for images of shape ``image_shape`` = (H, W, C)."""
  if pool_size < 0:
    raise ValueError(f"pool_size must be >= 0, got {pool_size}")
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}")
  if pool_size == 0:
    return PoolState(images=None, count=None)
  return PoolState(images=jnp.zeros((pool_size, *image_shape), dtype), count=jnp.zeros((), jnp.int32))


def query(state: PoolState, images: jax.Array, rng: jax.Array) -> tuple[PoolState, jax.Array]:
  """Push a batch [N,H,W,C] through the pool; returns (new_state, images_for_D)."""
  if state.pool_size == 0:
    return state, images
  if images.shape[1:] != state.images.shape[1:]:
    raise ValueError(f"pool holds images of shape {state.images.shape[1:]}, got a batch of {images.shape}")
  size = state.pool_size
  keys = jax.random.split(rng, images.shape[0])

  def one(carry, inp):
    pool, count = carry
    image, key = inp
    k_swap, k_idx = jax.random.split(key)
    not_full = count < size
    swap = jax.random.uniform(k_swap) > 0.5
    rand_idx = jax.random.randint(k_idx, (), 0, size)
    # Filling: write at `count`. Full + swap: write at rand_idx. Full + keep: no write.
    write_idx = jnp.where(not_full, count, rand_idx)
    do_write = not_full | swap
    stored = pool[write_idx]
    out = jnp.where(not_full | ~swap, image, stored)
    new_slot = jnp.where(do_write, image.astype(pool.dtype), stored)
    pool = jax.lax.dynamic_update_index_in_dim(pool, new_slot, write_idx, axis=0)
    count = jnp.minimum(count + 1, size)
    return (pool, count), out.astype(image.dtype)

  (pool, count), out = jax.lax.scan(one, (state.images, state.count), (images, keys))
  return PoolState(images=pool, count=count), out
