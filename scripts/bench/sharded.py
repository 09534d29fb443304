"""``--sharded-flops``: FLOPs and collectives of the sharded step on N devices against one device.

    python scripts/benchmark.py --sharded-flops [--model cyclegan] [--devices 2 4 8] [--pool_size 0] ...
    python scripts/benchmark.py --sharded-flops --model cyclegan --size 128 --width 64 --devices 8 --no-flops
    python scripts/benchmark.py --sharded-flops --model cut --devices 8      # or fastcut: the authors' recipes

(or ``python scripts/bench/sharded.py`` with the same options). It starts
itself again in a subprocess with ``--xla_force_host_platform_device_count``
fake CPU devices, compiles :func:`jaxgan.parallel.jit_train_step` for each
device count and reads XLA's ``cost_analysis()`` (FLOPs per device, times N),
against the plain one-device ``jax.jit`` of the same step. The image pool is
on (CycleGAN's default) unless ``--pool_size 0``. Nothing is executed, only
compiled. Prints one JSON line per device count.

Collectives (``collectives``, ``allreduce_*``): read off the partitioned
program XLA compiled (``compiled.as_text()``): the number of each collective
op, the bytes the all-reduces carry per step (their result shapes), and that
over the bytes of the trainable parameters (``allreduce_over_params``: 1.0 is
one exchange of every gradient; each extra use of a weight whose gradient is
reduced on its own adds its size again). ``--no-flops`` skips the one-device
compile (only the collectives). The figures are XLA:CPU's partitioning; GPU
and TPU run further passes (combining, reassociating) of their own.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # scripts/: this file also runs on its own

from bench.common import xla_flops  # noqa: E402  pylint: disable=wrong-import-position


COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}
_OP_LINE = re.compile(r"=\s*(?P<shape>.*?)\s(?P<op>[a-z-]+?)(?:-start)?\(")
_ARRAY = re.compile(r"\b([a-z]+[0-9]*)\[([0-9,]*)\]")


def _shape_bytes(shape: str) -> int:
  """Bytes of an HLO result shape: ``f32[3,3,8,8]{...}`` or a tuple ``(f32[8]{0}, bf16[2,4]{1,0})``."""
  total = 0
  for dtype, dims in _ARRAY.findall(shape):
    n = 1
    for d in filter(None, dims.split(",")):
      n *= int(d)
    total += n * _DTYPE_BYTES.get(dtype, 4)
  return total


def collectives(hlo_text: str) -> dict:
  """Count each collective op of a compiled HLO module's text and the bytes its all-reduces carry.

  Returns ``{"all-reduce": count, ..., "allreduce_bytes": int}``. Async pairs (``all-reduce-start`` /
  ``-done``) count once; ops inside loop bodies count once (the steps' collectives are not in loops).
  """
  counts = {op: 0 for op in COLLECTIVES}
  nbytes = 0
  for line in hlo_text.splitlines():
    m = _OP_LINE.search(line)
    if not m or m.group("op") not in counts:
      continue
    counts[m.group("op")] += 1
    if m.group("op") == "all-reduce":
      nbytes += _shape_bytes(m.group("shape"))
  return {**counts, "allreduce_bytes": nbytes}


def param_bytes(state) -> int:
  """Bytes of the trainable parameters (``state.params``) of a train state or its shape tree."""
  import jax
  import numpy as np
  return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state.params)))


def measure(args: argparse.Namespace) -> list[dict]:
  import jax
  import numpy as np
  from jaxgan import parallel
  from bench.step import _config, objective
  model = objective(args.model)
  # The recipe of step mode (CUT/FastCUT: the authors' configs/*_horse2zebra.py), at this size and width.
  c = _config(argparse.Namespace(model=args.model, size=args.size, batch=args.batch, dtype="float32", remat=False,
                                 netG=args.netG or ("unet_64" if args.model == "pix2pix" else "resnet_6blocks"),
                                 ngf=args.width))
  c.num_train_steps = 100
  if args.model == "cyclegan":
    c.pool_size = args.pool_size
  if args.norm:
    c.norm = args.norm
  rng = np.random.default_rng(0)
  batch = {k: rng.uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype(np.float32) for k in "AB"}
  state = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), c, batch))
  base = None
  if not args.no_flops:
    base = xla_flops(jax.jit(functools.partial(model.train_step, config=c)).lower(state, batch).compile())
  pbytes = param_bytes(state)
  rows = []
  for n in args.devices:
    if n > jax.device_count() or args.batch % n:
      continue
    mesh = parallel.make_mesh(jax.devices()[:n])
    rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
    bt = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=data), batch)
    compiled = parallel.jit_train_step(model.train_step, c, mesh).lower(st, bt).compile()
    comm = collectives(compiled.as_text())
    row = {"model": args.model, "netG": c.netG, "pool_size": c.get("pool_size", 0), "global_batch": args.batch,
           "devices": n, "size": args.size, "width": args.width}
    if base is not None:
      total = xla_flops(compiled) * n
      row.update(gflops_one_device=round(base / 1e9, 3), gflops_all_devices=round(total / 1e9, 3),
                 work_ratio=round(total / base, 4))
    row.update(collectives={op: comm[op] for op in COLLECTIVES}, param_mib=round(pbytes / 2**20, 2),
               allreduce_mib=round(comm["allreduce_bytes"] / 2**20, 2),
               allreduce_over_params=round(comm["allreduce_bytes"] / pbytes, 3))
    rows.append(row)
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="cyclegan", choices=("cyclegan", "pix2pix", "cut", "fastcut"),
                 help="cut, fastcut: the recipes configs/cut_horse2zebra.py, configs/fastcut_horse2zebra.py")
  p.add_argument("--netG", default=None)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--width", type=int, default=8, help="ngf = ndf")
  p.add_argument("--batch", type=int, default=8, help="global batch")
  p.add_argument("--pool_size", type=int, default=50)
  p.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
  p.add_argument("--no-flops", action="store_true", help="skip the one-device compile; collectives only")
  p.add_argument("--norm", default=None, help="override the recipe's norm (batch, instance, none)")
  p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if not args._child:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={max(args.devices)}").strip()
    cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--_child"]
    return subprocess.run(cmd, env=env, check=False).returncode
  for row in measure(args):
    print(json.dumps(row), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
