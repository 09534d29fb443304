"""Using a trained model (library; the commands in :mod:`jaxgan.commands` call it).

Owns :func:`load_for_inference` (newest or chosen checkpoint, config from the
checkpoint), :func:`evaluate` (L1 / PSNR / SSIM on a split, with the
copy-the-input and mean-image baselines), :func:`visuals` (sample grids for the
logs) and translating image files (:func:`list_inputs`, :func:`plan_outputs`,
:func:`translate_files`). Writing happens only in the output folder the caller
names; existing files are never replaced unless asked.
"""
from __future__ import annotations

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

from jaxgan import checkpoint, metrics, objectives, parallel
from jaxgan.cpu import host
from jaxgan.images import batch_to_float
from jaxgan import config as config_lib
from jaxgan.reporting import write_json  # noqa: F401  (re-exported for the commands)

_JIT_CACHE: dict = {}


def _translate_fn(model, config: ml_collections.ConfigDict, direction: str, eval_mode: bool):
  """``run(state, images, ids)``: jitted translate for this model/config/direction, compiled once per process.

  With a state replicated over several devices (``load_for_inference``) the
  batch is split over them (:func:`_split_over_devices`); on one device
  (``parallel.local_copy``, as in training) it runs there.
  """
  key = (model.__name__, json.dumps(config.to_dict(), sort_keys=True), direction, bool(eval_mode))
  if key not in _JIT_CACHE:
    _JIT_CACHE[key] = _split_over_devices(lambda state, images, ids: model.translate(
        state, images, config=config, direction=direction, eval_mode=bool(eval_mode), ids=ids))
  return _JIT_CACHE[key]


def _split_over_devices(fn):
  """``fn(state, images [N,...], ids [N])`` jitted; images and ids split over the devices the state is replicated on.

  Each image's result depends on its own id only, so the batch is padded to a
  multiple of the device count with copies of its last image (discarded) and
  each device translates its share, instead of every device translating the
  whole batch. A state on one device, or not addressable from this process
  alone, runs ``jax.jit(fn)`` as it is. ``run.lower(...)`` lowers what a call runs.
  """
  plain, split = jax.jit(fn), {}

  def prepare(state, images, ids):
    leaf = jax.tree.leaves(state)[0]
    sharding = getattr(leaf, "sharding", None)
    if (sharding is None or len(sharding.device_set) < 2 or not leaf.is_fully_addressable
        or not sharding.is_fully_replicated):
      return plain, (state, images, ids), None
    mesh = parallel.make_mesh(sorted(sharding.device_set, key=lambda d: d.id))
    images, ids = np.asarray(images), np.asarray(ids)
    n, pad = len(images), (-len(images)) % mesh.size
    if pad:
      images = np.concatenate([images, np.repeat(images[-1:], pad, axis=0)])
      ids = np.concatenate([ids, np.zeros(pad, ids.dtype)])
    if mesh not in split:
      rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
      split[mesh] = jax.jit(fn, in_shardings=(rep, data, data), out_shardings=data)
    return split[mesh], (state, images, ids), n

  def run(state, images, ids):
    f, args, n = prepare(state, images, ids)
    out = f(*args)
    return out if n is None else np.asarray(out)[:n]

  run.lower = lambda *args: (lambda f, a, _: f.lower(*a))(*prepare(*args))
  return run


SOURCE = {"AtoB": "A", "BtoA": "B"}      # the batch side a direction reads
TARGET = {"AtoB": "B", "BtoA": "A"}      # ... and the side it makes
PREFIX = {"AtoB": "", "BtoA": "BtoA_"}   # its metrics' name prefix in evaluate's and FID's results


def model_directions(model) -> tuple[str, ...]:
  """The directions an objective module translates (its ``DIRECTIONS``), checked against AtoB / BtoA."""
  directions = tuple(model.DIRECTIONS)
  bad = [d for d in directions if d not in SOURCE]
  if bad or not directions:
    raise ValueError(f"{model.__name__}.DIRECTIONS={directions!r}: each must be 'AtoB' or 'BtoA'")
  return directions


