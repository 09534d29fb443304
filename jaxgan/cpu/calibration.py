"""Which XLA:CPU layer forms a run uses: measured once per processor (and per layer shape), cached on disk.

What it buys, and where: only on CPUs. ``jaxgan.cpu.fast_ops`` holds equal-math
forms of the layers that XLA:CPU compiles badly; whether each one wins depends on the
processor (2-core AVX2 Zen 3, AVX-512 EPYC and Sapphire Rapids AMX were measured) and,
for the tap kernel gradients, on the layer shape (on a Sapphire Rapids Xeon the taps
tie at a 32x32 probe but win 2x at the 64x64x256 residual blocks). GPUs and TPUs run
the plain forms and never calibrate.

:func:`resolve_forms` turns a run's ``layer_forms`` setting into the explicit
:class:`jaxgan.models.forms.LayerForms` the networks are built with: ``auto`` on a
one-process CPU run is this machine's measured choice -- per family
(:func:`ensure`: each family's fast form against its plain form at a representative
shape, ~5-10 s once) and, for ``conv_wgrad``, per layer shape of the step itself
(:func:`step_conv_shapes` lists them by tracing the model's init; each shape's kernel
gradient is timed once per processor in both forms, :func:`measure_wgrad_shapes`).
Results live in ``jaxgan-calibration.json`` beside the persistent compilation cache
(``$JAXGAN_CACHE_DIR``, default ``~/.cache/jaxgan/xla``); later starts read them
(milliseconds). Elsewhere ``auto`` is :data:`jaxgan.models.forms.DEFAULT` on CPUs
(multi-process runs: every process must compile the same program; or
``JAXGAN_CALIBRATION=0``) and ``plain`` on GPU/TPU. ``jaxgan.train`` resolves once
at the start of a run, logs the result and records it in the checkpoint metadata,
which resume, ``translate`` and ``evaluate`` reuse: nothing here is read while a
network is traced.

Families (:data:`FAMILIES`): ``conv`` (Conv2d: VALID/strided/patch forms),
``conv_transpose`` (ConvTranspose2d as phase convs), ``pad`` (reflection padding),
``instance_norm``, ``conv_wgrad`` (the kernel gradient of stride-1 convs with more
than 4 taps -- the ResNet blocks' 3x3, the 7x7 stem, the PatchGAN's 4x4 -- as one
matmul per tap or as XLA's convolution).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from jaxgan.models.forms import DEFAULT, FAMILIES, PLAIN, LayerForms, conv_key, parse_conv_key

log = logging.getLogger(__name__)

FILE_NAME = "jaxgan-calibration.json"
ENV = "JAXGAN_CALIBRATION"
MARGIN = 0.9   # a form other than the default is chosen only when it takes under 0.9 of the default's time
VERSION = 3          # bump when the measured cases change: older entries are measured again


def machine_key() -> str:
  """What the measurement depends on: processor model and features, core count, jax/jaxlib versions."""
  return hashlib.sha256(_machine_ident().encode()).hexdigest()[:24]


def _processor() -> tuple[str, str]:
  """(model name, feature flags) of this processor, from /proc/cpuinfo where there is one."""
  cpu, flags = platform.processor() or platform.machine(), ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    cpu = info.get("model name", cpu)
    flags = info.get("flags", info.get("Features", ""))
  except OSError:
    pass
  return cpu, flags


def _machine_ident() -> str:
  import jax
  import jaxlib
  cpu, flags = _processor()
  return (f"{cpu}|{platform.machine()}|{os.cpu_count()}|{hashlib.sha256(flags.encode()).hexdigest()[:16]}|"
          f"jax {jax.__version__}|jaxlib {jaxlib.__version__}|v{VERSION}")


def default_dir() -> str:
  """The folder of the persistent compilation cache (``$JAXGAN_CACHE_DIR`` or ``~/.cache/jaxgan/xla``)."""
  return os.environ.get("JAXGAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxgan", "xla")


def ensure(cache_dir: str | os.PathLike | None = None, *, measure: Callable[[], dict] | None = None) -> dict:
  """This machine's per-family choice, read from ``cache_dir`` (measured and written the first time).

  Returns ``{"choices": {family: bool}, "source": "cache" | "measured" | "default", ...}``
  (``choices`` empty: :data:`DEFAULT`). Installs nothing: :func:`resolve_forms` builds the value.
  Never fails a run: an unreadable or corrupt file is measured again (and replaced
  atomically), an unwritable folder keeps the result for this process only.
  """
  reason = calibrates()
  if reason is not None:
    return {"choices": {}, "source": "default", "reason": reason}
  path = Path(cache_dir or default_dir()) / FILE_NAME
  key = machine_key()
  entries = _read(path)
  entry = entries.get(key)
  if isinstance(entry, dict) and isinstance(entry.get("choices"), dict) and set(entry["choices"]) == set(FAMILIES):
    return {**entry, "source": "cache", "path": str(path)}
  t0 = time.perf_counter()
  timings = (measure or measure_families)()
  chosen = {fam: _choose(fam, t) for fam, t in timings.items()}
  entry = {**(entries.get(key) if isinstance(entries.get(key), dict) else {}),
           "choices": chosen, "timings": timings, "seconds": round(time.perf_counter() - t0, 2),
           "date": time.strftime("%Y-%m-%d"), "machine": f"{_processor()[0]}, {os.cpu_count()} cores"}
  entries[key] = entry
  _write(path, entries)
  log.info("calibrated the layer forms for this processor in %.1f s: %s", entry["seconds"],
           ", ".join(f"{k} {'fast' if v else 'plain'}" for k, v in chosen.items()))
  return {**entry, "source": "measured", "path": str(path)}


# ----------------------------------------------------------------------------- the measurement


def _choose(family: str, t: dict) -> bool:
  """Whether ``family``'s fast form is chosen from its timings: a near tie keeps the default form.

  The default (:data:`DEFAULT`) is the fast form where it won at every measured shape on
  three processor kinds; for ``conv_wgrad`` it is the plain form, because the taps cost compile time.
  """
  if DEFAULT.use_fast(family):
    return not t["plain_s"] < MARGIN * t["fast_s"]
  return t["fast_s"] < MARGIN * t["plain_s"]


def _read(path: Path) -> dict:
  try:
    entries = json.loads(path.read_text())
    if not isinstance(entries, dict):
      raise ValueError("not a JSON object")
    return entries
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    log.warning("calibration file %s is unreadable (%s); measuring again", path, e)
    return {}


def _write(path: Path, entries: dict) -> None:
  """Replace the file atomically; an unwritable folder keeps the result for this process only."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n")
    os.replace(tmp, path)
  except OSError as e:
    log.warning("could not write the calibration to %s (%s); it holds for this process only", path, e)


