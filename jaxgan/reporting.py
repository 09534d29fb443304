"""What a person sees during training: progress bar, TensorBoard, an HTML page, optional W&B.

* :class:`Progress`: a tqdm bar (step, images/s, ETA, losses) on a terminal, or a
  plain log line every ``log_every_steps`` when stderr is not a terminal.
* :class:`Reporter`: TensorBoard event files in ``WORKDIR/tensorboard`` (via
  tensorboardX: no TensorFlow needed) with every scalar and image grids
  (:func:`read_scalars` reads the scalars back, e.g. to plot loss curves); the
  page ``WORKDIR/web/index.html`` with sample images over training, newest first
  (like the reference project's ``web/index.html``); Weights & Biases when the
  config asks for it (imported only then).

Images given here are NHWC float in [-1, 1]; only process 0 writes anything.
"""
from __future__ import annotations

import html
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

WEB_SUBDIR = "web"
TB_SUBDIR = "tensorboard"


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
  """Write ``data`` as indented JSON, atomically (a reader never sees half a file)."""
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(dict(data), indent=1) + "\n")
  os.replace(tmp, path)


# ----------------------------------------------------------------- images


def to_uint8_rgb(images: np.ndarray) -> np.ndarray:
  """[..., H, W, C] in [-1, 1] -> uint8 [..., H, W, 3] for display.

  1 channel is shown as gray, 2 channels padded with zeros, more than 3 show the first three.
  """
  x = np.asarray(images, np.float32)
  c = x.shape[-1]
  if c == 1:
    x = np.repeat(x, 3, axis=-1)
  elif c == 2:
    x = np.concatenate([x, -np.ones_like(x[..., :1])], axis=-1)
  elif c > 3:
    x = x[..., :3]
  return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)


def make_grid(visuals: Mapping[str, np.ndarray], max_rows: int = 4, pad: int = 2) -> np.ndarray:
  """One uint8 RGB image: a row per sample, a column per visual (in the mapping's order).

  Every visual must be [N, H, W, C] with the same N, H, W (C may differ).
  """
  names = list(visuals)
  arrays = [to_uint8_rgb(visuals[n][:max_rows]) for n in names]
  n, h, w = arrays[0].shape[:3]
  grid = np.full((n * (h + pad) + pad, len(arrays) * (w + pad) + pad, 3), 255, np.uint8)
  for j, arr in enumerate(arrays):
    if arr.shape[:3] != (n, h, w):
      raise ValueError(f"visual {names[j]!r} has shape {arr.shape}, expected {(n, h, w)} like {names[0]!r}")
    for i in range(n):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      grid[y:y + h, x:x + w] = arr[i]
  return grid


def save_png(path: str | Path, image_uint8: np.ndarray) -> None:
  """Write a uint8 HxWx3 image atomically (a temporary file, then a rename)."""
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp")
  Image.fromarray(image_uint8).save(tmp, format="PNG")
  os.replace(tmp, path)


# ----------------------------------------------------------------- progress