def image_id(name: str | int) -> int:
  """The stable id that keys an image's randomness: its index in a split, or the CRC-32 of its file name."""
  return int(name) if isinstance(name, (int, np.integer)) else zlib.crc32(str(name).encode())


# ------------------------------------------------------------------ restore


def load_for_inference(workdir: str | os.PathLike, step: int | None = None) -> tuple[Any, ml_collections.ConfigDict, int]:
  """``(state, config, step)`` from ``workdir``'s newest readable checkpoint (or exactly ``step``)."""
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"--workdir {workdir} does not exist (train first: jaxgan train --config ... "
                            f"--workdir {workdir})")
  host.relieve_mapping_pressure()   # a process that has compiled many programs: free them before XLA crashes
  rep = parallel.replicated_sharding(parallel.make_mesh())
  ckpt = checkpoint.Checkpointer(workdir, read_only=True)
  try:
    step, state, meta = ckpt.restore_newest(None, lambda m: checkpoint.abstract_state_for(m, rep), step=step)
  finally:
    ckpt.close()
  return state, ml_collections.ConfigDict(meta["config"]), step


# ------------------------------------------------------------------ samples and evaluation


def sample_batch(config: ml_collections.ConfigDict, fallback: Mapping[str, np.ndarray], rows: int = 4) -> dict:
  """Up to ``rows`` fixed images for the sample grids: the test split's first ones, else ``fallback``
  (as host float32 in [-1, 1], whatever dtype the pipeline ships)."""
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
      return batch_to_float({k: np.concatenate([b[k] for b in batches])[:rows] for k in ("A", "B")})
  except (data.DataError, FileNotFoundError, OSError):
    pass
  return batch_to_float({k: np.asarray(fallback[k])[:rows] for k in ("A", "B")})


def visuals(model, config: ml_collections.ConfigDict, state: Any, batch: Mapping[str, np.ndarray]) -> dict:
  """Named image arrays for a sample grid (reference test-time behaviour; image ``i`` keyed by id ``i``).

  Driven by ``model.DIRECTIONS``: each direction adds its real input and its fake output
  (``real_A | fake_B`` for AtoB, ``real_B | fake_A`` for BtoA); with both directions the
  reconstructions too. One direction (pix2pix, a one-generator unpaired objective):
  ``real_A | fake_B | real_B``; two (CycleGAN): ``real_A | fake_B | rec_A | real_B | fake_A | rec_B``.
  """
  eval_mode = bool(config.get("eval_mode", False))
  batch = batch_to_float(batch)   # the grid shows [-1, 1] images whatever the pipeline shipped
  ids = np.arange(len(batch["A"]), dtype=np.uint32)
  directions = model_directions(model)
  fns = {d: _translate_fn(model, config, d, eval_mode) for d in directions}
  fakes = {d: fns[d](state, batch[SOURCE[d]], ids) for d in directions}
  if len(directions) == 1:
    d = directions[0]
    return {f"real_{SOURCE[d]}": batch[SOURCE[d]], f"fake_{TARGET[d]}": np.asarray(fakes[d]),
            f"real_{TARGET[d]}": batch[TARGET[d]]}
  ab, ba = fns["AtoB"], fns["BtoA"]
  return {"real_A": batch["A"], "fake_B": np.asarray(fakes["AtoB"]), "rec_A": np.asarray(ba(state, fakes["AtoB"], ids)),
          "real_B": batch["B"], "fake_A": np.asarray(fakes["BtoA"]), "rec_B": np.asarray(ab(state, fakes["BtoA"], ids))}