# ----------------------------------------------------------------------------- the run's forms

def calibrates() -> str | None:
  """None when ``auto`` is measured on this process, else why not (off, not a CPU, multi-process)."""
  import jax
  if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    return f"{ENV}=0"
  if jax.default_backend() != "cpu":
    return "not a CPU backend"
  if jax.process_count() > 1:
    return "multi-process run"
  return None


def resolve_forms(spec: "str | LayerForms | None", *, platform: str | None = None, shapes: Sequence[str] = (),
                  cache_dir: str | os.PathLike | None = None, measure: Callable | None = None,
                  measure_shapes: Callable | None = None) -> LayerForms:
  """The explicit :class:`LayerForms` for a run's ``layer_forms`` setting ``spec``.

  Anything but ``auto`` is parsed as written. ``auto``: ``plain`` when the program is for another
  ``platform`` than ``cpu`` (default: the process's backend); the fixed :data:`DEFAULT` when this
  process does not calibrate (:func:`calibrates`); else this processor's per-family choice
  (:func:`ensure`) with ``conv_wgrad`` decided at each of ``shapes`` (conv shape keys, e.g. from
  :func:`step_conv_shapes`) by :func:`wgrad_shape_choices`.
  """
  import jax
  if not (spec is None or (isinstance(spec, str) and spec.strip() == "auto")):
    return LayerForms.parse(spec)
  if (platform or jax.default_backend()) != "cpu":
    return PLAIN
  if calibrates() is not None:
    return DEFAULT
  chosen = {**{f: DEFAULT.use_fast(f) for f in FAMILIES}, **ensure(cache_dir, measure=measure).get("choices", {})}
  fast = frozenset(f for f, v in chosen.items() if v)
  taps = wgrad_shape_choices(shapes, cache_dir=cache_dir, measure=measure_shapes) if shapes else {}
  flips = [("conv_wgrad", key) for key, use in taps.items() if use != chosen["conv_wgrad"]]
  return LayerForms(fast, tuple(flips))


