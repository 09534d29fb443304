"""Each layer family's share of a train step: its layers' forward + backward, timed alone at the step's shapes.

:func:`family_layers` lists every layer call of the step's networks (by tracing their
init abstractly, the way :func:`jaxgan.cpu.calibration.step_layer_shapes` does), grouped
by family and shape key; :func:`family_shares` times one call of each distinct layer,
value and all gradients, in the form the run's :class:`LayerForms` gives it at that
shape, at the step's per-device batch, and multiplies by the number of calls. Layers timed alone
miss the step's fusion and its two-at-a-time overlap on two cores, so the shares are
estimates of where the time goes (the rest is activations, losses, the optimiser and
what the overlap saves), not a partition of the step.
"""
from __future__ import annotations

import collections
import statistics
import time
from typing import Any, Callable


def family_layers(init_fn: Callable[[], Any]) -> collections.Counter:
  """``Counter({(family, shape key): calls})`` of the layers ``init_fn`` builds (traced abstractly, through
  the same hook that tells a run its shapes: :func:`jaxgan.models.layers.recording_layers`)."""
  import jax
  from jaxgan.models import layers
  with layers.recording_layers() as calls, jax.disable_jit():   # no jit cache hit may skip the Python code
    jax.eval_shape(init_fn)
  return collections.Counter({k: n for k, n in calls.items() if k[0] != "conv_wgrad"})


def _layer_fn(family: str, key: str, forms, dtype, batch: int = 1):
  """(loss(x, *params), example arguments) for one layer in the run's forms, computing in ``dtype``."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jaxgan.models import forms as forms_lib
  from jaxgan.models import layers
  rng = np.random.default_rng(0)
  if family in ("pad", "instance_norm"):
    hwc, pad = forms_lib.parse_image_key(key)
  else:
    hwc, (k, _, _, features), stride, padding, *op = (
        forms_lib.parse_conv_transpose_key(key) if family == "conv_transpose" else forms_lib.parse_conv_key(key))
  x = jnp.asarray(rng.standard_normal((batch, *hwc), np.float32)).astype(dtype)
  if family == "pad":
    return (lambda x: jnp.sum(jnp.sin(layers.reflection_pad(x, pad, forms).astype(jnp.float32)))), (x,)
  if family == "instance_norm":
    mod = layers.InstanceNorm(forms=forms, dtype=dtype)
  else:
    kw = dict(features=features, kernel_size=k, stride=stride, padding=padding, dtype=dtype, forms=forms)
    mod = layers.ConvTranspose2d(output_padding=op[0], **kw) if family == "conv_transpose" else layers.Conv2d(**kw)
  variables = mod.init(jax.random.PRNGKey(0), x)
  return (lambda x, v: jnp.sum(jnp.sin(mod.apply(v, x).astype(jnp.float32)))), (x, variables)


def _median_time(fn, args, reps: int) -> float:
  import jax
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def family_shares(init_fn: Callable[[], Any], forms, step_s: float, reps: int = 3, dtype: str = "float32",
                  batch: int = 1) -> dict:
  """``{family: {"seconds", "share", "layers", "shapes", "fast_shapes"}}``: each family's layers timed alone
  (value and all gradients, median of ``reps``, at the per-device ``batch``) times their calls, that as a share of ``step_s``,
  and how many of the family's distinct shapes run the CPU form."""
  import jax
  from jaxgan.cpu import calibration
  out: dict = {}

  def add(family, seconds, count, key, note=None):
    entry = out.setdefault(family, {"seconds": 0.0, "layers": 0, "shapes": 0, "fast_shapes": 0})
    entry["seconds"] += seconds * count
    entry["layers"] += count
    entry["shapes"] += 1
    entry["fast_shapes"] += int(forms.use_fast(family, key))
    if note:
      entry["note"] = note

  for (family, key), count in sorted(family_layers(init_fn).items()):
    loss, args = _layer_fn(family, key, forms, dtype, batch)
    add(family, _median_time(jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(args))))), args, reps),
        count, key)
    if family == "conv" and calibration.wgrad_relevant(key):   # the kernel gradient alone: conv_wgrad's part
      wfn = jax.jit(jax.grad(lambda v, x: loss(x, v)))
      add("conv_wgrad", _median_time(wfn, (args[1], args[0]), reps), count, key, note="part of conv")
  for entry in out.values():
    entry["seconds"] = round(entry["seconds"], 4)
    entry["share"] = round(entry["seconds"] / step_s, 3) if step_s > 0 else None
  return out
