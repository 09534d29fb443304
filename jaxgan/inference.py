"""Using a trained model: restore it for inference, evaluate it, translate image files.

Owns :func:`load_for_inference` (newest or chosen checkpoint, config from the
checkpoint), :func:`evaluate` (L1 / PSNR / SSIM on a split, with the
copy-the-input baseline), :func:`visuals` (sample grids for the logs) and the
``translate`` / ``evaluate`` commands. Writing happens only in the ``--output``
folder and ``WORKDIR/eval*.json``; existing files are never replaced unless asked.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np

from jaxgan import checkpoint, metrics, parallel

_JIT_CACHE: dict = {}


def _translate_fn(model, config: ml_collections.ConfigDict, direction: str, eval_mode: bool):
  """``jit(translate)`` for this model/config/direction, compiled once per process."""
  key = (model.__name__, json.dumps(config.to_dict(), sort_keys=True), direction, bool(eval_mode))
  if key not in _JIT_CACHE:
    _JIT_CACHE[key] = jax.jit(functools.partial(model.translate, config=config, direction=direction,
                                                eval_mode=bool(eval_mode)))
  return _JIT_CACHE[key]


def _per_image_fn(model, config: ml_collections.ConfigDict, direction: str, eval_mode: bool):
  """``(state, images [N,H,W,C], keys [N,2]) -> outputs``: each image translated alone with its own key,
  so its result does not depend on the batch it is in."""
  key = ("per_image", model.__name__, json.dumps(config.to_dict(), sort_keys=True), direction, bool(eval_mode))
  if key not in _JIT_CACHE:
    def run(state, images, keys):
      one = lambda x, k: model.translate(state, x[None], config=config, direction=direction,  # noqa: E731
                                         eval_mode=bool(eval_mode), rng=k)[0]
      return jax.vmap(one)(images, keys)
    _JIT_CACHE[key] = jax.jit(run)
  return _JIT_CACHE[key]


def _model(config):
  from jaxgan import train
  return train.model_module(config)


# ------------------------------------------------------------------ restore


def load_for_inference(workdir: str | os.PathLike, step: int | None = None) -> tuple[Any, ml_collections.ConfigDict, int]:
  """``(state, config, step)`` from ``workdir``'s newest readable checkpoint (or exactly ``step``)."""
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"--workdir {workdir} does not exist (train first: jaxgan train --config ... "
                            f"--workdir {workdir})")
  from jaxgan import train
  rep = parallel.replicated_sharding(parallel.make_mesh())
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  try:
    step, state, meta = ckpt.restore_newest(None, lambda m: train.abstract_state_for(m, rep), step=step)
  finally:
    ckpt.close()
  return state, ml_collections.ConfigDict(meta["config"]), step


# ------------------------------------------------------------------ samples and evaluation


def sample_batch(config: ml_collections.ConfigDict, fallback: Mapping[str, np.ndarray], rows: int = 4) -> dict:
  """Up to ``rows`` fixed images for the sample grids: the test split's first ones, else ``fallback``."""
  from jaxgan import data
  try:
    it = data.create_pipeline(config, split="test", shuffle=False, process_index=0, process_count=1,
                              num_epochs=1).iterator()
    batches, n = [], 0
    for batch in it:
      batches.append(batch)
      n += len(batch["A"])
      if n >= rows:
        break
    if batches and len({b["A"].shape[1:] for b in batches}) == 1:
      return {k: np.concatenate([b[k] for b in batches])[:rows] for k in ("A", "B")}
  except (data.DataError, FileNotFoundError, OSError):
    pass
  return {k: np.asarray(fallback[k])[:rows] for k in ("A", "B")}


def visuals(model, config: ml_collections.ConfigDict, state: Any, batch: Mapping[str, np.ndarray]) -> dict:
  """Named image arrays for a sample grid (reference test-time behaviour).

  pix2pix: ``real_A | fake_B | real_B``; CycleGAN: ``real_A | fake_B | rec_A | real_B | fake_A | rec_B``.
  """
  eval_mode = bool(config.get("eval_mode", False))
  ab = _translate_fn(model, config, "AtoB", eval_mode)
  fake_b = ab(state, batch["A"])
  if config.model == "pix2pix":
    return {"real_A": batch["A"], "fake_B": np.asarray(fake_b), "real_B": batch["B"]}
  ba = _translate_fn(model, config, "BtoA", eval_mode)
  fake_a = ba(state, batch["B"])
  return {"real_A": batch["A"], "fake_B": np.asarray(fake_b), "rec_A": np.asarray(ba(state, fake_b)),
          "real_B": batch["B"], "fake_A": np.asarray(fake_a), "rec_B": np.asarray(ab(state, fake_a))}