def wgrad_relevant(key: str) -> bool:
  """Whether ``conv_wgrad`` changes the kernel gradient of the conv layer ``key``: a stride-1 conv
  of more than 4 taps whose kernel gradient ``fast_ops`` does not already compute one way only."""
  (_, _, c), (kh, kw, _, o), stride, _ = parse_conv_key(key)
  taps = kh * kw
  return stride == 1 and taps > 4 and not (o == 1 and taps <= 16) and not (o <= 16 < c)


def step_conv_shapes(init_fn: Callable[[], Any]) -> list[str]:
  """The conv layer shape keys (:func:`jaxgan.models.forms.conv_key`) that ``init_fn`` (e.g. an objective's
  ``init`` on the first batch) builds, where ``conv_wgrad`` matters; traced abstractly (no compile)."""
  import jax
  from flax import linen as nn
  from jaxgan.models import layers
  keys: set[str] = set()

  def record(next_fun, args, kwargs, context):
    m = context.module
    if isinstance(m, layers.Conv2d) and context.method_name == "__call__" and args:
      shape = tuple(args[0].shape)
      keys.add(conv_key(shape, (m.kernel_size, m.kernel_size, shape[-1], m.features), m.stride, m.padding))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record), jax.disable_jit():   # no jit cache hit may skip the Python code
    jax.eval_shape(init_fn)
  return sorted(k for k in keys if wgrad_relevant(k))


def wgrad_shape_choices(shapes: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
                        measure: Callable | None = None) -> dict[str, bool]:
  """``{shape key: taps win}`` for each conv shape, each measured once per processor (cached with
  the family choices under this machine's key; a near tie keeps XLA's form)."""
  path = Path(cache_dir or default_dir()) / FILE_NAME
  entries = _read(path)
  key = machine_key()
  entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
  known = dict(entry.get("wgrad_shapes", {})) if isinstance(entry.get("wgrad_shapes"), dict) else {}
  missing = [s for s in shapes if not isinstance(known.get(s), dict)]
  if missing:
    t0 = time.perf_counter()
    known.update((measure or measure_wgrad_shapes)(missing))
    log.info("measured the kernel-gradient forms at %d layer shapes in %.1f s", len(missing),
             time.perf_counter() - t0)
    entries = _read(path)       # merge with what another process may have written meanwhile
    entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
    entries[key] = {**entry, "wgrad_shapes": {**entry.get("wgrad_shapes", {}), **known}}
    _write(path, entries)
  return {s: known[s]["fast_s"] < MARGIN * known[s]["plain_s"] for s in shapes}


