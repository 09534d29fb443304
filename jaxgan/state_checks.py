"""Whether a training state is finite, and where it is not: pure reductions over any pytree (no I/O).

:mod:`jaxgan.train` checks the state at every log and save point and :mod:`jaxgan.checkpoint` refuses to
save (or, with ``require_finite``, to restore) a state that is not all finite.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
  # x * 0 is 0 for every finite x and NaN for NaN/inf, so the sum is finite exactly when all values are
  # (it cannot overflow). Measured on the 2-core CPU against all(isfinite(x)) per array (CycleGAN
  # resnet_9blocks with EMA, 446 arrays, 486 MiB): 0.43x the run time, 0.74x the compile time.
  total = sum((jnp.sum(x * 0, dtype=jnp.float32) for x in jax.tree_util.tree_leaves(tree) if _inexact(x)),
              jnp.float32(0))
  return jnp.isfinite(total)


def _inexact(x: Any) -> bool:
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def all_finite(tree: Any) -> jax.Array:
  """A scalar bool on device: every float leaf of ``tree`` (params, optimiser state, EMA, BatchNorm
  statistics, pools) is finite. Dispatched, not fetched: one read of the state, fused per array."""
  return _all_finite(tree)


def nonfinite_summary(tree: Any, depth: int = 2) -> dict[str, str]:
  """``{"params/G": "52732 NaN, 3 inf", ...}``: where ``tree`` holds non-finite values, grouped by the
  first ``depth`` keys of the path ({} when all finite). Fetches one count per array (a failure path)."""
  flat = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if _inexact(x)]
  counts = jax.device_get([(jnp.isnan(x).sum(), jnp.isinf(x).sum()) for _, x in flat])
  groups: dict[str, list[int]] = {}
  for (path, _), (nan, inf) in zip(flat, counts):
    if int(nan) or int(inf):
      name = "/".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path[:depth])
      total = groups.setdefault(name or "state", [0, 0])
      total[0] += int(nan)
      total[1] += int(inf)
  return {k: ", ".join(f"{n} {what}" for n, what in zip(v, ("NaN", "inf")) if n) for k, v in groups.items()}


def describe_nonfinite(tree: Any) -> str:
  """``"params/G: 52732 NaN, 3 inf; opt_state/D: 9 inf"``: :func:`nonfinite_summary` as one phrase."""
  return "; ".join(f"{k}: {v}" for k, v in nonfinite_summary(tree).items())
