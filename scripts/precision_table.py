"""Gradient error of one training step under reduced-precision settings, against exact float32.

    python scripts/precision_table.py [--size 128] [--ngf 32] [--models cyclegan,pix2pix] [--settings ...] [--native]

For each model (CycleGAN: resnet_9blocks + instance norm; pix2pix: unet at
``--size`` + batch norm), one state is initialised, then the generator and
discriminator gradients of ONE train step from that state are computed under
each setting and compared with exact float32 (``dtype=float32``,
``matmul_precision=highest``): the relative L2 error ``|g - g_ref| / |g_ref|``
and the cosine over all conv kernels of the generators (G) and of the
discriminators (D), and the worst per-layer cosine of G. Prints a markdown table.

Settings (what each device does with the products inside convolutions):

* ``bf16``         -- ``config.dtype=bfloat16`` (bf16 activations and matmul inputs, float32
  params, norms, heads and kernel gradients), the same on TPU and GPU;
* ``tpu-default``  -- float32 with ``matmul_precision=default`` on a TPU: one pass of bf16
  products (inputs rounded to bf16, float32 accumulation);
* ``tpu-high``     -- ``matmul_precision=high`` on a TPU: bf16_3x (hi*hi + hi*lo + lo*hi);
* ``tf32``         -- float32 with ``default`` or ``high`` on an Ampere+ GPU: inputs rounded to
  TF32 (10-bit mantissa), float32 accumulation;
* ``bf16+tpu-default`` -- bf16 mode's float32 parts (heads) on a TPU at ``default``;
* ``highest``      -- ``matmul_precision=highest`` (float32 products): the reference itself.

A CPU computes float32 products exactly whatever the precision setting, so the
TPU/GPU settings are emulated here: every convolution (forward, input gradient
and kernel gradient) gets its operands rounded as that device would. The plain
layer forms are used (those GPUs and TPUs run). The gradients are read off the
train step itself (the tree each objective averages across replicas).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import config as config_lib, cyclegan, nets, pix2pix
from jaxgan.models import layers

F32 = jnp.float32


# ----------------------------------------------------------------------------- operand rounding

def round_bf16(x: jax.Array) -> jax.Array:
  return x.astype(jnp.bfloat16).astype(x.dtype)


def round_tf32(x: jax.Array) -> jax.Array:
  """Round float32 to a 10-bit mantissa (nearest, ties to even), as TF32 tensor cores read it."""
  u = jax.lax.bitcast_convert_type(x, jnp.uint32)
  u = (u + jnp.uint32(0xFFF) + ((u >> 13) & jnp.uint32(1))) & jnp.uint32(0xFFFFE000)
  return jax.lax.bitcast_convert_type(u, jnp.float32)


def _parts(mode: str, x: jax.Array) -> list[jax.Array]:
  if mode == "bf16":
    return [round_bf16(x)]
  if mode == "tf32":
    return [round_tf32(x)]
  hi = round_bf16(x)                        # bf16_3x
  return [hi, round_bf16(x - hi)]


_PAIRS = {"bf16": ((0, 0),), "tf32": ((0, 0),), "bf16_3x": ((0, 0), (0, 1), (1, 0))}


def _emulate(mode: str, bilinear, a: jax.Array, b: jax.Array) -> jax.Array:
  pa, pb = _parts(mode, a), _parts(mode, b)
  return sum(bilinear(pa[i], pb[j]) for i, j in _PAIRS[mode])


def emulated_conv(orig, mode: str):
  """``jax.lax.conv_general_dilated`` with every float32 product rounded as ``mode`` does, in all three
  convolutions of autodiff (forward, input gradient, kernel gradient)."""
  def conv(lhs, rhs, *args, **kwargs):
    if lhs.dtype != F32 or rhs.dtype != F32:
      return orig(lhs, rhs, *args, **kwargs)
    fwd = lambda a, b: orig(a, b, *args, **kwargs)

    @jax.custom_vjp
    def f(a, b):
      return _emulate(mode, fwd, a, b)

    def f_fwd(a, b):
      return f(a, b), (a, b)

    def f_bwd(res, g):
      a, b = res
      da = _emulate(mode, lambda g_, b_: jax.vjp(lambda t: fwd(t, b_), jnp.zeros_like(a))[1](g_)[0], g, b)
      db = _emulate(mode, lambda a_, g_: jax.vjp(lambda t: fwd(a_, t), jnp.zeros_like(b))[1](g_)[0], a, g)
      return da, db

    f.defvjp(f_fwd, f_bwd)
    return f(lhs, rhs)
  return conv


@contextlib.contextmanager
def device_products(mode: str | None):
  """Trace with ``jax.lax.conv_general_dilated`` emulating ``mode`` (None: unchanged)."""
  if mode is None:
    yield
    return
  orig = jax.lax.conv_general_dilated
  jax.lax.conv_general_dilated = emulated_conv(orig, mode)
  try:
    yield
  finally:
    jax.lax.conv_general_dilated = orig


# ----------------------------------------------------------------------------- settings

# name -> (config.dtype, config.matmul_precision, emulated products of float32 convs)
SETTINGS = {
    "highest": ("float32", "highest", None),
    "bf16": ("bfloat16", "default", None),
    "bf16+tpu-default": ("bfloat16", "default", "bf16"),
    "tpu-default": ("float32", "default", "bf16"),
    "tpu-high": ("float32", "high", "bf16_3x"),
    "tf32": ("float32", "default", "tf32"),
}
WHERE = {
    "highest": "TPU/GPU `matmul_precision=highest`: exact float32 (the reference)",
    "bf16": "`dtype=bfloat16` (GPU, any precision)",
    "bf16+tpu-default": "`dtype=bfloat16` on TPU, `matmul_precision=default`",
    "tpu-default": "float32 on TPU, `matmul_precision=default` (bf16 products)",
    "tpu-high": "float32 on TPU, `matmul_precision=high` (bf16_3x)",
    "tf32": "float32 on GPU (Ampere+), `default` or `high` (TF32)",
}


def make_config(model: str, size: int, ngf: int):
  if model == "cyclegan":
    c = config_lib.get_cyclegan_base_config()
    c.netG = "resnet_9blocks"
  else:
    c = config_lib.get_base_config()
    c.netG = f"unet_{size}"
  c.update(dict(ngf=ngf, ndf=ngf, crop_size=size, load_size=size, batch_size=1, num_train_steps=100))
  return c


def images(rng: np.random.Generator, size: int, channels: int = 3) -> np.ndarray:
  """One smooth random image [1, size, size, channels] in [-1, 1] (a few sinusoids and a blob per channel)."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  out = np.zeros((1, size, size, channels), np.float32)
  for c in range(channels):
    for _ in range(3):
      fx, fy, ph = rng.uniform(0.5, 4.0, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
      out[0, :, :, c] += np.sin(2 * np.pi * (fx * xx + fy * yy) + ph) / 3
    cx, cy = rng.uniform(0.2, 0.8, 2)
    out[0, :, :, c] += 0.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
  return np.clip(out, -1, 1)


def step_grads(module, config, state, batch, emulate: str | None):
  """(G grads, D grads) of one ``module.train_step`` from ``state``: the trees it averages across replicas."""
  def run(state, batch):
    captured = []
    saved = nets.cross_replica_mean

    def capture(tree, cfg):
      captured.append(tree)
      return saved(tree, cfg)
    nets.cross_replica_mean = capture
    try:
      with device_products(emulate):
        module.train_step(state, batch, config=config)
    finally:
      nets.cross_replica_mean = saved
    if module is pix2pix:          # grads of params["D"], then of params["G"], then the metrics
      return {"D": captured[0], "G": captured[1]}
    return {k: v for tree in captured[:2] for k, v in tree.items()}   # {G_AB, G_BA}, {D_A, D_B}, metrics
  return jax.jit(run)(state, batch)


def kernels(tree, names) -> list[tuple[str, np.ndarray]]:
  out = []
  for name in names:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree[name]):
      if "kernel" in jax.tree_util.keystr(path):
        out.append((name + jax.tree_util.keystr(path), np.asarray(leaf, np.float64).ravel()))
  return out


