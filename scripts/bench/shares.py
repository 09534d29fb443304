"""Each layer family's share of a train step: its layers' forward + backward, timed alone at the step's shapes.

:func:`family_layers` lists every layer call of the step's networks (by tracing their
init abstractly, the way :func:`jaxgan.cpu.calibration.step_conv_shapes` does), grouped
by family and shape; :func:`family_shares` times one call of each distinct layer,
value and all gradients, in the form the run's :class:`LayerForms` gives it, at the
step's per-device batch, and multiplies by the number of calls. Layers timed alone
miss the step's fusion and its two-at-a-time overlap on two cores, so the shares are
estimates of where the time goes (the rest is activations, losses, the optimiser and
what the overlap saves), not a partition of the step.
"""
from __future__ import annotations

import collections
import statistics
import time
from typing import Any, Callable

FAMILY_OF = {"Conv2d": "conv", "ConvTranspose2d": "conv_transpose", "InstanceNorm": "instance_norm"}


def family_layers(init_fn: Callable[[], Any]) -> collections.Counter:
  """``Counter({(family, layer description): calls})`` of the layers ``init_fn`` builds (traced abstractly)."""
  import jax
  import jax.numpy as jnp
  from flax import linen as nn
  from jaxgan.models import layers
  calls: collections.Counter = collections.Counter()

  def record(next_fun, args, kwargs, context):
    m = context.module
    family = FAMILY_OF.get(type(m).__name__)
    if family and context.method_name == "__call__" and args:
      shape = tuple(int(v) for v in args[0].shape)
      attrs = () if family == "instance_norm" else (m.features, m.kernel_size, m.stride, m.padding,
                                                     getattr(m, "output_padding", 0), jnp.dtype(m.dtype).name)
      calls[(family, (shape, str(args[0].dtype), attrs))] += 1
    return next_fun(*args, **kwargs)

  real_pad = layers.reflection_pad

  def pad(x, p, *rest, **kw):
    calls[("pad", ((tuple(int(v) for v in x.shape), str(x.dtype), (int(p),))))] += 1
    return real_pad(x, p, *rest, **kw)

  layers.reflection_pad = pad
  try:
    with nn.intercept_methods(record), jax.disable_jit():   # no jit cache hit may skip the Python code
      jax.eval_shape(init_fn)
  finally:
    layers.reflection_pad = real_pad
  return calls


def _wgrad_key(desc) -> bool:
  """Whether ``conv_wgrad`` decides this conv layer's kernel gradient."""
  from jaxgan.cpu import calibration
  from jaxgan.models.forms import conv_key
  shape, _, (features, k, stride, padding, _, _) = desc
  return calibration.wgrad_relevant(conv_key(shape, (k, k, shape[-1], features), stride, padding))


def _layer_fn(family: str, desc, forms):
  """(loss(x, *params), example arguments) for one layer in the run's forms."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jaxgan.models import layers
  shape, dtype, attrs = desc
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape, np.float32)).astype(dtype)
  if family == "pad":
    return (lambda x: jnp.sum(jnp.sin(layers.reflection_pad(x, attrs[0], forms).astype(jnp.float32)))), (x,)
  if family == "instance_norm":
    mod = layers.InstanceNorm(forms=forms)
  else:
    features, k, stride, padding, output_padding, mdtype = attrs
    kw = dict(features=features, kernel_size=k, stride=stride, padding=padding, dtype=jnp.dtype(mdtype), forms=forms)
    mod = layers.ConvTranspose2d(output_padding=output_padding, **kw) if family == "conv_transpose" else \
        layers.Conv2d(**kw)
  variables = mod.init(jax.random.PRNGKey(0), x)
  return (lambda x, v: jnp.sum(jnp.sin(mod.apply(v, x).astype(jnp.float32)))), (x, variables)


def family_shares(init_fn: Callable[[], Any], forms, step_s: float, reps: int = 3) -> dict:
  """``{family: {"seconds", "share", "layers"}}``: each family's layers timed alone (value and all gradients,
  median of ``reps``) times their calls, and that as a share of ``step_s``."""
  import jax
  out: dict = {}
  for (family, desc), count in sorted(family_layers(init_fn).items(), key=lambda kv: kv[0][0]):
    loss, args = _layer_fn(family, desc, forms)
    fn = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(args)))))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
      t = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times.append(time.perf_counter() - t)
    entry = out.setdefault(family, {"seconds": 0.0, "layers": 0})
    entry["seconds"] += statistics.median(times) * count
    entry["layers"] += count
    if family == "conv" and _wgrad_key(desc):   # the kernel gradient alone: conv_wgrad's part of conv
      wloss = lambda v, x: loss(x, v)  # noqa: E731
      wfn = jax.jit(jax.grad(wloss))
      jax.block_until_ready(wfn(args[1], args[0]))
      times = []
      for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(wfn(args[1], args[0]))
        times.append(time.perf_counter() - t)
      entry = out.setdefault("conv_wgrad", {"seconds": 0.0, "layers": 0, "note": "part of conv"})
      entry["seconds"] += statistics.median(times) * count
      entry["layers"] += count
  for entry in out.values():
    entry["seconds"] = round(entry["seconds"], 4)
    entry["share"] = round(entry["seconds"] / step_s, 3) if step_s > 0 else None
  return out
