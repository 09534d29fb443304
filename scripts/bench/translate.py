"""Translate mode: images/s of ``jaxgan translate``'s code path on a folder of photos, against PyTorch.

    python scripts/benchmark.py --translate [--model cyclegan|pix2pix] [--size 256] [--images 32]
                                            [--batch 8] [--rounds 3] [--threads 2]

Writes ``--images`` JPEG photos of ``--size`` x ``--size`` (smooth random
colour fields, so the JPEG decoder does real work) into a temporary folder.
jaxgan: :func:`jaxgan.inference.translate_files`, which is what ``jaxgan
translate --input DIR --output DIR`` runs after loading the checkpoint (decode,
batch of ``--batch`` images, the jitted generator, PNG encode, rename), on the
recipe's generator with random weights (CycleGAN: resnet_9blocks with instance
norm; pix2pix: unet_256 with batch norm and dropout, the reference's test-time
behaviour). PyTorch: the same generator of ``tests/torch_reference.py`` in its
own process with ``--threads`` threads, run as the authors' ``test.py`` does
(one image at a time under ``torch.no_grad()``: PIL decode, to tensor in
[-1, 1], the network, ``tensor2im``-style conversion, PNG encode) and, as a
second PyTorch figure, at the same batch size as jaxgan. Both frameworks are
timed over the whole folder in alternating rounds; the network alone (no file
work) is timed the same way. The first jaxgan call of each shape compiles
(reported as ``compile_s``, not counted in images/s), as the CLI's first batch
does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, TorchWorker, block, timed


def _args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
  p.add_argument("--model", choices=("cyclegan", "pix2pix"), default="cyclegan")
  p.add_argument("--size", type=int, default=256)
  p.add_argument("--images", type=int, default=32)
  p.add_argument("--batch", type=int, default=8, help="jaxgan translate --batch_size (its default: 8)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--threads", type=int, default=os.cpu_count())
  return p.parse_args(argv)


def write_photos(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
  """``n`` size x size JPEGs of smooth random colour fields (upsampled noise plus fine grain)."""
  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for i in range(n):
    coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    path = folder / f"photo_{i:04d}.jpg"
    Image.fromarray(img).save(path, quality=90)
    paths.append(path)
  return paths


def _generator_spec(model: str) -> dict:
  return ({"netG": "resnet_9blocks", "norm": "instance"} if model == "cyclegan"
          else {"netG": "unet_256", "norm": "batch", "use_dropout": True})


def torch_thunks(model: str, files: list[str], out_dir: str, batch: int, threads: int):
  """PyTorch worker builder: thunks translating the folder (batch 1 as test.py, and batch ``batch``)
  and the network alone; answers the parameter count."""
  import numpy as np
  import torch
  from PIL import Image
  tests = os.path.join(ROOT, "tests")
  if tests not in sys.path:
    sys.path.insert(0, tests)
  import torch_reference as R  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(threads)
  spec = _generator_spec(model)
  net = R.define_G(3, 3, 64, spec["netG"], norm=spec["norm"], use_dropout=spec.get("use_dropout", False))
  net.train()   # the authors' test.py without --eval: BatchNorm on the batch, dropout on (no-op for instance norm)
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)

  def load(path):
    x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1.0)
    return x.permute(2, 0, 1)

  def save(y, name):
    img = ((y.permute(1, 2, 0).clamp(-1, 1).numpy() + 1.0) * 127.5).round().astype(np.uint8)
    Image.fromarray(img).save(out / (Path(name).stem + ".png"))

  def folder(bs):
    def run():
      with torch.no_grad():
        for i in range(0, len(files), bs):
          chunk = files[i:i + bs]
          ys = net(torch.stack([load(f) for f in chunk]))
          for y, f in zip(ys, chunk):
            save(y, f)
    return run

  x1 = torch.rand(1, 3, *Image.open(files[0]).size[::-1]) * 2 - 1
  xb = x1.repeat(batch, 1, 1, 1)

  def net_only(x):
    def run():
      with torch.no_grad():
        for _ in range(0, len(files), x.shape[0]):
          net(x)
    return run

  folder(1)()   # settle (allocator, OpenMP pool)
  return ({"folder_b1": folder(1), "folder_bn": folder(batch), "net_b1": net_only(x1), "net_bn": net_only(xb)},
          sum(p.numel() for p in net.parameters()))


def run_translate(argv=None) -> dict:
  args = _args(argv)
  from jaxgan.cpu import host
  host.configure()
  import jax
  import numpy as np
  from jaxgan import config as config_lib
  from jaxgan import inference, objectives
  from jaxgan.cpu import calibration
  if args.model == "cyclegan":
    config = config_lib.get_cyclegan_base_config()
  else:
    config = config_lib.get_base_config()
  config.load_size = config.crop_size = args.size
  config.num_train_steps = 1   # the optimiser's schedule needs a length; translate never steps
  config.layer_forms = calibration.resolve_forms("auto").spec()   # the per-family choice a trained workdir records
  model = objectives.for_config(config)
  tmp = Path(tempfile.mkdtemp(prefix="jaxgan-bench-translate-"))
  files = write_photos(tmp / "in", args.images, args.size)
  targets = [tmp / "out_jax" / (f.stem + ".png") for f in files]
  (tmp / "out_jax").mkdir()
  ones = np.zeros((1, args.size, args.size, 3), np.float32)
  state = model.init(jax.random.PRNGKey(0), config, {"A": ones, "B": ones})
  params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(state.params[model.GENERATOR_FOR["AtoB"]]))
  t0 = time.perf_counter()
  inference.translate_files(state, config, files[:args.batch], targets[:args.batch], batch_size=args.batch)
  compile_s = time.perf_counter() - t0
  run = inference._translate_fn(model, config, "AtoB", False)  # pylint: disable=protected-access
  xb = np.random.default_rng(0).uniform(-1, 1, (args.batch, args.size, args.size, 3)).astype(np.float32)
  ids = np.arange(args.batch, dtype=np.uint32)
  block(run(state, xb, ids))
  n_batches = -(-len(files) // args.batch)

  jax_folder = lambda: inference.translate_files(state, config, files, targets, batch_size=args.batch)  # noqa: E731

  def jax_net():
    for _ in range(n_batches):
      block(run(state, xb, ids))

  torch_worker = TorchWorker(args.threads)
  torch_params = torch_worker.call("build", "bench.translate:torch_thunks", args.model, [str(f) for f in files],
                                   str(tmp / "out_torch"), args.batch, args.threads)
  times: dict[str, list[float]] = {k: [] for k in ("jax_folder", "jax_net", "torch_folder_b1", "torch_folder_bn",
                                                   "torch_net_b1", "torch_net_bn")}
  try:
    for _ in range(args.rounds):
      times["jax_folder"].append(timed(jax_folder))
      times["jax_net"].append(timed(jax_net))
      for name in ("folder_b1", "folder_bn", "net_b1", "net_bn"):
        times["torch_" + name].append(torch_worker.call("run", name))
  finally:
    torch_worker.close()
  n = len(files)
  n_net = n_batches * args.batch
  rate = lambda key, count: round(count / statistics.median(times[key]), 3)  # noqa: E731
  out = {"mode": "translate", "model": args.model, "size": args.size, "images": n, "batch": args.batch,
         "threads": args.threads, "params": params, "torch_params": torch_params, "compile_s": round(compile_s, 2),
         "jax_img_per_s": rate("jax_folder", n), "torch_img_per_s": rate("torch_folder_b1", n),
         "torch_batched_img_per_s": rate("torch_folder_bn", n),
         "jax_net_img_per_s": rate("jax_net", n_net), "torch_net_b1_img_per_s": rate("torch_net_b1", n),
         "torch_net_batched_img_per_s": rate("torch_net_bn", n_net),
         "backend": jax.default_backend(), "date": time.strftime("%Y-%m-%d"),
         "round_times_s": {k: [round(t, 3) for t in v] for k, v in times.items()}}
  out["ratio"] = round(out["jax_img_per_s"] / out["torch_img_per_s"], 3)
  out["ratio_vs_torch_batched"] = round(out["jax_img_per_s"] / out["torch_batched_img_per_s"], 3)
  return out


def main(argv=None) -> dict:
  import json
  out = run_translate(argv)
  print(json.dumps(out), flush=True)
  return out