def _fmt_time(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_scalars(values: Mapping[str, float], keys: Sequence[str] | None = None) -> str:
  keys = [k for k in (keys or values) if k in values and k != "lr"]
  return " ".join(f"{k} {values[k]:.3g}" for k in keys)


class Progress:
  """Step progress: a tqdm bar on a terminal, plain log lines otherwise."""

  def __init__(self, total: int, initial: int, images_per_step: int, *, enabled: bool = True,
               stream: Any = None, use_bar: bool | None = None):
    self.total, self.step, self.images_per_step = total, initial, images_per_step
    self.enabled = enabled
    self.stream = stream or sys.stderr
    self.use_bar = (self.stream.isatty() if use_bar is None else use_bar) and enabled
    self._t0, self._s0 = time.perf_counter(), initial
    self._bar = None
    if self.use_bar:
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=initial, unit="step", file=self.stream, dynamic_ncols=True,
                       smoothing=0.1)

  def images_per_second(self) -> float:
    dt = time.perf_counter() - self._t0
    return (self.step - self._s0) * self.images_per_step / dt if dt > 0 and self.step > self._s0 else 0.0

  def eta_seconds(self) -> float:
    rate = self.images_per_second() / max(self.images_per_step, 1)
    return (self.total - self.step) / rate if rate > 0 else float("inf")

  def update(self, step: int, scalars: Mapping[str, float] | None = None) -> None:
    """Advance to ``step``; with ``scalars`` (a log step) also show the losses."""
    advanced = step - self.step
    self.step = step
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(advanced)
      if scalars is not None:
        self._bar.set_postfix_str(f"{self.images_per_second():.2f} img/s | {format_scalars(scalars)}",
                                  refresh=False)
    elif scalars is not None:
      self.write(f"step {step}/{self.total} | {self.images_per_second():.2f} img/s | "
                 f"ETA {_fmt_time(self.eta_seconds())} | {format_scalars(scalars)}")

  def write(self, message: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(message, file=self.stream)
    else:
      print(message, file=self.stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


# ----------------------------------------------------------------- HTML page


class HtmlPage:
  """``WORKDIR/web/index.html``: sample images over training, newest first.

  The list of samples lives in ``web/samples.json`` so the page keeps its
  history across restarts; images are in ``web/images/``.
  """

  def __init__(self, web_dir: str | Path, title: str, refresh_seconds: int = 60):
    self.dir = Path(web_dir)
    self.images_dir = self.dir / "images"
    self.images_dir.mkdir(parents=True, exist_ok=True)
    self.index_json = self.dir / "samples.json"
    self.title = title
    self.refresh = refresh_seconds
    self.entries: list[dict] = []
    if self.index_json.exists():
      try:
        self.entries = json.loads(self.index_json.read_text())
      except (OSError, ValueError):
        self.entries = []

  def add(self, step: int, visuals: Mapping[str, np.ndarray], scalars: Mapping[str, float] | None = None,
          max_rows: int = 4) -> Path:
    """Save each visual of up to ``max_rows`` samples as PNG and rewrite the page; returns its path."""
    files = []
    for i in range(min(max_rows, len(next(iter(visuals.values()))))):
      row = []
      for name, arr in visuals.items():
        fname = f"step{step:08d}_{i}_{name}.png"
        save_png(self.images_dir / fname, to_uint8_rgb(arr[i]))
        row.append([name, f"images/{fname}"])
      files.append(row)
    self.entries = [e for e in self.entries if e["step"] < step]   # a resumed run rewrites later steps
    self.entries.append({"step": int(step), "rows": files, "scalars": {k: float(v) for k, v in (scalars or {}).items()}})
    tmp = self.index_json.with_name("samples.json.tmp")
    tmp.write_text(json.dumps(self.entries))
    os.replace(tmp, self.index_json)
    return self.write()

  def write(self, evaluation: Mapping[str, Any] | None = None) -> Path:
    if evaluation is not None:
      self._evaluation = dict(evaluation)
    ev = getattr(self, "_evaluation", None)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{self.refresh}'>",
        f"<title>{html.escape(self.title)}</title>",
        "<style>body{font-family:sans-serif;margin:1em} td{text-align:center;padding:2px}"
        " img{image-rendering:pixelated;width:256px} .s{color:#555;font-size:90%}</style></head><body>",
        f"<h1>{html.escape(self.title)}</h1>",
    ]
    if ev:
      parts.append("<p><b>Latest evaluation</b> " + html.escape(
          ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in ev.items())) + "</p>")
    for entry in sorted(self.entries, key=lambda e: -e["step"]):
      parts.append(f"<h3>step {entry['step']}</h3>")
      if entry.get("scalars"):
        parts.append(f"<p class='s'>{html.escape(format_scalars(entry['scalars']))}</p>")
      parts.append("<table>")
      for row in entry["rows"]:
        cells = "".join(f"<td><a href='{html.escape(src)}'><img src='{html.escape(src)}'></a>"
                        f"<br>{html.escape(name)}</td>" for name, src in row)
        parts.append(f"<tr>{cells}</tr>")
      parts.append("</table>")
    parts.append("</body></html>")
    path = self.dir / "index.html"
    tmp = path.with_name("index.html.tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------- reporter


def _tensorboardx():
  """``import tensorboardX`` without importing PyTorch.

  tensorboardX's writer imports torch when it is installed (only to accept
  torch tensors, which jaxgan never passes): about 1.3-1.9 s of every CLI start
  on a machine with torch. When torch is not loaded yet, the import is made to
  fail just for that one import, and torch stays importable afterwards.
  """
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    import tensorboardX
    return tensorboardX
  sys.modules["torch"] = None   # `import torch` raises ImportError while this is set
  try:
    import tensorboardX
  finally:
    if sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]
  return tensorboardX


