"""Step mode (the default): throughput, compile time, memory and FLOPs of one full jaxgan train step.

    python scripts/benchmark.py --model cyclegan --size 256 --batch 1 --compare torch [--peak]
    python scripts/benchmark.py --model pix2pix --dtype bfloat16 --devices 2
    python scripts/benchmark.py --model cyclegan --steps 0 [--remat]        # compile only: FLOPs, buffers

Times ``jax.jit(train_step)`` (state donated) on random images: the real
recipe of ``configs`` defaults (pix2pix: unet_256 + basic PatchGAN, batch norm,
dropout, vanilla GAN + 100 L1; CycleGAN: two resnet_9blocks + two PatchGANs,
instance norm, LSGAN, cycle + identity, image pools; CUT and FastCUT: the authors'
recipes ``configs/cut_horse2zebra.py`` and ``configs/fastcut_horse2zebra.py``, against
``tests/torch_reference_cut.py``'s iteration). ``--model cyclegan,cut,fastcut``
times several in one process, each step in turn within every round, with each
figure also given over the first model's. It reports the trace and
compile time (``--cache-dir``: also the time to load the step from JAX's
persistent compilation cache after ``jax.clear_caches()``, as a second process
start would), XLA's FLOP count of the compiled step and the achieved FLOP/s,
XLA's buffer sizes and the process's peak RSS. ``--compare torch`` builds the
same networks and iteration from ``tests/torch_reference.py`` with the same
thread count, in its own process, and times the two in alternating rounds
(``--rounds`` of: one settling step, then ``--steps`` timed steps of JAX; the
same for PyTorch), so both see the same machine drift while neither has the
other's working set evicting its own within a round (on the shared 2-core
machine, the first JAX CycleGAN step right after a PyTorch step ran up to 20%
slower). PyTorch's FLOPs come from ``torch.utils.flop_counter``. ``--peak``
times a large float32 matmul in both frameworks (the machine's practical
peak). ``--plain`` builds the step with the plain layer forms (not those of
``jaxgan.cpu.fast_ops``; to measure what they buy); otherwise the forms are
decided as ``jaxgan train`` does and printed, with the kernel-gradient timings
at each conv shape of the step. ``--profile N`` prints
the N most expensive ops (:mod:`bench.profile`). After timing, each layer family's
layers are timed alone at the step's shapes and printed as shares of the step
(:mod:`bench.shares`; ``--no-shares`` skips it).

Every figure is the median or the minimum over repeats; :func:`run_step`
returns one dict -- keys ``model, size, batch, dtype, devices, img_per_s,
step_s, compile_s, flops_per_step, achieved_gflops`` and, when comparing,
``torch_img_per_s, ratio`` -- which ``scripts/benchmark.py`` prints as the last line.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

from bench.common import ROOT, TorchWorker, block, measure_peak, rss_mb, step_rss_mb, timed, xla_flops
from bench.profile import profile

MODELS = ("pix2pix", "cyclegan", "cut", "fastcut")
RECIPES = {"cut": "cut_horse2zebra", "fastcut": "fastcut_horse2zebra"}   # the authors' recipes (configs/)
CUT_OPTIONS = ("lambda_GAN", "lambda_NCE", "nce_idt", "nce_layers", "nce_T", "num_patches", "netF_nc",
               "flip_equivariance")   # what the PyTorch CUT iteration reads (the worker never imports jaxgan)


def parse_models(text: str) -> list[str]:
  """``--model``: one name or a comma list (timed in alternating rounds), each one of :data:`MODELS`."""
  names = [m.strip() for m in text.split(",") if m.strip()]
  bad = [m for m in names if m not in MODELS]
  if not names or bad or len(set(names)) != len(names):
    raise SystemExit(f"--model {text!r}: expected distinct names from {', '.join(MODELS)}, comma-separated")
  return names


def objective(name: str):
  """The jaxgan module of a benchmark model name (``fastcut`` is the ``cut`` objective)."""
  from jaxgan import objectives
  return objectives.get("cut" if name == "fastcut" else name)


def _config(args):
  from jaxgan import config as config_lib
  if args.model in RECIPES:
    import importlib
    c = importlib.import_module(f"configs.{RECIPES[args.model]}").get_config()
  else:
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


def build_jax_step(args, config):
  """(step_fn, state, batch, stats) with the step compiled; stats has compile times, FLOPs, memory."""
  import jax
  from jaxgan import parallel
  mod = objective(args.model)
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
  stats["flops_per_step"] = xla_flops(compiled)
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
  if os.path.join(ROOT, "tests") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
  import torch_reference as R  # pylint: disable=import-outside-toplevel
  from torch.utils.flop_counter import FlopCounterMode
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  device = torch.device(getattr(args, "torch_device", "cpu"))
  s, n = args.size, args.batch
  a, b = (torch.rand(n, 3, s, s, device=device) * 2 - 1 for _ in range(2))
  ngf = args.ngf or 64
  compile_ = (lambda m: torch.compile(m)) if getattr(args, "torch_compile", False) else (lambda m: m)  # noqa: E731
  nets = []
  if args.model in RECIPES:
    import numpy as np
    import torch_reference_cut as RC  # pylint: disable=import-outside-toplevel
    o = args.cut_options   # the recipe's values, read in the JAX process
    layers = list(o["nce_layers"])
    g = RC.ResnetGenerator(3, 3, ngf, "instance", _n_blocks(args.netG or "resnet_9blocks")).to(device)
    d = RC.NLayerDiscriminator(3, ngf, 3, "instance").to(device)
    with torch.no_grad():
      feats = g(a[:1], layers, encode_only=True)
    f = RC.PatchSampleF([t.shape[1] for t in feats], int(o["netF_nc"])).to(device)
    hws = [t.shape[2] * t.shape[3] for t in feats]
    nets = [g, d, f]
    opts = [R.adam(m.parameters(), 2e-4, 0.5) for m in nets]
    draws = np.random.default_rng(0)
    opt = dict(o, nce_layers=layers, batch_size=n)
    compiled_nets = list(map(compile_, nets))

    def iteration():   # the step's coin and patch positions drawn as the authors do (fresh each step)
      ids = [[draws.permutation(hw)[:min(int(o["num_patches"]), hw)] for hw in hws] for _ in range(2)]
      RC.cut_iteration(*compiled_nets, *opts, a, b, opt=opt, flipped=bool(draws.random() < 0.5),
                       patch_ids=ids)
  elif args.model == "pix2pix":
    g = R.define_G(3, 3, ngf, args.netG or "unet_256", norm="batch", use_dropout=True).to(device)
    d = R.define_D(6, ngf, "basic", norm="batch").to(device)
    opt_g, opt_d = R.adam(g.parameters(), 2e-4, 0.5), R.adam(d.parameters(), 2e-4, 0.5)
    nets, opts = [g, d], [opt_g, opt_d]
    g, d = compile_(g), compile_(d)
    iteration = lambda: R.pix2pix_iteration(g, d, opt_g, opt_d, a, b, "vanilla", 100.0)  # noqa: E731
  else:
    netg = args.netG or "resnet_9blocks"
    ga, gb = (R.define_G(3, 3, ngf, netg, norm="instance").to(device) for _ in range(2))
    da, db = (R.define_D(3, ngf, "basic", norm="instance").to(device) for _ in range(2))
    opt_g = R.adam(list(ga.parameters()) + list(gb.parameters()), 2e-4, 0.5)
    opt_d = R.adam(list(da.parameters()) + list(db.parameters()), 2e-4, 0.5)
    nets, opts = [ga, gb, da, db], [opt_g, opt_d]
    ga, gb, da, db = map(compile_, (ga, gb, da, db))
    iteration = lambda: R.cyclegan_iteration(ga, gb, da, db, opt_g, opt_d, a, b, 10.0, 10.0, 0.5,  # noqa: E731
                                             "lsgan")
  autocast = args.dtype == "bfloat16"

  def run():
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
      iteration()
    if device.type == "cuda":
      torch.cuda.synchronize()

  with FlopCounterMode(display=False) as counter:
    run()
  # Memory: parameters + Adam moments (as XLA's argument bytes) and the RSS one step adds (as its temp bytes).
  tensors = [p for m in nets for p in m.parameters()]
  tensors += [v for o in opts for st in o.state.values() for v in st.values() if torch.is_tensor(v)]
  memory = {"torch_state_mb": round(sum(t.numel() * t.element_size() for t in tensors) / 2 ** 20, 1)}
  if device.type == "cpu":
    memory.update({f"torch_{k}": v for k, v in step_rss_mb(run).items()})
  return run, {"torch_flops_per_step": float(counter.get_total_flops()), **memory}


def _n_blocks(net_g: str) -> int:
  """``resnet_9blocks`` -> 9."""
  return int(net_g.split("_", 1)[1][:-len("blocks")])


def torch_step_thunks(args: dict) -> tuple[dict[str, Callable], dict]:
  """``({"step": iteration}, {"torch_flops_per_step", memory figures})``, built in the PyTorch worker
  (:class:`bench.common.TorchWorker`)."""
  run, answer = build_torch_step(argparse.Namespace(**args))
  return {f"step_{args['model']}": run}, answer


def parse_forms(items) -> dict:
  """``["conv_wgrad=0", ...]`` -> ``{"conv_wgrad": False, ...}``; an unknown family or value is an error."""
  from jaxgan.models.forms import FAMILIES
  out = {}
  for item in items:
    family, sep, value = item.partition("=")
    if not sep or value not in ("0", "1") or family not in FAMILIES:
      raise SystemExit(f"--form {item!r}: expected FAMILY=0 or FAMILY=1 with FAMILY one of {', '.join(FAMILIES)}")
    out[family] = value == "1"
  return out


def step_forms(args, config):
  """The layer forms the benchmarked step is built with, as ``jaxgan train`` decides them (``auto``:
  this processor's calibration, per layer shape of this step), ``--plain``, or ``--form`` overrides
  (a whole family, every shape). Returns (LayerForms, how it was decided, per-shape timings)."""
  import jax
  from jaxgan.cpu import calibration
  from jaxgan.models.forms import LayerForms
  if args.plain:
    return LayerForms.parse("plain"), "--plain", {}
  mod = objective(args.model)
  batch = _batch(config, 1)
  shapes = ()
  if calibration.calibrates() is None:
    shapes = calibration.step_layer_shapes(lambda: mod.init(jax.random.PRNGKey(0), config, batch))
  forms = calibration.resolve_forms("auto", shapes=shapes)
  source = f"auto ({calibration.calibrates() or 'calibrated'})"
  overrides = parse_forms(getattr(args, "form", None) or [])
  if overrides:
    fast = {f for f in forms.fast if overrides.get(f, True)} | {f for f, v in overrides.items() if v}
    forms = LayerForms(frozenset(fast), tuple(s for s in forms.shapes if s[0] not in overrides))
    source += " + --form"
  timings = {}
  if shapes:
    entry = calibration._read(calibration.Path(calibration.default_dir()) / calibration.FILE_NAME)  # pylint: disable=protected-access
    timings = {k: v for k, v in entry.get(calibration.machine_key(), {}).get("layer_shapes", {}).items() if k in shapes}
  return forms, source, timings


def _prepare(args) -> dict:
  """One model's compiled step (and its PyTorch arguments): ``{"out", "step", "config", "forms", "torch_args"}``."""
  import jax
  config = _config(args)
  from jaxgan.models.forms import FAMILIES
  forms, source, shape_timings = step_forms(args, config)
  config.layer_forms = forms.spec()
  print(f"{args.model}: layer forms ({source}): {forms.summary()}", file=sys.stderr)
  for shape, t in sorted(shape_timings.items()):
    family, key = shape.split("@", 1)
    use = forms.use_fast(family, key)
    print(f"  {family:14s} at {key:24s}: CPU form {t['fast_s'] * 1e3:8.2f} ms, plain {t['plain_s'] * 1e3:8.2f} ms "
          f"per image -> {'CPU form' if use else 'plain'}", file=sys.stderr)
  compiled, state, batch, stats = build_jax_step(args, config)
  out = {"model": args.model, "size": args.size, "batch": args.batch, "dtype": args.dtype,
         "devices": len(jax.devices()), "threads": args.threads, "remat": bool(config.remat), "netG": config.netG,
         "layer_forms": {"source": source, **{f: forms.use_fast(f) for f in FAMILIES},
                         "shapes_opposite": {f: sum(1 for g, _ in forms.shapes if g == f) for f in FAMILIES}}}
  if args.model in RECIPES:
    out["recipe"] = f"configs/{RECIPES[args.model]}.py"
  out.update(stats)
  if "xla_temp_mb" in stats:
    out["xla_temp_plus_args_mb"] = round(stats["xla_temp_mb"] + stats["xla_args_mb"], 1)
  holder = {"state": state}

  def jax_step():
    holder["state"], metrics = compiled(holder["state"], batch)
    block(metrics)

  torch_args = dict(vars(args))
  if args.model in RECIPES:
    torch_args["cut_options"] = {k: (list(config[k]) if k == "nce_layers" else config[k]) for k in CUT_OPTIONS}
  return {"out": out, "step": jax_step, "compiled": compiled, "holder": holder, "batch": batch,
          "config": config, "forms": forms, "torch_args": torch_args}


def run_step(args) -> dict:
  """Time the step of each ``--model`` (and PyTorch's with ``--compare torch``) in alternating rounds.

  One model: the dict of the module doc. Several (``--model cyclegan,cut,fastcut``): ``{"models": {name:
  that dict}, "relative": {name: step time and memory over the first model's}}``.
  """
  import jax
  names = parse_models(args.model)
  runs = [_prepare(argparse.Namespace(**dict(vars(args), model=name))) for name in names]
  if args.steps == 0:   # compile only: XLA's FLOPs and buffer sizes, no timing
    for r in runs:
      r["out"].update(peak_rss_mb=round(rss_mb(), 1), date=time.strftime("%Y-%m-%d"))
    return _combine(runs)
  for r in runs:
    for _ in range(args.warmup):
      r["step"]()
  runs[0]["out"]["rss_after_jax_mb"] = round(rss_mb(), 1)
  worker = None
  rounds = args.rounds or (2 if args.compare or len(runs) > 1 else 1)
  if args.compare == "torch":
    # PyTorch runs in its own process: in this one its OpenMP threads would spin
    # against JAX's thread pool and slow both down.
    worker = TorchWorker(args.threads, args.torch_tuned)
    for r in runs:
      r["out"].update(torch_tuned=args.torch_tuned, torch_device=args.torch_device, torch_compile=args.torch_compile)
      r["out"].update(worker.call("build", "bench.step:torch_step_thunks", r["torch_args"]))
      r["torch_thunk"] = f"step_{r['out']['model']}"
  if args.profile:
    for r in runs:
      profile(r["compiled"], r["holder"], r["batch"], args.profile)
  for r in runs:
    r["times"], r["times_t"] = [], []
  for i in range(rounds):
    for r in runs:
      if worker is not None or len(runs) > 1:
        r["step"]()                  # settle after the other framework or model ran (round 0: its build)
      r["times"] += [timed(r["step"]) for _ in range(args.steps)]
      if worker is not None:
        for _ in range(max(args.warmup, 1) if i == 0 else 1):
          worker.call("run", r["torch_thunk"])
        r["times_t"] += [worker.call("run", r["torch_thunk"]) for _ in range(args.steps)]
  if worker is not None:
    worker.close()
  for r in runs:
    _summarise(r["out"], r["times"], r["times_t"], args.batch)
  if not args.no_shares and len(runs) == 1:
    r = runs[0]
    from bench.shares import family_shares
    mod, config, forms = objective(args.model), r["config"], r["forms"]
    per_device = _batch(config, args.batch // len(jax.devices()))
    shares = family_shares(lambda: mod.init(jax.random.PRNGKey(0), config, per_device), forms, r["out"]["step_s"],
                           dtype=config.dtype, batch=args.batch // len(jax.devices()))
    r["out"]["family_shares"] = shares
    for family, e in shares.items():
      cpu, plain = ("taps", "XLA") if family == "conv_wgrad" else ("CPU form", "plain")
      form = (cpu if e["fast_shapes"] == e["shapes"] else plain if not e["fast_shapes"] else
              f"{cpu} at {e['fast_shapes']} of {e['shapes']} shapes")
      print(f"  {family:15s} {form:>24s}  {e['layers']:3d} layers  {e['seconds']:.3f} s alone  "
            f"{100 * (e['share'] or 0):.0f}% of the step{' (' + e['note'] + ')' if 'note' in e else ''}",
            file=sys.stderr)
  if args.peak:
    on_cpu = jax.default_backend() == "cpu"
    peak_out = measure_peak(n=2048 if on_cpu else 8192, torch_too=args.compare == "torch", dtype=args.dtype)
    for r in runs:
      out = r["out"]
      out.update(peak_out)
      work = out.get("torch_flops_per_step", out["flops_per_step"])
      out["frac_peak"] = round(work / out["step_s"] / 1e9 / peak_out["peak_gflops"], 3)
      if "torch_step_s" in out:
        out["torch_frac_peak"] = round(work / out["torch_step_s"] / 1e9 / peak_out["peak_gflops"], 3)
  mem = jax.devices()[0].memory_stats() or {}
  for r in runs:
    out = r["out"]
    out["peak_rss_mb"] = round(rss_mb(), 1)
    out["backend"] = jax.default_backend()
    if "peak_bytes_in_use" in mem:   # accelerators: the device's peak memory in this process
      out["device_peak_mb"] = round(mem["peak_bytes_in_use"] / 2 ** 20, 1)
    out["date"] = time.strftime("%Y-%m-%d")
  return _combine(runs)


def _summarise(out: dict, times: list, times_t: list, batch: int) -> None:
  """Medians, bests and rates of one model's step times (and PyTorch's) into ``out``."""
  med, best = statistics.median(times), min(times)
  out.update(step_s=round(med, 4), step_best_s=round(best, 4), img_per_s=round(batch / med, 4),
             img_per_s_best=round(batch / best, 4),
             achieved_gflops=round(out["flops_per_step"] / med / 1e9, 1))
  if times_t:
    med_t, best_t = statistics.median(times_t), min(times_t)
    out.update(torch_step_s=round(med_t, 4), torch_step_best_s=round(best_t, 4),
               torch_img_per_s=round(batch / med_t, 4), ratio=round(med_t / med, 3),
               ratio_best=round(best_t / best, 3),
               torch_achieved_gflops=round(out["torch_flops_per_step"] / med_t / 1e9, 1),
               # the same work (PyTorch's FLOP count) at JAX's speed
               jax_model_gflops=round(out["torch_flops_per_step"] / med / 1e9, 1))
  out["step_times_s"] = [round(t, 3) for t in times]
  if times_t:
    out["torch_step_times_s"] = [round(t, 3) for t in times_t]


RELATIVE = ("step_s", "xla_temp_plus_args_mb", "flops_per_step", "torch_step_s", "torch_state_mb",
            "torch_step_peak_mb", "torch_flops_per_step")


def _combine(runs: list[dict]) -> dict:
  """One model's dict, or ``{"models": ..., "relative": ...}`` (each figure over the first model's)."""
  if len(runs) == 1:
    return runs[0]["out"]
  outs = {r["out"]["model"]: r["out"] for r in runs}
  ref = runs[0]["out"]
  relative = {name: {k: round(o[k] / ref[k], 3) for k in RELATIVE if o.get(k) and ref.get(k)}
              for name, o in outs.items()}
  for name, rel in relative.items():
    print(f"{name:9s} over {ref['model']}: " + ", ".join(f"{k} {v:.2f}x" for k, v in rel.items()), file=sys.stderr)
  return {"models": outs, "relative": relative, "reference": ref["model"]}
