"""jaxgan benchmarks, one entry point: throughput, compile time, memory and FLOPs, optionally beside PyTorch.

    python scripts/benchmark.py --model cyclegan --size 256 --batch 1 --compare torch [--peak]   # step mode
    python scripts/benchmark.py --model pix2pix --dtype bfloat16 --devices 2 [--profile 20]
    python scripts/benchmark.py --ops [--op-filter resblock] [--compare torch]
    python scripts/benchmark.py --data [benchmark_data options ...]
    python scripts/benchmark.py --sharded-flops [bench/sharded.py options ...]   # + all-reduce bytes / params
    python scripts/benchmark.py --fid [bench_fid.py options ...]   # FID features/s against pytorch-fid

One module per mode, the shared timing helpers in ``scripts/bench/common.py``:

- step mode (the default; ``--compare torch``, ``--peak``, ``--profile N``,
  ``--steps 0`` for compile only): ``scripts/bench/step.py`` and
  ``scripts/bench/profile.py``;
- ``--ops``: each ``jaxgan.cpu.fast_ops`` formulation against its plain
  form at the real layer shapes, ``scripts/bench/ops.py``;
- the modes of :data:`MODES`, which take their own options: every argument
  but the mode flag goes to that module's ``main(argv)``.

This process applies ``jaxgan.cpu.host.configure()`` first in step and ops mode,
as the ``jaxgan`` program does (``JAXGAN_HOST_TUNING=0`` to measure without
it); ``--torch-tuned`` gives the PyTorch process the same malloc setting. The
machine may be shared: every figure is the minimum or the median over repeats
interleaved between the variants compared, and the last line printed in step
mode is one JSON object (keys in ``scripts/bench/step.py``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Sequence

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
if SCRIPTS not in sys.path:
  sys.path.insert(0, SCRIPTS)

# Modes with options of their own: flag -> (module under scripts/ with main(argv), help).
MODES: dict[str, tuple[str, str]] = {
    "--data": ("benchmark_data", "input-pipeline throughput: the other arguments go to scripts/benchmark_data.py"),
    "--sharded-flops": ("bench.sharded", "FLOPs of the sharded step on N devices against one, its collectives and "
                                         "all-reduce bytes against the parameters' bytes: the other arguments go "
                                         "to scripts/bench/sharded.py"),
    "--translate": ("bench.translate", "images/s of jaxgan translate's code path on a folder of photos against "
                                       "the PyTorch generator: the other arguments go to scripts/bench/translate.py"),
    "--fid": ("bench_fid", "FID Inception features/s against pytorch-fid: the other arguments go to "
                           "scripts/bench_fid.py"),
}


def parse_args(argv: Sequence[str] | None):
  """The options of step and ``--ops`` mode (and the :data:`MODES` flags, for ``--help``)."""
  p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
  p.add_argument("--model", default="cyclegan",
                 help="pix2pix, cyclegan, cut, fastcut (CUT/FastCUT: configs/cut_horse2zebra.py, "
                      "configs/fastcut_horse2zebra.py) or a comma list, timed in alternating rounds, e.g. "
                      "cyclegan,cut,fastcut (figures relative to the first)")
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
  p.add_argument("--torch-device", choices=("cpu", "cuda"), default="cpu",
                 help="where the PyTorch reference runs (cuda: timed with torch.cuda.synchronize)")
  p.add_argument("--torch-compile", action="store_true", help="torch.compile the reference's networks")
  p.add_argument("--torch-tuned", action="store_true",
                 help="give the PyTorch process jaxgan's malloc setting too (jaxgan.cpu.host.keep_freed_memory)")
  p.add_argument("--peak", action="store_true", help="also measure the matmul peak")
  p.add_argument("--plain", action="store_true",
                 help="build the step with the plain layer forms (default: as jaxgan train decides them)")
  p.add_argument("--form", action="append", default=[], metavar="FAMILY=0|1",
                 help="override the calibrated choice of one layer-form family (jaxgan.models.forms), at every shape, "
                      "e.g. --form conv_wgrad=0; repeatable")
  p.add_argument("--no-shares", action="store_true",
                 help="skip timing each layer family alone at the step's shapes (its share of the step)")
  p.add_argument("--remat", action="store_true", help="rematerialise generator blocks (config.remat)")
  p.add_argument("--cache-dir", default=None, help="persistent compilation cache; also time a cached compile")
  p.add_argument("--profile", type=int, default=0, metavar="N", help="print the N most expensive ops")
  p.add_argument("--ops", action="store_true", help="micro-benchmark fast_ops against their plain forms")
  p.add_argument("--op-filter", default="", help="--ops: comma list of substrings of case names")
  p.add_argument("--reps", type=int, default=5, help="--ops: interleaved repeats")
  for flag, (_, text) in MODES.items():
    p.add_argument(flag, action="store_true", help=text)
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict | list | int | None:
  argv = list(sys.argv[1:] if argv is None else argv)
  for flag, (module, _) in MODES.items():
    if flag in argv:
      argv.remove(flag)
      return importlib.import_module(module).main(argv)
  args = parse_args(argv)
  flags = os.environ.get("XLA_FLAGS", "")
  if args.devices > 1:
    flags += f" --xla_force_host_platform_device_count={args.devices}"
  if args.profile:
    flags += " --xla_cpu_enable_xprof_traceme=true"
  os.environ["XLA_FLAGS"] = flags.strip()
  from bench import common  # pylint: disable=import-outside-toplevel  # puts the repository on sys.path
  from jaxgan.cpu import host  # pylint: disable=import-outside-toplevel
  host_tuning = host.configure()   # as the jaxgan program does; JAXGAN_HOST_TUNING=0 to measure without
  import jax  # pylint: disable=import-outside-toplevel
  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if args.ops:
    from bench import ops  # pylint: disable=import-outside-toplevel
    return ops.run_ops(args)
  if args.peak and not args.model:
    out = common.measure_peak()
    print(json.dumps(out))
    return out
  from bench import step  # pylint: disable=import-outside-toplevel
  out = step.run_step(args)
  out["host_tuning"] = bool(host_tuning["keep_freed_memory"] or host_tuning["xla_flags"])
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  result = main()
  sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)
