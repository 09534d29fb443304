"""Throughput, compile time, memory and FLOPs of one full jaxgan train step, optionally beside PyTorch.

    python scripts/benchmark.py --model cyclegan --size 256 --batch 1 --compare torch [--peak]
    python scripts/benchmark.py --model pix2pix --dtype bfloat16 --devices 2
    python scripts/benchmark.py --ops [--op-filter resblock] [--compare torch]
    python scripts/benchmark.py --data [benchmark_data options ...]
    python scripts/benchmark.py --fid [bench_fid options ...]   # FID features/s against pytorch-fid

Step mode times ``jax.jit(train_step)`` (state donated) on random images: the
real recipe of ``configs`` defaults (pix2pix: unet_256 + basic PatchGAN, batch
norm, dropout, vanilla GAN + 100 L1; CycleGAN: two resnet_9blocks + two
PatchGANs, instance norm, LSGAN, cycle + identity, image pools). It reports the
trace and compile time (``--cache-dir``: also the time to load the step from
JAX's persistent compilation cache after ``jax.clear_caches()``, as a second
process start would), XLA's FLOP count of the compiled step and the achieved
FLOP/s, XLA's buffer sizes and the process's peak RSS. ``--compare torch`` builds
the same networks and iteration from ``tests/torch_reference.py`` with the same
thread count, in its own process, and times the two in alternating rounds
(``--rounds`` of: one settling step, then ``--steps`` timed steps of JAX; the
same for PyTorch), so both see the same machine drift while neither has the
other's working set evicting its own within a round (on the shared 2-core
machine, the first JAX CycleGAN step right after a PyTorch step ran up to 20%
slower). PyTorch's FLOPs come from
``torch.utils.flop_counter``. ``--peak`` times a large float32 matmul in both
frameworks (the machine's practical peak). ``--plain`` disables the fast layer
formulations of ``jaxgan.models.fast_ops`` (to measure what they buy). The
process applies ``jaxgan.host.configure()`` first, as the ``jaxgan`` program
does (``JAXGAN_HOST_TUNING=0`` to measure without it); ``--torch-tuned`` gives
the PyTorch process the same malloc setting.

``--ops`` times each reformulation of ``fast_ops`` against its plain form at the
real layer shapes (batch 1, 256x256 networks): forward, input gradient and
kernel gradient separately, repeats interleaved, minimum kept.

The machine may be shared: every figure is the minimum or the median over
repeats interleaved between the variants compared, and the last line printed is
one JSON object (step mode) -- keys ``model, size, batch, dtype, devices,
img_per_s, step_s, compile_s, flops_per_step, achieved_gflops`` and, when
comparing, ``torch_img_per_s, ratio``.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _block(x):
  import jax
  return jax.block_until_ready(x)


# ============================================================================ peak

def measure_peak(n: int = 2048, reps: int = 6, torch_too: bool = True) -> dict:
  """GFLOP/s of an n x n x n float32 matmul (best of ``reps``) in JAX and, if importable, PyTorch."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x, y: x @ y)
  _block(f(a, a))
  best = min(_timed(lambda: _block(f(a, a))) for _ in range(reps))
  out = {"peak_jax_gflops": round(2 * n ** 3 / best / 1e9, 1)}
  if torch_too:
    try:
      import torch
      t = torch.randn(n, n)
      torch.mm(t, t)
      best_t = min(_timed(lambda: torch.mm(t, t)) for _ in range(reps))
      out["peak_torch_gflops"] = round(2 * n ** 3 / best_t / 1e9, 1)
    except ImportError:
      pass
  out["peak_gflops"] = max(out.values())
  return out


def _timed(fn: Callable[[], Any]) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


# ============================================================================ ops

