"""Input-pipeline throughput at the reference 286 -> 256 preprocessing, against what the host can do.

    python scripts/benchmark_data.py [--rounds 3] [--seconds 3] [--batch-size 8] [--workers N] [--accelerators N]
    python scripts/benchmark_data.py --grid [--batch-sizes 1,8] [--workers 0,2] [--steps 30] [--sources ...]
    python scripts/benchmark_data.py --scan 100000 [--scan-dir DIR]

The default mode measures, side by side in one run, the *default* pipeline
(``create_pipeline`` of the CycleGAN recipe on a ``folder:`` of 256x256 JPEGs,
286 -> 256, batch 8, every data setting at its default) against the host's
limit: the number of cores this process may use times the rate of a bare
single-thread PIL loop doing the same work (decode A and B, bicubic resize to
286, random 256 crop, random flip, a contiguous uint8 array) on the same files.
It prints examples/s of both, their ratio (the target is >= 0.7), the dtype the
batches arrive in and the bytes per example they carry. On a machine other work
also loads, no parallel code gets ``cores`` x a lone thread's rate (Linux's
autogroup scheduler shares the CPU per session, not per thread), so the load
average is printed beside each round and, for an in-process pipeline,
``cpu_efficiency``: its examples per CPU second over the bare loop's -- the
work it adds per example, whatever the load. For a reading close to an idle
machine's on a shared one, give the run's session the top autogroup priority:
``setsid bash -c 'echo -20 > /proc/$$/autogroup; python scripts/benchmark.py --data'``. The two are measured in
alternating rounds (``--rounds``), each a fresh iterator whose first batches
(worker start-up) are not timed, so a machine shared with other work loads both
alike; the medians are reported. ``--accelerators N`` sizes the default
pipeline as a process driving N accelerators would (worker processes); by
default it is sized for this process (CPU devices: reader threads).

``--grid`` is the older table: examples/s for each source, batch size and
worker count:

``--scan N`` instead times opening an unpaired folder of N files per domain
(listing, sorting, matching names) and the image-size check that CycleGAN with
``preprocess=scale_width`` runs before training (PNG headers only), on N tiny
identical 4x4 PNGs per domain written to a temporary folder (or ``--scan-dir``,
reused when it already holds them).

``scripts/benchmark.py --data`` forwards here (``main(argv)``). Sources:

- ``demo:facades`` (paired) and ``demo:seasons`` (unpaired): generated at 286
  and randomly cropped to 256 (generation is part of the cost);
- ``folder-unpaired``: 256x256 JPEGs in trainA/ trainB/ (decode, resize to 286,
  crop 256, flip), written once to a temporary folder;
- ``folder-paired``: 512x256 side-by-side A|B JPEGs in train/;
- ``tfds``: the ``tfds:cycle_gan`` code path (``TfdsDomain`` records decoded by
  TFDS's own numpy image decoder) over an in-memory source of 256x256 JPEG
  records -- reading prepared ArrayRecord files adds only file I/O.

An "image" is one example (one A and one B image). The first batches (worker
start-up, caches) are excluded: ``--warmup`` batches are drawn before timing.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxgan import config as config_lib  # noqa: E402  pylint: disable=wrong-import-position
from jaxgan.data import create_pipeline  # noqa: E402  pylint: disable=wrong-import-position

SOURCES = ("demo:facades", "demo:seasons", "folder-unpaired", "folder-paired", "tfds")


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """A smooth-ish random 'photo' (JPEG-compresses like a real one, unlike white noise)."""
  small = rng.integers(0, 256, (h // 16, w // 16, 3)).astype(np.uint8)
  img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
  img += rng.integers(-12, 13, img.shape).astype(np.int16)
  return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg_bytes(img: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def make_folders(root: str, n: int = 64) -> None:
  """Write the benchmark folders (unpaired 256x256, side-by-side 512x256) under ``root``."""
  rng = np.random.default_rng(0)
  for sub, shape in (("unpaired/trainA", (256, 256)), ("unpaired/trainB", (256, 256)), ("paired/train", (256, 512))):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in range(n):
      with open(os.path.join(root, sub, f"{i:04d}.jpg"), "wb") as f:
        f.write(_jpeg_bytes(_photo(rng, *shape)))


class _JpegRecords:
  """An in-memory stand-in for a prepared ``tfds.data_source``: records {"image": decoded uint8}."""

  def __init__(self, n: int, seed: int):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    self.blobs = [_jpeg_bytes(_photo(rng, 256, 256)) for _ in range(n)]
    self.feature = tfds.features.Image(shape=(None, None, 3))

  def __len__(self) -> int:
    return len(self.blobs)

  def __getitem__(self, i: int) -> dict:
    return {"image": self.feature.decode_example_np(self.blobs[i]), "label": 0}


@contextlib.contextmanager
def _fake_tfds() -> Iterator[None]:
  from jaxgan.data import tfds_source  # pylint: disable=import-outside-toplevel
  real = tfds_source.open_data_source
  tfds_source.open_data_source = lambda name, split, data_dir, download: _JpegRecords(64, hash(split) % 1000)
  try:
    yield
  finally:
    tfds_source.open_data_source = real


def _config(source: str, root: str, batch_size: int, workers: int):
  paired = source in ("demo:facades", "folder-paired")
  c = config_lib.get_base_config() if paired else config_lib.get_cyclegan_base_config()
  c.dataset = {"folder-unpaired": f"folder:{root}/unpaired", "folder-paired": f"folder:{root}/paired",
               "tfds": "tfds:cycle_gan/horse2zebra"}.get(source, source)
  c.load_size, c.crop_size, c.preprocess = 286, 256, "resize_and_crop"
  c.batch_size, c.num_workers = batch_size, workers
  return c


def measure(source: str, root: str, batch_size: int, workers: int, steps: int, warmup: int) -> float:
  """Examples per second of the pipeline for one setting (after ``warmup`` batches)."""
  ctx = _fake_tfds() if source == "tfds" else contextlib.nullcontext()
  with ctx:
    pipe = create_pipeline(_config(source, root, batch_size, workers), process_index=0, process_count=1)
    it = pipe.iterator()
    try:
      for _ in range(warmup):
        next(it)
      t0 = time.perf_counter()
      for _ in range(steps):
        batch = next(it)
      dt = time.perf_counter() - t0
      assert batch["A"].shape == (batch_size, 256, 256, 3), batch["A"].shape
    finally:
      it.close()
  return steps * batch_size / dt


def bare_rate(files_a: Sequence[str], files_b: Sequence[str], seconds: float, load: int = 286,
              crop: int = 256) -> tuple[float, float]:
  """A bare single-thread PIL loop (decode A and B, resize, random crop, random flip): (examples per
  wall second, examples per CPU second of its thread)."""
  rng = np.random.default_rng(0)
  n, t0, c0 = 0, time.perf_counter(), time.thread_time()
  while True:
    for files in (files_a, files_b):
      with Image.open(files[n % len(files)]) as im:
        arr = np.asarray(im.resize((load, load), Image.BICUBIC))
      x, y = (int(v) for v in rng.integers(0, load - crop + 1, 2))
      arr = arr[y:y + crop, x:x + crop]
      if rng.random() > 0.5:
        arr = arr[:, ::-1]
      np.ascontiguousarray(arr)
    n += 1
    dt = time.perf_counter() - t0
    if dt >= seconds and n >= 8:
      return n / dt, n / max(time.thread_time() - c0, 1e-9)


def pipeline_rate(config, seconds: float, warmup: int, position: int = 0) -> tuple[float, dict, int]:
  """Examples/s of ``create_pipeline(config)`` from stream ``position`` (a fresh iterator; ``warmup``
  batches untimed), with a description of the batches (and, without worker processes, examples per
  CPU second of this process); returns (rate, info, next position)."""
  pipe = create_pipeline(config, process_index=0, process_count=1)
  it = pipe.iterator()
  if position:
    it.set_state({**it.get_state(), "next_position": position})
  try:
    for _ in range(warmup):
      next(it)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 3:   # past the buffers filled during start-up
      next(it)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
      batch = next(it)
      n += len(batch["A"])
      dt = time.perf_counter() - t0
      if dt >= seconds and n >= 4 * pipe.batch_size:
        break
    cpu = time.process_time() - c0
    info = {"examples_per_cpu_s": None if pipe.num_workers else n / max(cpu, 1e-9),
            "dtype_A": str(batch["A"].dtype), "dtype_B": str(batch["B"].dtype),
            "bytes_per_example": int(batch["A"][0].nbytes + batch["B"][0].nbytes),
            "num_workers": pipe.num_workers, "threads": pipe.num_threads}
    return n / dt, info, int(it.get_state()["next_position"])
  finally:
    it.close()


def measure_limit(root: str, *, rounds: int, seconds: float, batch_size: int, warmup: int,
                  workers: int | None, data_dtype: str | None, accelerators: int | None) -> dict:
  """The default pipeline against cores x the bare loop, in alternating rounds (module docstring)."""
  try:
    from jaxgan.data import feed  # pylint: disable=import-outside-toplevel
  except ImportError:   # an older jaxgan (before/after comparisons): fixed sizing, no accelerators to pretend
    feed = None
  c = _config("folder-unpaired", root, batch_size, -1)
  if workers is not None:
    c.num_workers = workers
  else:
    c.num_workers = config_lib.get_cyclegan_base_config().get("num_workers", 0)   # the recipe's default
  if data_dtype:
    c.data_dtype = data_dtype
  if accelerators is not None and feed is not None:
    feed.local_accelerators = lambda: accelerators
  cores = feed.host_cores() if feed is not None else len(os.sched_getaffinity(0))
  files = [sorted(os.path.join(root, "unpaired", d, f) for f in os.listdir(os.path.join(root, "unpaired", d)))
           for d in ("trainA", "trainB")]
  bare, bare_cpu, pipe, pipe_cpu, position, info = [], [], [], [], 0, {}
  load_before = os.getloadavg()[0]
  for r in range(rounds):
    wall, per_cpu = bare_rate(*files, seconds)
    bare.append(wall)
    bare_cpu.append(per_cpu)
    rate, info, position = pipeline_rate(c, seconds, warmup, position)
    pipe.append(rate)
    pipe_cpu.append(info.pop("examples_per_cpu_s"))
    print(f"round {r + 1}/{rounds}: bare loop {wall:6.1f} examples/s per core x {cores} cores = "
          f"{wall * cores:6.1f}; pipeline {rate:6.1f} examples/s; ratio {rate / (wall * cores):.2f}"
          f" (load average {os.getloadavg()[0]:.1f})", flush=True)
  per_core, rate = float(np.median(bare)), float(np.median(pipe))
  cpu_ratio = (float(np.median(pipe_cpu)) / float(np.median(bare_cpu))) if None not in pipe_cpu else None
  return {"mode": "limit", "cores": cores, "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
          "cpu_efficiency": None if cpu_ratio is None else round(cpu_ratio, 3),
          "bare_examples_per_s_per_core": round(per_core, 1),
          "host_limit_examples_per_s": round(per_core * cores, 1), "pipeline_examples_per_s": round(rate, 1),
          "ratio": round(rate / (per_core * cores), 3),
          "round_ratios": [round(p / (b * cores), 3) for b, p in zip(bare, pipe)],
          "batch_size": batch_size, "rounds": rounds, "accelerators": accelerators, **info,
          "uint8_batches": info.get("dtype_A") == info.get("dtype_B") == "uint8"}


def make_scan_folder(root: str, n: int) -> None:
  """``root/trainA`` and ``root/trainB`` with ``n`` identical tiny PNGs each (kept when already complete)."""
  buf = io.BytesIO()
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, format="PNG")
  blob = buf.getvalue()
  for side in "AB":
    folder = os.path.join(root, "train" + side)
    os.makedirs(folder, exist_ok=True)
    if len(os.listdir(folder)) == n:
      continue
    for i in range(n):
      with open(os.path.join(folder, f"{side.lower()}_{i:07d}.png"), "wb") as f:
        f.write(blob)


def measure_scan(n: int, scan_dir: str | None) -> dict:
  """Seconds to open an unpaired folder of ``n`` files per domain, and to check their sizes."""
  from jaxgan.data import folder  # pylint: disable=import-outside-toplevel
  with contextlib.ExitStack() as stack:
    root = scan_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="jaxgan-scan-"))
    t0 = time.perf_counter()
    make_scan_folder(root, n)
    t_make = time.perf_counter() - t0
    c = config_lib.get_cyclegan_base_config()
    c.dataset, c.num_workers = f"folder:{root}", 0
    t0 = time.perf_counter()
    data = folder.open_folder(root, "train", c)
    t_open = time.perf_counter() - t0
    assert len(data.domain_a) == len(data.domain_b) == n and data.pairs is None
    row = {"mode": "scan", "files_per_domain": n, "open_folder_s": round(t_open, 2),
           "write_files_s": round(t_make, 1), "cpus": os.cpu_count()}
    c.preprocess, c.load_size, c.crop_size = "scale_width", 4, 4
    t0 = time.perf_counter()
    create_pipeline(c, process_index=0, process_count=1)       # opens the folder again + checks 2n headers
    row["create_pipeline_scale_width_s"] = round(time.perf_counter() - t0, 2)
    return row


def main(argv: Sequence[str] | None = None) -> list[dict]:
  """Run the grid of (source, batch size, workers); print a table and JSON lines; return the rows."""
  parser = argparse.ArgumentParser(description="jaxgan input-pipeline throughput at 286 -> 256")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of bare loop and pipeline")
  parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds of each measurement of a round")
  parser.add_argument("--batch-size", type=int, default=8)
  parser.add_argument("--data-dtype", default=None, help="config.data_dtype of the pipeline (default: its own)")
  parser.add_argument("--accelerators", type=int, default=None,
                      help="size the default pipeline for a process driving N accelerators")
  parser.add_argument("--grid", action="store_true", help="the table of sources x batch sizes x workers instead")
  parser.add_argument("--sources", default=",".join(SOURCES), help=f"--grid: comma list of {SOURCES}")
  parser.add_argument("--batch-sizes", default="1,8", help="--grid: comma list")
  parser.add_argument("--workers", default=None,
                      help="num_workers: one value (default: the recipe's) or, with --grid, a comma list (0,2)")
  parser.add_argument("--steps", type=int, default=0, help="timed batches (default: about 64 examples)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--json", action="store_true", help="print only JSON lines")
  parser.add_argument("--scan", type=int, default=0, metavar="N",
                      help="time opening an unpaired folder of N files per domain instead")
  parser.add_argument("--scan-dir", default=None, help="where --scan writes its files (default: a temp folder)")
  args = parser.parse_args(argv)
  if args.scan:
    row = measure_scan(args.scan, args.scan_dir)
    print(json.dumps(row))
    return [row]
  from absl import flags, logging as absl_logging  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  absl_logging.set_verbosity(absl_logging.ERROR)   # TFDS's "OpenCV is not installed" notice
  if not args.grid:
    with tempfile.TemporaryDirectory(prefix="jaxgan-bench-") as root:
      make_folders(root)
      row = measure_limit(root, rounds=args.rounds, seconds=args.seconds, batch_size=args.batch_size,
                          warmup=args.warmup, workers=None if args.workers is None else int(args.workers),
                          data_dtype=args.data_dtype, accelerators=args.accelerators)
    if not args.json:
      print(f"default pipeline {row['pipeline_examples_per_s']} examples/s = {row['ratio']:.2f} of the host's "
            f"limit {row['host_limit_examples_per_s']} ({row['cores']} cores x {row['bare_examples_per_s_per_core']} "
            f"of a bare PIL loop); batches arrive as A {row.get('dtype_A')}, B {row.get('dtype_B')} "
            f"({row.get('bytes_per_example')} bytes per example); {row.get('num_workers')} worker process(es), "
            f"{row.get('threads')} thread(s)")
    print(json.dumps(row), flush=True)
    return [row]
  rows = []
  with tempfile.TemporaryDirectory(prefix="jaxgan-bench-") as root:
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if any(s.startswith("folder") for s in sources):
      make_folders(root)
    for source in sources:
      for bs in (int(b) for b in args.batch_sizes.split(",")):
        for w in (int(x) for x in (args.workers or "0,2").split(",")):
          steps = args.steps or max(4, 64 // bs)
          ips = measure(source, root, bs, w, steps, args.warmup)
          row = {"source": source, "batch_size": bs, "num_workers": w, "images_per_s": round(ips, 1),
                 "cpus": os.cpu_count()}
          rows.append(row)
          print(json.dumps(row) if args.json else
                f"{source:16s} batch {bs:2d} workers {w}: {ips:7.1f} images/s", flush=True)
  return rows


if __name__ == "__main__":
  main()
