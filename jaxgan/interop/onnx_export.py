"""Export a generator to ONNX with jax2onnx (``jaxgan export --format onnx``).

The graph is the objective's own ``translate`` in eval mode (what ``jaxgan translate --eval``
computes: BatchNorm running statistics, no dropout, the EMA weights when the state keeps them),
traced with the plain layer forms (:func:`plain_forms`: no ``fast_ops`` custom VJPs) and wrapped so that it takes and
returns the images as a user has them:

* input ``images``: uint8 ``[N, H, W, C_in]`` (NHWC; RGB order as read by PIL); the batch ``N``
  is dynamic; ``H``, ``W`` are multiples of the generator's stride. They are dynamic when the
  exporter can trace the network for symbolic sizes (jaxgan's ResNets, CUT's anti-aliased ones included,
  and U-Nets with jax2onnx 0.17; at least one stride for a U-Net, two for a ResNet), else fixed at ``size``
  (default ``config.crop_size``), which :func:`export_onnx` reports and the file records
  (``input_size`` in ``metadata_props``);
* output ``translated``: uint8 ``[N, H, W, C_out]``, ``round((clip(y, -1, 1) + 1) * 127.5)``: the
  8-bit image ``translate`` writes.

The [-1, 1] scaling is inside the graph (arithmetic, not ``translate``'s table lookup: see
:func:`image_fn`). ``metadata_props`` record the jaxgan version, the objective, the direction, the
checkpoint step, the input size and the config JSON.
jax2onnx, onnx (and onnxruntime to run the result) are the ``onnx`` extra.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from jaxgan.interop.export import ExportError, Loaded, check_targets, config_metadata, write_atomic

_log = logging.getLogger(__name__)
INPUT_NAME, OUTPUT_NAME = "images", "translated"
# ONNX opset of the graph: 18 (onnxruntime >= 1.14, TensorRT 8.6+) rather than jax2onnx's default 23; with
# jax2onnx 0.17 opset 17 gives an invalid ResNet graph (ReduceMean's axes as an input need 18).
OPSET = 18


def _jax2onnx():
  try:
    logging.getLogger("jax2onnx").setLevel(logging.ERROR)   # its optional plugins log their absent extras
    import jax2onnx  # pylint: disable=import-outside-toplevel
    import onnx  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("--format onnx needs jax2onnx and onnx: pip install 'jaxgan[onnx]' "
                      "and pip install --no-deps jax2onnx==0.17.1; nothing was written") from e
  return jax2onnx, onnx


def parse_size(text: str | None) -> tuple[int, int] | None:
  """``"256"`` -> (256, 256); ``"256x512"`` -> (256, 512) (H x W); None -> None."""
  if text is None:
    return None
  parts = str(text).lower().split("x")
  try:
    hw = tuple(int(p) for p in parts)
  except ValueError:
    hw = ()
  if len(hw) == 1:
    hw = hw * 2
  if len(hw) != 2 or min(hw) < 1:
    raise ExportError(f"--size must be N or HxW (positive integers), got {text!r}")
  return hw  # type: ignore[return-value]


def image_fn(loaded: Loaded, direction: str):
  """``uint8 [N,H,W,C_in] -> uint8 [N,H,W,C_out]``: ``translate --eval`` and ``save_image``'s rounding."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  objective, state, config = loaded.objective, jax.device_get(loaded.state), loaded.config
  key = np.zeros((2,), np.uint32)   # eval mode draws nothing; a constant key keeps PRNG ops out of the graph

  def fn(images):
    # The pixels made [-1, 1] here, as the host's arithmetic (jaxgan.images.to_model_range_np; ONNX's Div and Sub
    # round as numpy's), not translate's table lookup: jax2onnx 0.17 lowers a gather by deep-copying its
    # equation, symbolic sizes and their jax.export scope included, and that copy raises once the trace has
    # decided size comparisons (the CUT blur's stride-2 slices): the graph would lose its dynamic sizes.
    x = (images.astype(jnp.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)
    y = objective.translate(state, x, config=config, direction=direction, eval_mode=True, rng=key,
                            ids=jnp.zeros(images.shape[:1], jnp.uint32))
    return jnp.round((jnp.clip(y.astype(jnp.float32), -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)

  return fn


# Traced for these (abstract) devices, the layers take their plain forms (jaxgan.models.layers.target_platform):
# the reference math, no XLA:CPU custom VJPs; what GPUs and TPUs run. Nothing is compiled for them.
_PLAIN_MESH_DEVICE = dict(device_kind="onnx export", num_cores=None, platform="gpu")


@contextlib.contextmanager
def plain_forms() -> Iterator[None]:
  """Trace networks with their plain layer forms (as for GPU/TPU devices) inside this block."""
  import jax  # pylint: disable=import-outside-toplevel
  mesh = jax.sharding.AbstractMesh((1,), ("data",),
                                   abstract_device=jax.sharding.AbstractDevice(**_PLAIN_MESH_DEVICE))
  with jax.sharding.use_abstract_mesh(mesh):
    yield


def channels(config, direction: str) -> tuple[int, int]:
  """(input, output) channels of the generator of ``direction``."""
  a, b = int(config.input_nc), int(config.output_nc)
  return (a, b) if direction == "AtoB" else (b, a)


def convert(loaded: Loaded, direction: str, size: tuple[int, int] | None = None) -> tuple[Any, str]:
  """The ONNX ``ModelProto`` of ``direction``'s generator and its input size (``"dynamic"`` or ``"HxW"``)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxgan import config as config_lib  # pylint: disable=import-outside-toplevel
  jax2onnx, _ = _jax2onnx()
  config = loaded.config
  stride = config_lib.generator_stride(str(config.netG))
  c_in, _ = channels(config, direction)
  fn = image_fn(loaded, direction)

  def run(spec):
    with plain_forms():
      return jax2onnx.to_onnx(fn, inputs=[spec], model_name=f"jaxgan_{config.model}_{direction}", opset=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])

  if size is None:
    # Symbolic sizes, two spellings (the exporter lowers the U-Net's skip concatenations for the first
    # only, the ResNet's reflection pads for the second only); the sizes the generator accepts: a U-Net
    # one stride and more, a ResNet two (its residual blocks reflect-pad by 1 at a quarter of the size).
    spellings = ((f"N, {stride}*h, {stride}*w, {c_in}", ("h >= 1", "w >= 1")),
                 (f"N, H, W, {c_in}", (f"H >= {2 * stride}", f"W >= {2 * stride}", f"mod(H, {stride}) == 0",
                                       f"mod(W, {stride}) == 0")))
    for text, constraints in spellings:
      try:
        return run(jax.ShapeDtypeStruct(jax.export.symbolic_shape(text, constraints=constraints), jnp.uint8)), \
            "dynamic"
      except Exception as e:  # pylint: disable=broad-except  (not traceable for symbolic sizes: try the next)
        _log.debug("jax2onnx cannot trace %s for input %r: %s: %s", config.netG, text, type(e).__name__, e)
    size = (int(config.crop_size),) * 2
  bad = [f"{d}={v}" for d, v in zip("HW", size) if v % stride]
  if bad:
    raise ExportError(f"--size {size[0]}x{size[1]}: {', '.join(bad)} not a multiple of {stride}, the stride of "
                      f"{config.netG}; nothing was written")
  batch = jax.export.symbolic_shape("N")[0]
  return run(jax.ShapeDtypeStruct((batch, size[0], size[1], c_in), jnp.uint8)), f"{size[0]}x{size[1]}"


def onnx_targets(output: str | os.PathLike, directions: tuple[str, ...]) -> dict[str, Path]:
  """``--output`` ending in ``.onnx`` is the file of the one direction; otherwise a folder of
  ``<direction>.onnx`` files."""
  out = Path(output)
  if out.suffix.lower() == ".onnx":
    if len(directions) > 1:
      raise ExportError(f"--output {out} names one file but the model has {len(directions)} generators "
                        f"({', '.join(directions)}): give --direction, or a folder for {', '.join(directions)}.onnx; "
                        "nothing was written")
    return {directions[0]: out}
  if out.exists() and not out.is_dir():
    raise ExportError(f"--output {out} is a file without the .onnx suffix; name a .onnx file or a folder; "
                      "nothing was written")
  return {d: out / f"{d}.onnx" for d in directions}


def export_onnx(loaded: Loaded, output: str | os.PathLike, *, directions: tuple[str, ...],
                size: tuple[int, int] | None = None, overwrite: bool = False) -> list[tuple[Path, str]]:
  """Write one ONNX file per direction; returns ``(path, input size)`` for each."""
  targets = onnx_targets(output, directions)
  check_targets(list(targets.values()), overwrite=overwrite)
  _, onnx = _jax2onnx()
  models = {}
  for d in directions:   # every conversion before the first write
    model, input_size = convert(loaded, d, size)
    meta: Mapping[str, str] = {**config_metadata(loaded), "direction": d, "input_size": input_size,
                               "input": f"uint8 NHWC, {channels(loaded.config, d)[0]} channels",
                               "output": f"uint8 NHWC, {channels(loaded.config, d)[1]} channels",
                               "mode": "translate --eval: BatchNorm running statistics, no dropout"}
    del model.metadata_props[:]
    for k, v in meta.items():
      entry = model.metadata_props.add()
      entry.key, entry.value = k, v
    models[d] = (model, input_size)
  written = []
  for d, path in targets.items():
    path.parent.mkdir(parents=True, exist_ok=True)
    model, input_size = models[d]
    write_atomic(path, lambda tmp, m=model: onnx.save(m, os.fspath(tmp)))
    written.append((path, input_size))
  return written