def _op_cases(filter_: str) -> list[dict]:
  """Layer shapes of the 256x256 networks (batch 1) and the formulations to compare."""
  from jaxgan.models import fast_ops as F

  def refl(pad, conv):
    return {"plain": lambda x, w: F.conv2d(F.reflection_pad_plain(x, pad), w),
            "fast": lambda x, w: conv(F.reflection_pad(x, pad), w)}

  def ct(k, p, op):
    return {"plain": lambda x, w: F.conv_transpose_plain(x, w, 2, p, op),
            "fast": lambda x, w: F.conv_transpose_fast(x, w, 2, p, op),
            "phases": lambda x, w: F.conv_transpose(x, w, 2, p, op),
            "subpixel": lambda x, w: F.conv_transpose_subpixel(x, w, 2, p, op)}

  def strided(s, p):
    return {"plain": lambda x, w: F.conv2d(x, w, s, p), "fast": lambda x, w: F.conv2d_fast(x, w, s, p),
            "phases": lambda x, w: F.conv2d_strided(x, w, s, p)}

  # name, x shape, kernel shape, variants, torch spec
  cases = [
      dict(name="resnet_block_conv3x3_256@64", x=(1, 64, 64, 256), w=(3, 3, 256, 256),
           v=refl(1, F.conv2d_valid), torch=("reflect", 1)),
      dict(name="resnet_stem_conv7x7_3to64@256", x=(1, 256, 256, 3), w=(7, 7, 3, 64),
           v=refl(3, F.conv2d_valid), torch=("reflect", 3)),
      dict(name="resnet_head_conv7x7_64to3@256", x=(1, 256, 256, 64), w=(7, 7, 64, 3),
           v=refl(3, F.conv2d_valid), torch=("reflect", 3)),
      dict(name="resnet_down_conv3x3s2_64to128@256", x=(1, 256, 256, 64), w=(3, 3, 64, 128),
           v=strided(2, 1), torch=("conv", 2, 1)),
      dict(name="resnet_down_conv3x3s2_128to256@128", x=(1, 128, 128, 128), w=(3, 3, 128, 256),
           v=strided(2, 1), torch=("conv", 2, 1)),
      dict(name="resnet_up_convT3x3s2_256to128@64", x=(1, 64, 64, 256), w=(3, 3, 256, 128),
           v=ct(3, 1, 1), torch=("convT", 2, 1, 1)),
      dict(name="resnet_up_convT3x3s2_128to64@128", x=(1, 128, 128, 128), w=(3, 3, 128, 64),
           v=ct(3, 1, 1), torch=("convT", 2, 1, 1)),
      dict(name="unet_down_conv4x4s2_64to128@128", x=(1, 128, 128, 64), w=(4, 4, 64, 128),
           v=strided(2, 1), torch=("conv", 2, 1)),
      dict(name="unet_down_conv4x4s2_256to512@32", x=(1, 32, 32, 256), w=(4, 4, 256, 512),
           v=strided(2, 1), torch=("conv", 2, 1)),
      *[dict(name=f"unet_down_conv4x4s2_512to512@{h}", x=(1, h, h, 512), w=(4, 4, 512, 512),
             v=strided(2, 1), torch=("conv", 2, 1)) for h in (16, 8, 4, 2)],
      dict(name="unet_up_convT4x4s2_512to512@1", x=(1, 1, 1, 512), w=(4, 4, 512, 512),
           v=ct(4, 1, 0), torch=("convT", 2, 1, 0)),
      *[dict(name=f"unet_up_convT4x4s2_1024to512@{h}", x=(1, h, h, 1024), w=(4, 4, 1024, 512),
             v=ct(4, 1, 0), torch=("convT", 2, 1, 0)) for h in (2, 4, 8)],
      dict(name="unet_up_convT4x4s2_256to64@64", x=(1, 64, 64, 256), w=(4, 4, 256, 64),
           v=ct(4, 1, 0), torch=("convT", 2, 1, 0)),
      dict(name="unet_up_convT4x4s2_1024to256@16", x=(1, 16, 16, 1024), w=(4, 4, 1024, 256),
           v=ct(4, 1, 0), torch=("convT", 2, 1, 0)),
      dict(name="unet_up_convT4x4s2_128to3@128", x=(1, 128, 128, 128), w=(4, 4, 128, 3),
           v=ct(4, 1, 0), torch=("convT", 2, 1, 0)),
      dict(name="patchgan_conv4x4s1_256to512@32", x=(1, 32, 32, 256), w=(4, 4, 256, 512),
           v=strided(1, 1), torch=("conv", 1, 1)),
      dict(name="patchgan_conv4x4s1_512to1@31", x=(1, 31, 31, 512), w=(4, 4, 512, 1),
           v=strided(1, 1), torch=("conv", 1, 1)),
      dict(name="instance_norm_relu_256@64", x=(1, 64, 64, 256), w=None,
           v={"plain": lambda x: jax_relu(F.instance_norm_plain(x)), "fast": lambda x: jax_relu(F.instance_norm(x))},
           torch=("inorm",)),
      dict(name="instance_norm_relu_64@256", x=(1, 256, 256, 64), w=None,
           v={"plain": lambda x: jax_relu(F.instance_norm_plain(x)), "fast": lambda x: jax_relu(F.instance_norm(x))},
           torch=("inorm",)),
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


def _torch_parts(spec: tuple, x_shape, w_shape) -> dict[str, Callable]:
  """Forward / input gradient / kernel gradient thunks of the same op in PyTorch (NCHW)."""
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
  return parts


def _torch_worker(conn, threads: int, keep_freed_memory: bool = False) -> None:
  """Child process: builds PyTorch thunks on request and times them one at a time.

  Messages: ("ops", spec, x_shape, w_shape) or ("step", args_dict) build thunks
  and answer their names (and FLOPs); ("run", name) runs one and answers its
  seconds; ("stop",) ends. Keeping torch in its own process keeps its OpenMP
  threads and JAX's thread pool from spinning against each other.
  ``keep_freed_memory``: the malloc setting of ``jaxgan.host`` (``--torch-tuned``).
  """
  if keep_freed_memory:
    from jaxgan import host  # pylint: disable=import-outside-toplevel
    host.keep_freed_memory()
  import torch
  torch.set_num_threads(threads)
  thunks: dict[str, Callable] = {}
  while True:
    msg = conn.recv()
    if msg[0] == "stop":
      break
    if msg[0] == "ops":
      thunks = _torch_parts(*msg[1:])
      conn.send(list(thunks))
    elif msg[0] == "step":
      run, flops = build_torch_step(argparse.Namespace(**msg[1]))
      thunks = {"step": run}
      conn.send(flops)
    elif msg[0] == "run":
      conn.send(_timed(thunks[msg[1]]))


class TorchWorker:
  """Handle of a :func:`_torch_worker` process (spawned, so it never imports JAX)."""

  def __init__(self, threads: int, keep_freed_memory: bool = False):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_torch_worker, args=(child, threads, keep_freed_memory), daemon=True)
    self.proc.start()

  def call(self, *msg):
    self.conn.send(msg)
    return self.conn.recv()

  def close(self) -> None:
    self.conn.send(("stop",))
    self.proc.join(timeout=30)


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
      for part in worker.call("ops", case["torch"], case["x"], case["w"]):
        fns[("torch", part)] = functools.partial(worker.call, "run", part)
    best = {k: float("inf") for k in fns}
    for rnd in range(args.reps + 1):   # round 0 warms up
      for key, f in fns.items():
        dt = f() if key[0] == "torch" else _timed(lambda f=f: _block(f(x, w, g)))
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


