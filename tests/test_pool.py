"""The CycleGAN image pool: reference semantics, determinism, jit-ability."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import pool


def _images(start, n, shape=(2, 2, 1)):
  # image i is filled with the value i, so identities are easy to follow
  return jnp.stack([jnp.full(shape, float(i)) for i in range(start, start + n)])


def test_size_zero_passes_through():
  st = pool.init_pool(0, (2, 2, 1))
  x = _images(0, 3)
  st2, out = pool.query(st, x, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(out, x)
  # pool_size 0 holds no arrays at all (checkpoints cannot store zero-size arrays; was images.shape[0] == 0)
  assert st2.pool_size == 0 and jax.tree.leaves(st2) == []


def test_fills_first_and_returns_inputs_while_filling():
  st = pool.init_pool(4, (2, 2, 1))
  st, out = pool.query(st, _images(0, 3), jax.random.PRNGKey(1))
  np.testing.assert_array_equal(out, _images(0, 3))
  assert int(st.count) == 3
  np.testing.assert_array_equal(st.images[:3], _images(0, 3))
  # the 4th fills the pool, the 5th is the first that may be swapped
  st, out = pool.query(st, _images(3, 1), jax.random.PRNGKey(2))
  assert int(st.count) == 4
  np.testing.assert_array_equal(out, _images(3, 1))


def test_full_pool_semantics_and_swap_rate():
  size, n = 10, 4000
  st = pool.init_pool(size, (1, 1, 1))
  st, _ = pool.query(st, _images(0, size, (1, 1, 1)), jax.random.PRNGKey(0))
  query = jax.jit(pool.query)
  returned_stored, total = 0, 0
  for step in range(n // 8):
    new = _images(1000 + step * 8, 8, (1, 1, 1))
    before = set(np.asarray(st.images).ravel().tolist())
    st, out = query(st, new, jax.random.PRNGKey(100 + step))
    out_v = np.asarray(out).ravel()
    new_v = np.asarray(new).ravel()
    after = np.asarray(st.images).ravel()
    assert int(st.count) == size
    for o, x in zip(out_v, new_v):
      total += 1
      if o != x:  # a stored image came back: it must be an old one, and x must now be in the pool
        returned_stored += 1
        assert o in before or o in new_v
        assert x in after or x in new_v
    # everything in the pool is either old or from this batch
    assert set(after.tolist()) <= before | set(new_v.tolist())
  rate = returned_stored / total
  assert 0.45 < rate < 0.55, rate


def test_deterministic_for_key_and_differs_across_keys():
  st = pool.init_pool(3, (1, 1, 1))
  st, _ = pool.query(st, _images(0, 3, (1, 1, 1)), jax.random.PRNGKey(0))
  x = _images(10, 16, (1, 1, 1))
  a = pool.query(st, x, jax.random.PRNGKey(5))
  b = pool.query(st, x, jax.random.PRNGKey(5))
  c = pool.query(st, x, jax.random.PRNGKey(6))
  np.testing.assert_array_equal(a[1], b[1])
  np.testing.assert_array_equal(a[0].images, b[0].images)
  assert not np.array_equal(a[1], c[1])


def test_shape_mismatch_is_reported():
  st = pool.init_pool(2, (4, 4, 3))
  with pytest.raises(ValueError, match=r"\(4, 4, 3\)"):
    pool.query(st, jnp.zeros((1, 8, 8, 3)), jax.random.PRNGKey(0))
