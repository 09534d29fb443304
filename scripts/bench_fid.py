"""FID feature throughput: jaxgan's Inception against pytorch-fid's, same machine, same thread count, one run.

    python scripts/bench_fid.py [--batch 50] [--rounds 5] [--steps 2] [--threads N] [--blocks]
    python scripts/benchmark.py --fid [same options]

Both networks hold the same random weights (pytorch-fid's model built with its own
``fid_inception_v3``, the download replaced: ``tests/fid_reference.py``) and see
uint8 299x299 RGB batches (jaxgan takes the uint8 batch and divides on the device;
PyTorch gets the float tensor ``ToTensor`` makes, so its input conversion is not
timed). PyTorch runs in its own spawned process with ``--threads`` threads (so
neither framework's thread pool spins against the other's), and the two are timed
in alternating rounds: per round one settling batch, then ``--steps`` timed batches
of each; the median per-batch time over all rounds is reported. The machine may be
shared: say so beside any figure. ``--blocks`` also times each stage of the network
(stem, Mixed_5b, ...) on its own in both frameworks, to find a slow XLA path.
Without pytorch-fid (``pip install --no-deps pytorch-fid torchvision``) only jaxgan
is timed. The last line printed is one JSON object: ``batch, jax_feat_per_s,
torch_feat_per_s`` (medians), ``*_best_feat_per_s``, ``ratio`` (of the medians),
``ratio_per_round_median`` (the median of each round's ratio), ``compile_s, threads, devices``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

STAGES = ("stem", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c")


def _torch_worker(conn, threads: int, batch: int, weights_path: str) -> None:
  """Child process: pytorch-fid's model with random weights; saves them to ``weights_path``, then times
  ("run",) a batch, ("stage", name) one stage, until ("stop",)."""
  import numpy as np
  import torch
  torch.set_num_threads(threads)
  try:
    import fid_reference as R
    R.import_torchvision()
    import pytorch_fid.inception as inception
  except ImportError as e:
    conn.send(("unavailable", str(e)))
    return
  state = R.random_fid_state_dict(inception)
  torch.save(state, weights_path)
  model = R.pytorch_fid_model(inception, state)
  x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, 3, 299, 299), dtype=np.uint8)).float() / 255
  stages = _torch_stages(model)
  inputs = {}
  with torch.no_grad():
    h = 2 * x - 1
    for name, fn in stages:
      inputs[name] = h
      h = fn(h)
  conn.send(("ready", threads))
  while True:
    msg = conn.recv()
    if msg[0] == "stop":
      return
    with torch.no_grad():
      t = time.perf_counter()
      if msg[0] == "run":
        model(x)
      else:
        dict(stages)[msg[1]](inputs[msg[1]])
      conn.send(time.perf_counter() - t)


def _torch_stages(model):
  b = model.blocks
  stem = lambda h: b[1](b[0](h))  # noqa: E731
  mixed = list(b[2]) + list(b[3])[:-1]
  return [("stem", stem)] + [(name, m) for name, m in zip(STAGES[1:], mixed)]


class TorchWorker:
  def __init__(self, threads: int, batch: int, weights_path: str):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_torch_worker, args=(child, threads, batch, weights_path), daemon=True)
    self.proc.start()
    self.status = self.conn.recv()

  def call(self, *msg) -> float:
    self.conn.send(msg)
    return self.conn.recv()

  def close(self) -> None:
    if self.status[0] == "ready":
      self.conn.send(("stop",))
    self.proc.join(timeout=30)


def _jax_stages(params):
  import jax
  from jaxgan.fid import inception as I

  class Stem(I.nn.Module):
    @I.nn.compact
    def __call__(self, x):
      c = lambda *a: I._conv_param(self, *a)  # noqa: E731
      x = I._conv(x, c("Conv2d_1a_3x3", 3, 32, 3, 3), stride=2)
      x = I._conv(x, c("Conv2d_2a_3x3", 32, 32, 3, 3))
      x = I._conv(x, c("Conv2d_2b_3x3", 32, 64, 3, 3), padding=(1, 1))
      x = I.max_pool(x, 2, 0)
      x = I._conv1x1_group(x, (c("Conv2d_3b_1x1", 64, 80, 1, 1),), (True,))[0]
      x = I._conv(x, c("Conv2d_4a_3x3", 80, 192, 3, 3))
      return I.max_pool(x, 2, 0)

  modules = {"stem": Stem(), "Mixed_5b": I.InceptionA(32), "Mixed_5c": I.InceptionA(64),
             "Mixed_5d": I.InceptionA(64), "Mixed_6a": I.InceptionB(), "Mixed_6b": I.InceptionC(128),
             "Mixed_6c": I.InceptionC(160), "Mixed_6d": I.InceptionC(160), "Mixed_6e": I.InceptionC(192),
             "Mixed_7a": I.InceptionD(), "Mixed_7b": I.InceptionE(False), "Mixed_7c": I.InceptionE(True)}
  stem_keys = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
  out = []
  for name in STAGES:
    p = {k: params[k] for k in stem_keys} if name == "stem" else params[name]
    out.append((name, jax.jit(lambda x, m=modules[name], p=p: m.apply({"params": p}, x))))
  return out


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=int, default=50, help="images per batch (pytorch-fid's default 50)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=2, help="timed batches per framework and round")
  p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads (JAX uses every core)")
  p.add_argument("--devices", type=int, default=1, help="CPU: split the host into this many XLA devices")
  p.add_argument("--blocks", action="store_true", help="also time each stage of the network in both frameworks")
  p.add_argument("--no-torch", action="store_true", help="time jaxgan only")
  return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(argv)
  if args.devices > 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}").strip()
  from jaxgan.cpu import host  # pylint: disable=import-outside-toplevel
  host.configure()   # as the jaxgan program does
  tmp = tempfile.mkdtemp(prefix="bench_fid_")
  weights = os.path.join(tmp, "random_fid_inception.pth")
  worker = None if args.no_torch else TorchWorker(args.threads, args.batch, weights)
  if worker is not None and worker.status[0] != "ready":
    print(f"pytorch-fid unavailable ({worker.status[1]}): timing jaxgan only", file=sys.stderr)
    worker.close()
    worker = None
  import jax
  import numpy as np
  from jaxgan import fid
  if worker is not None:
    params = fid.load_params(weights)
  else:
    params = fid.FIDInceptionV3().init(jax.random.key(0), np.zeros((1, 299, 299, 3), np.float32))["params"]
  extractor = fid.FeatureExtractor(params, batch_size=args.batch)
  images = np.random.default_rng(0).integers(0, 256, (args.batch, 299, 299, 3), dtype=np.uint8)
  compile_s = _timed(lambda: extractor(images))
  jax_t, torch_t = [], []
  for r in range(args.rounds):
    extractor(images)
    jax_t += [_timed(lambda: extractor(images)) for _ in range(args.steps)]
    if worker is not None:
      worker.call("run")
      torch_t += [worker.call("run") for _ in range(args.steps)]
    print(f"round {r}: jax {args.batch / jax_t[-1]:.2f} feat/s" +
          (f"  torch {args.batch / torch_t[-1]:.2f} feat/s" if torch_t else ""), flush=True)
  out = {"batch": args.batch, "jax_feat_per_s": round(args.batch / statistics.median(jax_t), 3),
         "compile_s": round(compile_s, 2), "threads": args.threads, "devices": len(jax.devices()),
         "cpu": _cpu_name()}
  out["jax_best_feat_per_s"] = round(args.batch / min(jax_t), 3)
  if torch_t:
    out["torch_feat_per_s"] = round(args.batch / statistics.median(torch_t), 3)
    out["torch_best_feat_per_s"] = round(args.batch / min(torch_t), 3)
    out["ratio"] = round(out["jax_feat_per_s"] / out["torch_feat_per_s"], 3)
    # the same round's figures side by side: robust to the load of a shared machine changing between rounds
    out["ratio_per_round_median"] = round(statistics.median(t / j for j, t in zip(jax_t, torch_t)), 3)
  if args.blocks:
    out["stages_ms"] = _time_stages(params, images, worker, args)
  if worker is not None:
    worker.close()
  print(json.dumps(out), flush=True)
  return out


def _time_stages(params, images, worker, args) -> dict:
  import jax
  import numpy as np
  stages = _jax_stages(params)
  h = 2 * (images.astype(np.float32) / 255) - 1
  inputs = {}
  for name, fn in stages:
    inputs[name] = jax.device_put(h)
    h = jax.block_until_ready(fn(inputs[name]))
  res = {}
  for name, fn in stages:
    jt = min(_timed(lambda: jax.block_until_ready(fn(inputs[name]))) for _ in range(args.rounds))
    tt = min(worker.call("stage", name) for _ in range(args.rounds)) if worker is not None else None
    res[name] = {"jax": round(jt * 1e3, 1), "torch": None if tt is None else round(tt * 1e3, 1)}
    print(f"{name:10s} jax {jt * 1e3:8.1f} ms" + (f"   torch {tt * 1e3:8.1f} ms" if tt else ""), flush=True)
  return res


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  import platform
  return platform.processor() or platform.machine()


if __name__ == "__main__":
  main()