# ============================================================================ step

def _config(args):
  from jaxgan import config as config_lib
  c = config_lib.get_cyclegan_base_config() if args.model == "cyclegan" else config_lib.get_base_config()
  c.crop_size = c.load_size = args.size
  c.batch_size = args.batch
  c.dtype = args.dtype
  c.remat = bool(args.remat)
  c.num_train_steps = 1000
  if args.netG:
    c.netG = args.netG
  if args.ngf:
    c.ngf = c.ndf = args.ngf
  return c


def _batch(config, n: int, seed: int = 0) -> dict:
  import numpy as np
  rng = np.random.default_rng(seed)
  shape = (n, config.crop_size, config.crop_size)
  return {"A": rng.uniform(-1, 1, shape + (config.input_nc,)).astype(np.float32),
          "B": rng.uniform(-1, 1, shape + (config.output_nc,)).astype(np.float32)}


def _set_fast_ops(enabled: bool) -> None:
  from jaxgan.models import layers
  layers.set_fast_ops(enabled)


def build_jax_step(args, config):
  """(step_fn, state, batch, stats) with the step compiled; stats has compile times, FLOPs, memory."""
  import jax
  from jaxgan import cyclegan, parallel, pix2pix
  mod = cyclegan if args.model == "cyclegan" else pix2pix
  batch = _batch(config, args.batch)
  state = mod.init(jax.random.PRNGKey(0), config, batch)
  n_dev = len(jax.devices())
  if args.batch % n_dev:
    raise SystemExit(f"--batch {args.batch} must be a multiple of the {n_dev} devices")
  mesh = parallel.make_mesh()
  step = parallel.jit_train_step(mod.train_step, config, mesh, donate=True)
  state = parallel.replicate(state, mesh)
  batch = parallel.shard_batch(batch, mesh)
  t0 = time.perf_counter()
  lowered = step.lower(state, batch)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  stats = {"trace_s": round(t1 - t0, 2), "compile_s": round(t2 - t0, 2)}
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  stats["flops_per_step"] = float(cost.get("flops", float("nan"))) if cost else float("nan")
  mem = compiled.memory_analysis()
  if mem is not None:
    stats["xla_temp_mb"] = round(mem.temp_size_in_bytes / 2 ** 20, 1)
    stats["xla_args_mb"] = round(mem.argument_size_in_bytes / 2 ** 20, 1)
  if args.cache_dir:
    jax.clear_caches()
    t0 = time.perf_counter()
    step2 = parallel.jit_train_step(mod.train_step, config, mesh, donate=True)
    compiled = step2.lower(state, batch).compile()
    stats["compile_cached_s"] = round(time.perf_counter() - t0, 2)
  return compiled, state, batch, stats