def evaluate(config: ml_collections.ConfigDict, state: Any, *, split: str = "test", max_batches: int = -1,
             eval_mode: bool = False) -> dict:
  """Metrics of the model on ``split`` (see :mod:`jaxgan.metrics`; images in [0, 1]).

  Paired data (pix2pix, the demo CycleGAN test split): ``l1, psnr, ssim`` of
  the translation A->B against B, and ``copy_input_*``, the same for returning
  A unchanged (when A and B have equal channels); for demo data ``oracle_*``,
  the same for a second rendering of B with other texture noise (what a
  perfect model could about reach); CycleGAN adds ``BtoA_*``.
  Unpaired data: ``cycle_A_*`` / ``cycle_B_*``, the reconstruction A->B->A and B->A->B.
  """
  from jaxgan import data
  model = _model(config)
  pipeline = data.create_pipeline(config, split=split, shuffle=False, process_index=0, process_count=1,
                                  num_epochs=1)
  ab = _translate_fn(model, config, "AtoB", eval_mode)
  ba = _translate_fn(model, config, "BtoA", eval_mode) if config.model == "cyclegan" else None
  same_nc = int(config.input_nc) == int(config.output_nc)
  from jaxgan.data import demo
  oracle_config = demo.oracle_config(config) if pipeline.paired else None
  oracle = None if oracle_config is None else data.create_pipeline(
      oracle_config, split=split, shuffle=False, process_index=0, process_count=1, num_epochs=1).iterator()
  acc = metrics.MeanAccumulator()
  for i, batch in enumerate(pipeline.iterator()):
    if 0 <= max_batches <= i:
      break
    a, b = batch["A"], batch["B"]
    fake_b = ab(state, a)
    if pipeline.paired:
      acc.add(metrics.image_metrics(fake_b, b))
      if oracle is not None:   # the same examples, rendered with other noise
        second = next(oracle)
        acc.add(metrics.image_metrics(second["B"], b), prefix="oracle_")
        if ba is not None:
          acc.add(metrics.image_metrics(second["A"], a), prefix="BtoA_oracle_")
      if same_nc:
        acc.add(metrics.image_metrics(a, b), prefix="copy_input_")
      if ba is not None:
        acc.add(metrics.image_metrics(ba(state, b), a), prefix="BtoA_")
        if same_nc:
          acc.add(metrics.image_metrics(b, a), prefix="BtoA_copy_input_")
    else:
      acc.add(metrics.image_metrics(ba(state, fake_b), a), prefix="cycle_A_")
      acc.add(metrics.image_metrics(ab(state, ba(state, b)), b), prefix="cycle_B_")
  if acc.num_images == 0:
    raise data.DataError(f"split {split!r} of {config.dataset} gave no images to evaluate")
  result = {"step": int(jax.device_get(state.step)), "split": split, "dataset": str(config.dataset),
            "paired": bool(pipeline.paired), "num_images": acc.num_images, "eval_mode": bool(eval_mode)}
  result.update({k: round(v, 6) for k, v in acc.result().items()})
  return result


# ------------------------------------------------------------------ translate


def list_inputs(path: str | os.PathLike) -> list[Path]:
  """The image files of ``path`` (a file, or a folder's images, not recursive), sorted."""
  from jaxgan import data
  path = Path(path)
  if path.is_file():
    if path.suffix.lower() not in data.IMAGE_EXTENSIONS:
      raise data.DataError(f"--input {path}: not an image file (extensions: {', '.join(data.IMAGE_EXTENSIONS)})")
    return [path]
  if not path.is_dir():
    raise FileNotFoundError(f"--input {path} does not exist")
  files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in data.IMAGE_EXTENSIONS
                 and not p.name.startswith("."))
  if not files:
    raise data.DataError(f"--input {path}: no image files ({', '.join(data.IMAGE_EXTENSIONS)}) in this folder")
  return files


def plan_outputs(inputs: list[Path], output: str | os.PathLike, *, overwrite: bool) -> list[Path]:
  """``OUTPUT/<stem>.png`` for each input; refuses collisions, replacing inputs, and (by default) existing files."""
  out = Path(output)
  if out.exists() and not out.is_dir():
    raise NotADirectoryError(f"--output {out} exists and is not a folder")
  resolved_inputs = {p.resolve() for p in inputs}
  if out.resolve() in {p.parent.resolve() for p in inputs}:
    raise ValueError(f"--output {out} is the input folder; choose another folder so no input is replaced")
  targets, seen = [], {}
  for p in inputs:
    t = out / (p.stem + ".png")
    if t.name in seen:
      raise ValueError(f"--input has two images with the same name stem: {seen[t.name]} and {p}; both would "
                       f"be written to {t}")
    seen[t.name] = p
    if t.resolve() in resolved_inputs:
      raise ValueError(f"output {t} would replace an input image")
    targets.append(t)
  existing = [t for t in targets if t.exists()]
  if existing and not overwrite:
    raise FileExistsError(f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; "
                          "use --overwrite to replace them or choose another --output")
  return targets


def ensure_writable(folder: Path) -> None:
  """Create ``folder`` and check that a file can be written there (clear error otherwise)."""
  try:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".jaxgan-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    raise PermissionError(f"--output {folder} is not writable: {e.strerror or e}") from e


def pad_to_multiple(image: np.ndarray, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
  """Reflect-pad HxWxC at the bottom/right to multiples of ``stride``; returns (padded, (H, W))."""
  h, w = image.shape[:2]
  ph, pw = (-h) % stride, (-w) % stride
  if ph or pw:
    mode = "reflect" if min(h, w) > 1 else "edge"
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=mode)
  return image, (h, w)