def _split_batches(pipeline, max_batches: int) -> Iterator[tuple[np.ndarray, dict]]:
  """``(ids, batch)`` of an unshuffled split: ids are the images' indices in the split; the batch's
  images as host float32 in [-1, 1] (the metrics, baselines and FID read them on the host)."""
  start = 0
  for i, batch in enumerate(pipeline.iterator()):
    if 0 <= max_batches <= i:
      break
    n = len(batch["A"])
    yield np.arange(start, start + n, dtype=np.uint32), batch_to_float(batch)
    start += n


def evaluate(config: ml_collections.ConfigDict, state: Any, *, split: str = "test", max_batches: int = -1,
             eval_mode: bool = False) -> dict:
  """Metrics of the model on ``split`` (see :mod:`jaxgan.metrics`; images in [0, 1]), for each direction of
  the objective's ``DIRECTIONS`` (the second, ``BtoA``, prefixed ``BtoA_``).

  Ground-truth metrics need pairs, and whether pairs exist is a property of the
  data source: the split's :class:`~jaxgan.data.sources.SplitData` has ``pairs``
  when its A and B images are aligned (demo data; a folder's ``testA/ testB/``
  holding the same file names; side-by-side A|B images; paired TFDS records),
  and the pipeline reports it as ``paired`` (a PAIRED objective refuses a split
  without pairs). Paired: ``l1, psnr, ssim`` of the translation against its
  target, and two baselines: ``copy_input_*`` returns the input unchanged (when
  A and B have equal channels) and ``mean_image_*`` predicts the split's mean
  target image (pixel-wise, over the evaluated images) for every input; for
  demo data, ``oracle_*`` scores a second rendering of each target with other
  texture noise (about the best any model could do). Unpaired (unaligned)
  split: with both directions, ``cycle_A_*`` / ``cycle_B_*``, the
  reconstruction A->B->A and B->A->B; with one direction there is nothing to
  compare with, the result says so in ``note``, and FID / KID
  (:func:`jaxgan.fid_eval.model_fid`, ``evaluate --fid``) is the measure.
  Image ``i`` of the split is translated with randomness keyed by ``i``, so the
  numbers do not depend on the batch size.
  """
  from jaxgan import data
  from jaxgan.data import demo
  model = objectives.for_config(config)
  pipeline = data.create_pipeline(config, split=split, shuffle=False, process_index=0, process_count=1,
                                  num_epochs=1)
  directions = model_directions(model)
  fns = {d: _translate_fn(model, config, d, eval_mode) for d in directions}
  cycle = not pipeline.paired and set(directions) == {"AtoB", "BtoA"}
  same_nc = int(config.input_nc) == int(config.output_nc)
  oracle_config = demo.oracle_config(config) if pipeline.paired else None
  oracle = None if oracle_config is None else data.create_pipeline(
      oracle_config, split=split, shuffle=False, process_index=0, process_count=1, num_epochs=1).iterator()
  acc = metrics.MeanAccumulator()
  sums: dict[str, np.ndarray] = {}
  num_images = 0
  for ids, batch in _split_batches(pipeline, max_batches):
    num_images += len(ids)
    if pipeline.paired:
      second = batch_to_float(next(oracle)) if oracle is not None else None   # the same examples, other noise
      for d in directions:
        x, y = batch[SOURCE[d]], batch[TARGET[d]]
        acc.add(metrics.image_metrics(fns[d](state, x, ids), y), prefix=PREFIX[d])
        if second is not None:
          acc.add(metrics.image_metrics(second[TARGET[d]], y), prefix=PREFIX[d] + "oracle_")
        if same_nc:
          acc.add(metrics.image_metrics(x, y), prefix=PREFIX[d] + "copy_input_")
        sums[d] = sums.get(d, 0.0) + np.sum(y, axis=0, dtype=np.float64)
    elif cycle:
      ab, ba = fns["AtoB"], fns["BtoA"]
      acc.add(metrics.image_metrics(ba(state, ab(state, batch["A"], ids), ids), batch["A"]), prefix="cycle_A_")
      acc.add(metrics.image_metrics(ab(state, ba(state, batch["B"], ids), ids), batch["B"]), prefix="cycle_B_")
    else:   # one direction, no pairs: nothing to compare a translation with (FID / KID measure it)
      break
  if not pipeline.paired and not cycle:
    num_images = pipeline.num_examples if max_batches < 0 else min(pipeline.num_examples,
                                                                    max_batches * pipeline.batch_size)
  if num_images == 0:
    raise data.DataError(f"split {split!r} of {config.dataset} gave no images to evaluate")
  if sums:   # second pass: the mean target image as the prediction for every input
    means = {d: (sums[d] / num_images).astype(np.float32) for d in sums}
    for _, batch in _split_batches(pipeline, max_batches):
      for d, mean in means.items():
        y = batch[TARGET[d]]
        acc.add(metrics.image_metrics(np.broadcast_to(mean, y.shape), y), prefix=PREFIX[d] + "mean_image_")
  result = {"step": int(jax.device_get(state.step)), "split": split, "dataset": str(config.dataset),
            "paired": bool(pipeline.paired), "num_images": num_images, "eval_mode": bool(eval_mode)}
  if not pipeline.paired and not cycle:
    result["note"] = (f"split {split!r} has no aligned pairs and model {config.model} translates "
                      f"{'/'.join(directions)} only: no ground-truth metric; FID / KID (evaluate --fid) measure it")
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