def build_torch_step(args):
  """(iteration thunk, flops) of the reference iteration on random NCHW images."""
  import torch
  sys.path.insert(0, os.path.join(ROOT, "tests"))
  import torch_reference as R  # pylint: disable=import-outside-toplevel
  from torch.utils.flop_counter import FlopCounterMode
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  s, n = args.size, args.batch
  a, b = torch.rand(n, 3, s, s) * 2 - 1, torch.rand(n, 3, s, s) * 2 - 1
  ngf = args.ngf or 64
  if args.model == "pix2pix":
    g = R.define_G(3, 3, ngf, args.netG or "unet_256", norm="batch", use_dropout=True)
    d = R.define_D(6, ngf, "basic", norm="batch")
    opt_g, opt_d = R.adam(g.parameters(), 2e-4, 0.5), R.adam(d.parameters(), 2e-4, 0.5)
    run = lambda: R.pix2pix_iteration(g, d, opt_g, opt_d, a, b, "vanilla", 100.0)  # noqa: E731
  else:
    netg = args.netG or "resnet_9blocks"
    ga, gb = (R.define_G(3, 3, ngf, netg, norm="instance") for _ in range(2))
    da, db = (R.define_D(3, ngf, "basic", norm="instance") for _ in range(2))
    opt_g = R.adam(list(ga.parameters()) + list(gb.parameters()), 2e-4, 0.5)
    opt_d = R.adam(list(da.parameters()) + list(db.parameters()), 2e-4, 0.5)
    run = lambda: R.cyclegan_iteration(ga, gb, da, db, opt_g, opt_d, a, b, 10.0, 10.0, 0.5, "lsgan")  # noqa: E731
  with FlopCounterMode(display=False) as counter:
    run()
  return run, float(counter.get_total_flops())


