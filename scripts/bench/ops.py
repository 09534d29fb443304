"""``--ops``: each reformulation of ``jaxgan.cpu.fast_ops`` against its plain form, at the real layer shapes.

    python scripts/benchmark.py --ops [--op-filter resblock] [--compare torch] [--reps 5]

Layer shapes of the 256x256 networks (batch 1); forward, input gradient and
kernel gradient timed separately, repeats interleaved between the variants,
minimum kept. ``--compare torch`` times the same op in PyTorch (its own
process). Prints one JSON line per case: ``{"op": name, "ms": {variant: {part: ms}}}``.
"""
from __future__ import annotations

import functools
import json
from typing import Callable

from bench.common import TorchWorker, block, timed


def _op_cases(filter_: str) -> list[dict]:
  """Layer shapes of the 256x256 networks (batch 1) and the formulations to compare."""
  from jaxgan.cpu import fast_ops as F

  def padded(name, x, w, pad):      # reflection pad + VALID conv
    v = {"plain": lambda x, w: F.conv2d(F.reflection_pad_plain(x, pad), w),
         "fast": lambda x, w: F.conv2d_valid(F.reflection_pad(x, pad), w)}
    return dict(name=name, x=x, w=w, v=v, torch=("reflect", pad))

  def conv(name, x, w, s, p=1):     # (strided) conv with zero padding
    v = {"plain": lambda x, w: F.conv2d(x, w, s, p), "fast": lambda x, w: F.conv2d_fast(x, w, s, p),
         "phases": lambda x, w: F.conv2d_strided(x, w, s, p)}
    return dict(name=name, x=x, w=w, v=v, torch=("conv", s, p))

  def up(name, x, w, op, p=1):      # stride-2 transposed conv
    v = {"plain": lambda x, w: F.conv_transpose_plain(x, w, 2, p, op),
         "fast": lambda x, w: F.conv_transpose_fast(x, w, 2, p, op),
         "phases": lambda x, w: F.conv_transpose(x, w, 2, p, op),
         "subpixel": lambda x, w: F.conv_transpose_subpixel(x, w, 2, p, op)}
    return dict(name=name, x=x, w=w, v=v, torch=("convT", 2, p, op))

  def inorm(name, x):               # instance norm + ReLU
    v = {"plain": lambda x: jax_relu(F.instance_norm_plain(x)), "fast": lambda x: jax_relu(F.instance_norm(x))}
    return dict(name=name, x=x, w=None, v=v, torch=("inorm",))

  # name, x shape, kernel shape, then the case's own arguments
  cases = [
      padded("resnet_block_conv3x3_256@64", (1, 64, 64, 256), (3, 3, 256, 256), 1),
      padded("resnet_stem_conv7x7_3to64@256", (1, 256, 256, 3), (7, 7, 3, 64), 3),
      padded("resnet_head_conv7x7_64to3@256", (1, 256, 256, 64), (7, 7, 64, 3), 3),
      conv("resnet_down_conv3x3s2_64to128@256", (1, 256, 256, 64), (3, 3, 64, 128), 2),
      conv("resnet_down_conv3x3s2_128to256@128", (1, 128, 128, 128), (3, 3, 128, 256), 2),
      up("resnet_up_convT3x3s2_256to128@64", (1, 64, 64, 256), (3, 3, 256, 128), 1),
      up("resnet_up_convT3x3s2_128to64@128", (1, 128, 128, 128), (3, 3, 128, 64), 1),
      conv("unet_down_conv4x4s2_64to128@128", (1, 128, 128, 64), (4, 4, 64, 128), 2),
      conv("unet_down_conv4x4s2_256to512@32", (1, 32, 32, 256), (4, 4, 256, 512), 2),
      *[conv(f"unet_down_conv4x4s2_512to512@{h}", (1, h, h, 512), (4, 4, 512, 512), 2) for h in (16, 8, 4, 2)],
      up("unet_up_convT4x4s2_512to512@1", (1, 1, 1, 512), (4, 4, 512, 512), 0),
      *[up(f"unet_up_convT4x4s2_1024to512@{h}", (1, h, h, 1024), (4, 4, 1024, 512), 0) for h in (2, 4, 8)],
      up("unet_up_convT4x4s2_256to64@64", (1, 64, 64, 256), (4, 4, 256, 64), 0),
      up("unet_up_convT4x4s2_1024to256@16", (1, 16, 16, 1024), (4, 4, 1024, 256), 0),
      up("unet_up_convT4x4s2_128to3@128", (1, 128, 128, 128), (4, 4, 128, 3), 0),
      conv("patchgan_conv4x4s1_256to512@32", (1, 32, 32, 256), (4, 4, 256, 512), 1),
      conv("patchgan_conv4x4s1_512to1@31", (1, 31, 31, 512), (4, 4, 512, 1), 1),
      inorm("instance_norm_relu_256@64", (1, 64, 64, 256)),
      inorm("instance_norm_relu_64@256", (1, 256, 256, 64)),
  ]
  return [c for c in cases if not filter_ or any(f in c["name"] for f in filter_.split(","))]