def ensure_writable(folder: str | os.PathLike) -> None:
  """Create ``folder`` and check that a file can be written there (clear error otherwise)."""
  folder = Path(folder)
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
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
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
  return image_io.to_model_range(raw)


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


def translate_files(state: Any, config: ml_collections.ConfigDict, files: list[Path], targets: list[Path], *,
                    direction: str = "AtoB", eval_mode: bool = False, convert: bool = False, batch_size: int = 8,
                    progress: bool = False) -> int:
  """Translate image ``files`` into PNG ``targets`` (from :func:`plan_outputs`); returns the number written.

  Every input is checked before anything is written. Each image gets the
  result it would get alone: its randomness (dropout, the image's own BatchNorm
  statistics) is keyed by its output file name, whatever the batch size.
  Outputs keep the input's size (padded to the generator's stride and cropped
  back) and have the channels the model produces.
  """
  from jaxgan import data
  model = objectives.for_config(config)
  if direction not in model.DIRECTIONS:
    raise ValueError(f"a {config.model} model translates {' or '.join(model.DIRECTIONS)} only, got --direction "
                     f"{direction}" + (" (its input -> output)" if len(model.DIRECTIONS) == 1 else ""))
  channels = int(config.input_nc if direction == "AtoB" else config.output_nc)
  out_channels = int(config.output_nc if direction == "AtoB" else config.input_nc)
  if out_channels not in (1, 3, 4):
    raise ValueError(f"the model outputs {out_channels} channels; PNG output supports 1, 3 or 4")
  if not convert:   # refuse before writing anything
    for f in files:
      if _channel_count(f) != channels:
        _load(f, channels, convert=False)
  stride = config_lib.generator_stride(str(config.netG))
  run = _translate_fn(model, config, direction, eval_mode)
  from tqdm import tqdm
  bar = tqdm(total=len(files), unit="img", desc="translate", file=sys.stderr, disable=not progress)
  written = 0
  for dsts, images, sizes in _batches(files, targets, channels, convert, batch_size, stride):
    n = len(images)
    if n < batch_size:    # same compiled shape for every batch; the extra copies are discarded
      images = np.concatenate([images, np.repeat(images[-1:], batch_size - n, axis=0)])
    ids = np.asarray([image_id(d.name) for d in dsts] + [0] * (len(images) - n), np.uint32)
    outputs = np.asarray(run(state, images, ids))[:n]
    for dst, out, (h, w) in zip(dsts, outputs, sizes):
      tmp = dst.with_name(f".{dst.stem}.partial.png")
      data.save_image(tmp, out[:h, :w])
      os.replace(tmp, dst)
      written += 1
    bar.update(n)
  bar.close()
  return written