def run_step(args) -> dict:
  import jax
  import numpy as np
  config = _config(args)
  _set_fast_ops(not args.plain)
  compiled, state, batch, stats = build_jax_step(args, config)
  out = {"model": args.model, "size": args.size, "batch": args.batch, "dtype": args.dtype,
         "devices": len(jax.devices()), "threads": args.threads, "fast_ops": not args.plain,
         "remat": bool(config.remat), "netG": config.netG}
  out.update(stats)

  if args.steps == 0:   # compile only: XLA's FLOPs and buffer sizes, no timing
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    out["date"] = time.strftime("%Y-%m-%d")
    return out
  holder = {"state": state}

  def jax_step():
    holder["state"], metrics = compiled(holder["state"], batch)
    _block(metrics)

  for _ in range(args.warmup):
    jax_step()
  out["rss_after_jax_mb"] = round(_rss_mb(), 1)
  torch_step, worker = None, None
  rounds = args.rounds or (2 if args.compare else 1)
  if args.compare == "torch":
    # PyTorch runs in its own process: in this one its OpenMP threads would spin
    # against JAX's thread pool and slow both down.
    worker = TorchWorker(args.threads, args.torch_tuned)
    out["torch_tuned"] = args.torch_tuned
    out["torch_flops_per_step"] = worker.call("step", vars(args))
    torch_step = lambda: worker.call("run", "step")  # noqa: E731
  if args.profile:
    _profile(compiled, holder, batch, args.profile)
  times, times_t = [], []
  for r in range(rounds):
    if torch_step is not None:
      jax_step()                     # settle after the other framework ran (round 0: its build)
    times += [_timed(jax_step) for _ in range(args.steps)]
    if torch_step is not None:
      for _ in range(max(args.warmup, 1) if r == 0 else 1):
        torch_step()
      times_t += [torch_step() for _ in range(args.steps)]
  med, best = statistics.median(times), min(times)
  out.update(step_s=round(med, 4), step_best_s=round(best, 4), img_per_s=round(args.batch / med, 4),
             img_per_s_best=round(args.batch / best, 4),
             achieved_gflops=round(out["flops_per_step"] / med / 1e9, 1))
  if torch_step is not None:
    med_t, best_t = statistics.median(times_t), min(times_t)
    out.update(torch_step_s=round(med_t, 4), torch_step_best_s=round(best_t, 4),
               torch_img_per_s=round(args.batch / med_t, 4), ratio=round(med_t / med, 3),
               ratio_best=round(best_t / best, 3),
               torch_achieved_gflops=round(out["torch_flops_per_step"] / med_t / 1e9, 1),
               # the same work (PyTorch's FLOP count) at JAX's speed
               jax_model_gflops=round(out["torch_flops_per_step"] / med / 1e9, 1))
  if worker is not None:
    worker.close()
  if args.peak:
    out.update(measure_peak(torch_too=args.compare == "torch"))
    peak = out["peak_gflops"]
    work = out.get("torch_flops_per_step", out["flops_per_step"])
    out["frac_peak"] = round(work / med / 1e9 / peak, 3)
    if torch_step is not None:
      out["torch_frac_peak"] = round(work / med_t / 1e9 / peak, 3)
  out["peak_rss_mb"] = round(_rss_mb(), 1)
  out["date"] = time.strftime("%Y-%m-%d")
  out["step_times_s"] = [round(t, 3) for t in times]
  if times_t:
    out["torch_step_times_s"] = [round(t, 3) for t in times_t]
  del np
  return out


# ============================================================================ profile

def _hlo_index(text: str) -> dict[str, str]:
  """Instruction name -> short description (op, shape, and for fusions the conv/dot inside)."""
  import re
  comps: dict[str, list[str]] = {}
  cur = None
  for line in text.split("\n"):
    s = line.strip()
    m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", s)
    if line and not line.startswith(" ") and m:
      cur = m.group(1)
      comps[cur] = []
    elif cur is not None and s.startswith(("%", "ROOT")):
      comps[cur].append(s)
  desc = {}
  for lines in comps.values():
    for s in lines:
      m = re.match(r"(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", s)
      if not m:
        continue
      name, shape, op = m.groups()
      d = f"{op} {shape}"
      inner = s
      cm = re.search(r"calls=%([\w.\-]+)", s)
      if cm and cm.group(1) in comps:
        convs = [x for x in comps[cm.group(1)] if "convolution(" in x or " dot(" in x]
        inner = convs[0] if convs else ""
        if inner:
          d += " <" + re.search(r"= (\S+)", inner).group(1) + ">"
      for pat in (r"window=\{[^}]*\}", r"dim_labels=\S+", r'"kind":"(\w+)"'):
        hit = re.search(pat, inner if pat != r'"kind":"(\w+)"' else s)
        if hit:
          d += " " + hit.group(0).rstrip(",")
      desc[name] = d
  return desc