def _channel_count(path: Path) -> int:
  """Channels ``read_image`` will give for ``path``, from the file header (no decoding)."""
  from PIL import Image
  from jaxgan import data
  try:
    with Image.open(path) as im:
      if im.mode == "P":
        return 4 if "transparency" in im.info else 3
      return len(im.getbands())
  except (OSError, ValueError, SyntaxError) as e:
    raise data.DataError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e


def _load(path: Path, channels: int, convert: bool) -> np.ndarray:
  from jaxgan.data import image_io
  raw = image_io.read_image(path)
  if raw.shape[-1] != channels:
    if not convert:
      raise image_io.DataError(
          f"{path} has {raw.shape[-1]} channel(s) but the model was trained on {channels}; convert it "
          "(or pass --convert to convert RGB<->gray and drop alpha as the reference does)")
    raw = image_io.convert_channels(raw, channels, name=str(path))
  return image_io.to_unit_range(raw)


def _batches(files: list[Path], targets: list[Path], channels: int, convert: bool, batch_size: int,
             stride: int) -> Iterator[tuple[list[Path], np.ndarray, list[tuple[int, int]]]]:
  """Group same-size images into batches: (targets, padded images [N,H,W,C], original sizes)."""
  buckets: dict[tuple, list] = {}
  for src, dst in zip(files, targets):
    padded, size = pad_to_multiple(_load(src, channels, convert), stride)
    bucket = buckets.setdefault(padded.shape, [])
    bucket.append((dst, padded, size))
    if len(bucket) == batch_size:
      yield [b[0] for b in bucket], np.stack([b[1] for b in bucket]), [b[2] for b in bucket]
      buckets[padded.shape] = []
  for bucket in buckets.values():
    if bucket:
      yield [b[0] for b in bucket], np.stack([b[1] for b in bucket]), [b[2] for b in bucket]


def translate_command(args: argparse.Namespace) -> int:
  """``jaxgan translate``: see ``jaxgan translate --help``."""
  from jaxgan import data, models
  if args.batch_size < 1:
    raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
  files = list_inputs(args.input)
  targets = plan_outputs(files, args.output, overwrite=args.overwrite)
  ensure_writable(Path(args.output))
  state, config, step = load_for_inference(args.workdir, args.step)
  model = _model(config)
  if config.model == "pix2pix" and args.direction != "AtoB":
    raise ValueError("a pix2pix model translates one way only: use --direction AtoB (its input -> output)")
  channels = int(config.input_nc if args.direction == "AtoB" else config.output_nc)
  out_channels = int(config.output_nc if args.direction == "AtoB" else config.input_nc)
  if out_channels not in (1, 3, 4):
    raise ValueError(f"the model outputs {out_channels} channels; PNG output supports 1, 3 or 4")
  if not args.convert:   # refuse before writing anything
    for f in files:
      if _channel_count(f) != channels:
        _load(f, channels, convert=False)
  stride = models.generator_stride(str(config.netG))
  run = _per_image_fn(model, config, args.direction, args.eval)
  base = jax.random.fold_in(jax.device_get(state.rng), 0x7E57)
  from tqdm import tqdm
  bar = tqdm(total=len(files), unit="img", desc="translate", file=sys.stderr, disable=not sys.stderr.isatty())
  written = 0
  for dsts, images, sizes in _batches(files, targets, channels, args.convert, args.batch_size, stride):
    n = len(images)
    if n < args.batch_size:    # same compiled shape for every batch; the extra copies are discarded
      images = np.concatenate([images, np.repeat(images[-1:], args.batch_size - n, axis=0)])
    keys = np.stack([jax.random.fold_in(base, zlib.crc32(d.name.encode())) for d in dsts]
                    + [base] * (len(images) - n))
    outputs = np.asarray(run(state, images, keys))[:n]
    for dst, out, (h, w) in zip(dsts, outputs, sizes):
      tmp = dst.with_name(f".{dst.stem}.partial.png")
      data.save_image(tmp, out[:h, :w])
      os.replace(tmp, dst)
      written += 1
    bar.update(n)
  bar.close()
  print(f"wrote {written} image(s) to {args.output} (checkpoint step {step}, {config.model}, {args.direction})",
        file=sys.stderr)
  return 0


def evaluate_command(args: argparse.Namespace) -> int:
  """``jaxgan evaluate``: one JSON line on stdout; WORKDIR/eval.json (eval_<split>.json for other splits)."""
  state, config, _ = load_for_inference(args.workdir, args.step)
  results = evaluate(config, state, split=args.split, max_batches=args.batches, eval_mode=args.eval)
  name = "eval.json" if args.split == "test" else f"eval_{args.split}.json"
  path = Path(args.workdir) / name
  tmp = path.with_name(name + ".tmp")
  tmp.write_text(json.dumps(results, indent=1) + "\n")
  os.replace(tmp, path)
  print(json.dumps(results))
  return 0
