"""``--sharded-flops``: total FLOPs of the sharded step on N devices relative to one device, same global batch.

    python scripts/benchmark.py --sharded-flops [--model cyclegan] [--devices 2 4 8] [--pool_size 0] ...

(or ``python scripts/bench/sharded.py`` with the same options). It starts
itself again in a subprocess with ``--xla_force_host_platform_device_count``
fake CPU devices, compiles :func:`jaxgan.parallel.jit_train_step` for each
device count and reads XLA's ``cost_analysis()`` (FLOPs per device, times N),
against the plain one-device ``jax.jit`` of the same step. The image pool is
on (CycleGAN's default) unless ``--pool_size 0``. Nothing is executed, only
compiled. Prints one JSON line per device count.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # scripts/: this file also runs on its own

from bench.common import xla_flops  # noqa: E402  pylint: disable=wrong-import-position


def _collectives(compiled) -> dict[str, int]:
  text = compiled.as_text()
  return {op: text.count(f" {op}(") for op in ("all-gather", "all-reduce", "reduce-scatter", "all-to-all")}


def measure(args: argparse.Namespace) -> list[dict]:
  import jax
  import numpy as np
  from jaxgan import config as config_lib, cyclegan, parallel, pix2pix
  model = {"cyclegan": cyclegan, "pix2pix": pix2pix}[args.model]
  c = config_lib.get_cyclegan_base_config() if args.model == "cyclegan" else config_lib.get_base_config()
  c.update(dict(netG=args.netG or ("resnet_6blocks" if args.model == "cyclegan" else "unet_64"), ngf=args.width,
                ndf=args.width, batch_size=args.batch, num_train_steps=100, crop_size=args.size, load_size=args.size))
  if args.model == "cyclegan":
    c.pool_size = args.pool_size
  rng = np.random.default_rng(0)
  batch = {k: rng.uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype(np.float32) for k in "AB"}
  state = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), c, batch))
  one = jax.jit(functools.partial(model.train_step, config=c)).lower(state, batch).compile()
  base = xla_flops(one)
  rows = []
  for n in args.devices:
    if n > jax.device_count() or args.batch % n:
      continue
    mesh = parallel.make_mesh(jax.devices()[:n])
    rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
    st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
    bt = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=data), batch)
    compiled = parallel.jit_train_step(model.train_step, c, mesh).lower(st, bt).compile()
    total = xla_flops(compiled) * n
    rows.append({"model": args.model, "pool_size": c.pool_size, "global_batch": args.batch, "devices": n,
                 "size": args.size, "width": args.width, "gflops_one_device": round(base / 1e9, 3),
                 "gflops_all_devices": round(total / 1e9, 3), "work_ratio": round(total / base, 4),
                 "collectives": _collectives(compiled)})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="cyclegan", choices=("cyclegan", "pix2pix"))
  p.add_argument("--netG", default=None)
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--width", type=int, default=8, help="ngf = ndf")
  p.add_argument("--batch", type=int, default=8, help="global batch")
  p.add_argument("--pool_size", type=int, default=50)
  p.add_argument("--devices", type=int, nargs="+", default=[2, 4, 8])
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