def measure_wgrad_shapes(shapes: Sequence[str], reps: int = 5) -> dict:
  """``{shape key: {"fast_s", "plain_s"}}``: median seconds of one image's kernel gradient at each conv
  shape, taps against XLA's convolution, alternated."""
  import jax
  import numpy as np
  from jaxgan.cpu import fast_ops as F
  rng = np.random.default_rng(0)
  out = {}
  for key in shapes:
    (h, w, c), kshape, stride, padding = parse_conv_key(key)
    x = jax.numpy.asarray(rng.standard_normal((1, h, w, c), np.float32))
    k = jax.numpy.asarray(rng.standard_normal(kshape, np.float32) * 0.05)
    fns = {}
    for name, taps in (("fast", True), ("plain", False)):
      def loss(k, x, taps=taps):
        y = F.conv2d_fast(x, k, stride, padding, wgrad_taps=taps)
        return jax.numpy.vdot(y, jax.numpy.sin(y))
      fns[name] = jax.jit(jax.grad(loss))
      jax.block_until_ready(fns[name](k, x))
    times: dict[str, list[float]] = {"fast": [], "plain": []}
    for _ in range(reps):
      for name, fn in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(fn(k, x))
        times[name].append(time.perf_counter() - t)
    out[key] = {f"{name}_s": round(statistics.median(v), 6) for name, v in times.items()}
  return out


# ----------------------------------------------------------------------------- the per-family measurement

def _cases():
  """family -> (fast fn, plain fn, argument shapes): layer-sized cases that compile in well under a second."""
  from jaxgan.cpu import fast_ops as F

  return {
      # a ResNet-block conv after reflection padding, and a stride-2 downsampling conv
      "conv": (lambda x, k, k2: F.conv2d_fast(x, k).sum() + F.conv2d_fast(x[:, 1:-1, 1:-1], k2, 2, 1).sum(),
               lambda x, k, k2: F.conv2d(x, k).sum() + F.conv2d(x[:, 1:-1, 1:-1], k2, 2, 1).sum(),
               ((1, 66, 66, 128), (3, 3, 128, 128), (3, 3, 128, 128))),
      "conv_transpose": (lambda x, k: F.conv_transpose_fast(x, k, 2, 1, 1).sum(),
                         lambda x, k: F.conv_transpose_plain(x, k, 2, 1, 1).sum(),
                         ((1, 32, 32, 128), (3, 3, 128, 64))),
      "pad": (lambda x: (F.reflection_pad(x, 3) ** 2).sum(), lambda x: (F.reflection_pad_plain(x, 3) ** 2).sum(),
              ((1, 128, 128, 64),)),
      "instance_norm": (lambda x: (F.instance_norm(x, 1e-5) ** 2).sum(),
                        lambda x: (F.instance_norm_plain(x, 1e-5) ** 2).sum(),
                        ((1, 64, 64, 128),)),
      # a ResNet-block conv at a quarter of its size (the family's default where no layer shape was
      # measured; a run decides each of its own shapes with wgrad_shape_choices)
      "conv_wgrad": (lambda x, k: F.conv2d_valid(x, k, True).sum(), lambda x, k: F.conv2d_valid(x, k, False).sum(),
                     ((1, 34, 34, 128), (3, 3, 128, 128))),
  }


def measure_families(reps: int = 7) -> dict:
  """``{family: {"fast_s", "plain_s"}}``: median seconds of value and all gradients, the two forms alternated."""
  import jax
  import numpy as np
  rng = np.random.default_rng(0)
  out = {}
  for family, (fast, plain, shapes) in _cases().items():
    args = [jax.numpy.asarray(rng.standard_normal(s, np.float32) * (0.05 if i else 1.0)) for i, s in enumerate(shapes)]
    fns = {name: jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(shapes)))))
           for name, f in (("fast", fast), ("plain", plain))}
    for fn in fns.values():
      jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {"fast": [], "plain": []}
    for _ in range(reps):
      for name, fn in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times[name].append(time.perf_counter() - t)
    out[family] = {f"{name}_s": round(statistics.median(v), 6) for name, v in times.items()}
  return out