def jax_relu(x):
  import jax
  return jax.nn.relu(x)


def _op_parts(fn: Callable, has_kernel: bool) -> dict[str, Callable]:
  """Jittable (x, w, g) -> forward / input gradient / kernel gradient of ``fn``."""
  import jax
  if not has_kernel:
    return {"fwd": lambda x, w, g: fn(x), "dgrad": lambda x, w, g: jax.vjp(fn, x)[1](g)[0]}
  return {"fwd": lambda x, w, g: fn(x, w),
          "dgrad": lambda x, w, g: jax.vjp(lambda a: fn(a, w), x)[1](g)[0],
          "wgrad": lambda x, w, g: jax.vjp(lambda b: fn(x, b), w)[1](g)[0]}


def torch_thunks(spec: tuple, x_shape, w_shape) -> tuple[dict[str, Callable], list[str]]:
  """Forward / input gradient / kernel gradient thunks of the same op in PyTorch (NCHW), and their names.

  Run in the PyTorch worker (:class:`bench.common.TorchWorker`, message ``("build", "bench.ops:torch_thunks", ...)``).
  """
  import torch
  import torch.nn.functional as TF
  n, h, w, c = x_shape
  x = torch.randn(n, c, h, w, requires_grad=True)
  if spec[0] == "inorm":
    fn = lambda a, k: torch.relu(TF.instance_norm(a))  # noqa: E731
    k = None
  elif spec[0] == "convT":
    _, s, p, op = spec
    k = torch.randn(w_shape[2], w_shape[3], w_shape[0], w_shape[1], requires_grad=True)
    fn = lambda a, k: TF.conv_transpose2d(a, k, stride=s, padding=p, output_padding=op)  # noqa: E731
  else:
    k = torch.randn(w_shape[3], w_shape[2], w_shape[0], w_shape[1], requires_grad=True)
    if spec[0] == "reflect":
      fn = lambda a, k: TF.conv2d(TF.pad(a, (spec[1],) * 4, mode="reflect"), k)  # noqa: E731
    else:
      fn = lambda a, k: TF.conv2d(a, k, stride=spec[1], padding=spec[2])  # noqa: E731
  with torch.no_grad():
    g = torch.randn_like(fn(x, k))

  def fwd():
    with torch.no_grad():
      fn(x, k)

  parts = {"fwd": fwd, "dgrad": lambda: torch.autograd.grad(fn(x, k), x, g)}
  if k is not None:
    parts["wgrad"] = lambda: torch.autograd.grad(fn(x.detach(), k), k, g)
  return parts, list(parts)


def run_ops(args) -> list[dict]:
  """Time every (case, variant, part); print a table and one JSON line per case."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  worker = TorchWorker(args.threads, args.torch_tuned) if args.compare == "torch" else None
  rows = []
  for case in _op_cases(args.op_filter):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=case["x"]), jnp.float32)
    w = jnp.asarray(rng.normal(size=case["w"]) * 0.05, jnp.float32) if case["w"] else jnp.zeros(())
    has_k = case["w"] is not None
    ref = case["v"]["plain"]
    y = jax.jit(ref if has_k else (lambda a, b: ref(a)))(x, w)
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    fns = {}
    for vname, fn in case["v"].items():
      for part, pf in _op_parts(fn, has_k).items():
        fns[(vname, part)] = jax.jit(pf).lower(x, w, g).compile()
    if worker is not None:
      for part in worker.call("build", "bench.ops:torch_thunks", case["torch"], case["x"], case["w"]):
        fns[("torch", part)] = functools.partial(worker.call, "run", part)
    best = {k: float("inf") for k in fns}
    for rnd in range(args.reps + 1):   # round 0 warms up
      for key, f in fns.items():
        dt = f() if key[0] == "torch" else timed(lambda f=f: block(f(x, w, g)))
        if rnd:
          best[key] = min(best[key], dt)
    table: dict[str, dict[str, float]] = {}
    for (vname, part), t in best.items():
      table.setdefault(vname, {})[part] = round(t * 1e3, 2)
    for vname, parts in table.items():
      parts["total"] = round(sum(parts.values()), 2)
    line = {"op": case["name"], "ms": table}
    print(json.dumps(line), flush=True)
    rows.append(line)
  if worker is not None:
    worker.close()
  return rows