def _profile(compiled, holder, batch, top: int) -> None:
  """Per-op time of two steps from a jax.profiler trace (needs --xla_cpu_enable_xprof_traceme)."""
  import collections
  import glob
  import shutil
  import tempfile
  import jax
  from jax.profiler import ProfileData
  d = tempfile.mkdtemp()
  jax.profiler.start_trace(d)
  for _ in range(2):
    holder["state"], m = compiled(holder["state"], batch)
    _block(m)
  jax.profiler.stop_trace()
  data = ProfileData.from_file(sorted(glob.glob(d + "/**/*.xplane.pb", recursive=True))[-1])
  agg: collections.Counter = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if line.name == "python":
        continue
      for ev in line.events:
        if not ev.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
          agg[ev.name] += ev.duration_ns / 2e6
  shutil.rmtree(d, ignore_errors=True)
  desc = _hlo_index(compiled.as_text())
  groups: collections.Counter = collections.Counter()
  counts: collections.Counter = collections.Counter()
  for name, ms in agg.items():
    key = desc.get(name) or name.rstrip("0123456789.")
    groups[key] += ms
    counts[key] += 1
  print(f"# profile: op time per step {sum(agg.values()):.0f} ms (ops may overlap); "
        f"top {top} groups of ops with the same shape and kind:")
  for key, ms in groups.most_common(top):
    print(f"# {ms:8.1f} ms  x{counts[key]:<3d} {key[:200]}")


# ============================================================================ main

def parse_args(argv: Sequence[str] | None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", choices=("pix2pix", "cyclegan"), default="cyclegan")
  p.add_argument("--size", type=int, default=256)
  p.add_argument("--batch", type=int, default=1)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  p.add_argument("--devices", type=int, default=1, help="CPU: split the host into this many XLA devices")
  p.add_argument("--netG", default=None, help="override the recipe's generator")
  p.add_argument("--ngf", type=int, default=None, help="override ngf and ndf (default 64)")
  p.add_argument("--steps", type=int, default=5, help="timed steps (0: compile only, report memory and FLOPs)")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--rounds", type=int, default=0,
                 help="rounds of --steps timed steps per framework (default 2 with --compare, else 1)")
  p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads (JAX uses every core)")
  p.add_argument("--compare", choices=("torch",), default=None)
  p.add_argument("--torch-tuned", action="store_true",
                 help="give the PyTorch process jaxgan's malloc setting too (jaxgan.host.keep_freed_memory)")
  p.add_argument("--peak", action="store_true", help="also measure the matmul peak")
  p.add_argument("--plain", action="store_true", help="disable the fast_ops formulations")
  p.add_argument("--remat", action="store_true", help="rematerialise generator blocks (config.remat)")
  p.add_argument("--cache-dir", default=None, help="persistent compilation cache; also time a cached compile")
  p.add_argument("--profile", type=int, default=0, metavar="N", help="print the N most expensive ops")
  p.add_argument("--ops", action="store_true", help="micro-benchmark fast_ops against their plain forms")
  p.add_argument("--op-filter", default="", help="--ops: comma list of substrings of case names")
  p.add_argument("--reps", type=int, default=5, help="--ops: interleaved repeats")
  p.add_argument("--data", action="store_true", help="forward the other arguments to scripts/benchmark_data.py")
  p.add_argument("--fid", action="store_true", help="forward the other arguments to scripts/bench_fid.py")
  return p.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> dict | list | None:
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--fid" in argv:   # all other arguments are bench_fid's (some share names with this script's)
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import bench_fid  # pylint: disable=import-outside-toplevel
    return bench_fid.main([a for a in argv if a != "--fid"])
  args, rest = parse_args(argv)
  if args.data:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import benchmark_data  # pylint: disable=import-outside-toplevel
    return benchmark_data.main(rest)
  if rest:
    raise SystemExit(f"benchmark.py: unknown arguments {rest}")
  flags = os.environ.get("XLA_FLAGS", "")
  if args.devices > 1:
    flags += f" --xla_force_host_platform_device_count={args.devices}"
  if args.profile:
    flags += " --xla_cpu_enable_xprof_traceme=true"
  os.environ["XLA_FLAGS"] = flags.strip()
  from jaxgan import host  # pylint: disable=import-outside-toplevel
  host_tuning = host.configure()   # as the jaxgan program does; JAXGAN_HOST_TUNING=0 to measure without
  import jax
  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if args.ops:
    return run_ops(args)
  if args.peak and not args.model:
    out = measure_peak()
    print(json.dumps(out))
    return out
  out = run_step(args)
  out["host_tuning"] = bool(host_tuning["keep_freed_memory"] or host_tuning["xla_flags"])
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  main()