class Reporter:
  """TensorBoard + HTML page + optional W&B for one run (no-op on processes other than 0)."""

  def __init__(self, workdir: str | Path, config: Any, *, start_step: int = 0, enabled: bool = True,
               title: str | None = None):
    self.enabled = enabled
    self.workdir = Path(workdir)
    self._tb = self._wandb = self.page = None
    if not enabled:
      return
    SummaryWriter = _tensorboardx().SummaryWriter
    # purge_step drops events a preempted run wrote after the step we resume from.
    self._tb = SummaryWriter(logdir=str(self.workdir / TB_SUBDIR), purge_step=start_step or None, flush_secs=30)
    self.page = HtmlPage(self.workdir / WEB_SUBDIR, title or f"jaxgan {config.model} on {config.dataset}")
    if bool(config.get("use_wandb", False)):
      self._wandb = _init_wandb(self.workdir, config)

  def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
    if not self.enabled:
      return
    for k, v in values.items():
      self._tb.add_scalar(prefix + k, float(v), step)
    if self._wandb is not None:
      self._wandb.log({prefix + k: float(v) for k, v in values.items()}, step=step)

  def images(self, step: int, visuals: Mapping[str, np.ndarray], scalars: Mapping[str, float] | None = None) -> None:
    """One grid (rows = samples, columns = visuals) to TensorBoard/W&B, and a new section on the page."""
    if not self.enabled:
      return
    grid = make_grid(visuals)
    self._tb.add_image("samples/" + "_".join(visuals), grid, step, dataformats="HWC")
    self.page.add(step, visuals, scalars)
    if self._wandb is not None:
      import wandb
      self._wandb.log({"samples": wandb.Image(grid, caption=" | ".join(visuals))}, step=step)

  def evaluation(self, step: int, results: Mapping[str, Any]) -> None:
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and k not in ("step",)}
    self.scalars(step, numbers, prefix="eval/")
    if self.enabled:
      self.page.write(evaluation=results)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


def read_scalars(workdir: str | Path) -> dict[str, list[tuple[int, float]]]:
  """The scalars a run logged, ``{tag: [(step, value), ...]}`` sorted by step (e.g. ``"train/G"``).

  Reads the TensorBoard event files of ``WORKDIR/tensorboard`` (TFRecord
  framing, tensorboardX's protobufs; no TensorFlow). As TensorBoard does, a
  restart marker (written when a run resumes) drops what an earlier file logged
  at or after the resumed step.
  """
  import struct
  _tensorboardx()
  from tensorboardX.proto import event_pb2
  folder = Path(workdir) / TB_SUBDIR
  files = sorted(folder.glob("events.out.tfevents.*"), key=lambda p: (int(p.name.split(".")[3]), p.name)) \
      if folder.is_dir() else []
  out: dict[str, dict[int, float]] = {}
  for path in files:
    data, i = path.read_bytes(), 0
    while i + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[i:i + 8])
      if i + 12 + length + 4 > len(data):   # a record still being written
        break
      event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
      i += 12 + length + 4
      if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        for series in out.values():
          for step in [s for s in series if s >= event.step]:
            del series[step]
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
  return {tag: sorted(series.items()) for tag, series in sorted(out.items())}


def _init_wandb(workdir: Path, config: Any):
  """Start (or resume) a W&B run; its id is kept in ``WORKDIR/wandb_id`` so a resumed run continues it."""
  try:
    import wandb
  except ImportError as e:
    raise RuntimeError("config.use_wandb=True needs Weights & Biases: pip install 'jaxgan[wandb]' "
                       "(or set --config.use_wandb=False)") from e
  id_file = workdir / "wandb_id"
  run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
  id_file.write_text(run_id)
  return wandb.init(project=str(config.get("wandb_project", "jaxgan")), id=run_id, resume="allow",
                    dir=str(workdir), config=config.to_dict(), name=workdir.name)