def compare(got, ref, names) -> tuple[float, float, float]:
  """(relative L2 error, cosine, worst per-layer cosine) over the conv kernels of ``names``."""
  g, r = kernels(got, names), kernels(ref, names)
  gv, rv = np.concatenate([v for _, v in g]), np.concatenate([v for _, v in r])
  cos = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
  worst = min(cos(a, b) for (_, a), (_, b) in zip(g, r))
  return float(np.linalg.norm(gv - rv) / np.linalg.norm(rv)), cos(gv, rv), worst


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", type=int, default=128)
  p.add_argument("--ngf", type=int, default=32, help="ngf = ndf")
  p.add_argument("--models", default="cyclegan,pix2pix")
  p.add_argument("--settings", default=",".join(s for s in SETTINGS if s != "highest"))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--native", action="store_true",
                 help="on a GPU/TPU: no emulation, each setting's config runs as the device runs it (tf32 = "
                      "float32 at matmul_precision default on the GPU itself; the tpu-* rows only mean "
                      "something on a TPU)")
  args = p.parse_args(argv)
  layers.target_platform = lambda: "gpu"   # trace the layer forms GPUs and TPUs run (the plain ones)
  rows = []
  t0 = time.perf_counter()
  for model in args.models.split(","):
    module = {"cyclegan": cyclegan, "pix2pix": pix2pix}[model]
    gen = cyclegan.GENERATORS if model == "cyclegan" else ("G",)
    dis = cyclegan.DISCRIMINATORS if model == "cyclegan" else ("D",)
    base = make_config(model, args.size, args.ngf)
    rng = np.random.default_rng(args.seed)
    batch = {"A": jnp.asarray(images(rng, args.size)), "B": jnp.asarray(images(rng, args.size))}
    state = jax.jit(lambda b: module.init(jax.random.PRNGKey(args.seed), base, b))(batch)

    def grads_for(setting):
      dtype, precision, emulate = SETTINGS[setting]
      c = base.copy_and_resolve_references()
      c.dtype, c.matmul_precision = dtype, precision
      return jax.device_get(step_grads(module, c, state, batch, None if args.native else emulate))

    ref = grads_for("highest")
    for setting in args.settings.split(","):
      got = grads_for(setting)
      ge, gc, gw = compare(got, ref, gen)
      de, dc, _ = compare(got, ref, dis)
      rows.append((model, setting, ge, gc, gw, de, dc))
      print(f"# {model} {setting}: G err {ge:.4f} cos {gc:.5f} (worst layer {gw:.4f}); D err {de:.4f} "
            f"cos {dc:.5f}  [{time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
  print(f"| model | setting | where | G rel. error | G cosine | G worst layer cosine | D rel. error | D cosine |")
  print("|---|---|---|---:|---:|---:|---:|---:|")
  for model, setting, ge, gc, gw, de, dc in rows:
    print(f"| {model} | {setting} | {WHERE[setting]} | {ge:.4f} | {gc:.5f} | {gw:.4f} | {de:.4f} | {dc:.5f} |")


if __name__ == "__main__":
  main()
