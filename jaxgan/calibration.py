"""One-time measurement of which layer forms are faster on this processor, cached on disk.

``jaxgan.models.fast_ops`` holds equal-math forms of the layers that XLA:CPU
compiles badly; whether each one wins depends on the processor (they were
first tuned on a 2-core AVX2 machine, then re-measured on an AVX-512 EPYC).
Instead of constants from one machine, :func:`ensure` times each layer family's
fast form against its plain form once per processor and JAX version, forward
and both gradients, at a small representative shape (about 5-10 s in all), and
writes the winners to ``jaxgan-calibration.json`` beside the persistent
compilation cache (``$JAXGAN_CACHE_DIR``, default ``~/.cache/jaxgan/xla``). Later
starts read the file (milliseconds). :func:`jaxgan.models.layers.fast_ops_enabled`
then answers per family.

Families (keys of :data:`FAMILIES`): ``conv`` (Conv2d: VALID/strided/patch
forms), ``conv_transpose`` (ConvTranspose2d as phase convs), ``pad``
(reflection padding), ``instance_norm``, ``conv_wgrad`` (the kernel gradient
of stride-1 convs with more than 4 taps -- the ResNet blocks' 3x3, the 7x7
stem, the PatchGAN's 4x4 -- as one matmul per tap or as XLA's convolution).

Only CPU backends and one-process runs calibrate: on GPU/TPU the plain forms
are always used, and in a multi-process run every process must compile the
same program, so the fixed defaults (``form_choices.DEFAULTS``: every fast form
but the tap kernel gradients) are used there. ``JAXGAN_CALIBRATION=0`` turns calibration off
(the same default); an explicit ``layers.set_fast_ops(True/False)`` overrides
it. The ``jaxgan`` program calls :func:`ensure`; library users may call it at
the top of their script.
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
from typing import Callable

from jaxgan.models.form_choices import DEFAULTS, FAMILIES, choice, choices, set_choices  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

FILE_NAME = "jaxgan-calibration.json"
ENV = "JAXGAN_CALIBRATION"
MARGIN = 0.9   # a form other than the default is chosen only when it takes under 0.9 of the default's time
VERSION = 2          # bump when the measured cases change: older entries are measured again


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
  """Load this machine's calibration from ``cache_dir`` (measure and write it the first time) and install it.

  Returns ``{"choices": {family: bool}, "source": "cache" | "measured" | "default", ...}``.
  Never fails a run: an unreadable or corrupt file is measured again (and replaced
  atomically), an unwritable folder keeps the result for this process only.
  """
  import jax
  if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    set_choices(None)
    return {"choices": {}, "source": "default", "reason": f"{ENV}=0"}
  if jax.default_backend() != "cpu" or jax.process_count() > 1:
    set_choices(None)
    return {"choices": {}, "source": "default",
            "reason": "not a CPU backend" if jax.default_backend() != "cpu" else "multi-process run"}
  path = Path(cache_dir or default_dir()) / FILE_NAME
  key = machine_key()
  entries: dict = {}
  try:
    entries = json.loads(path.read_text())
    if not isinstance(entries, dict):
      raise ValueError("not a JSON object")
  except FileNotFoundError:
    entries = {}
  except (OSError, ValueError) as e:
    log.warning("calibration file %s is unreadable (%s); measuring again", path, e)
    entries = {}
  entry = entries.get(key)
  if isinstance(entry, dict) and isinstance(entry.get("choices"), dict) and set(entry["choices"]) == set(FAMILIES):
    set_choices(entry["choices"])
    return {**entry, "source": "cache", "path": str(path)}
  t0 = time.perf_counter()
  timings = (measure or measure_families)()
  chosen = {fam: _choose(fam, t) for fam, t in timings.items()}
  entry = {"choices": chosen, "timings": timings, "seconds": round(time.perf_counter() - t0, 2),
           "date": time.strftime("%Y-%m-%d"), "machine": f"{_processor()[0]}, {os.cpu_count()} cores"}
  entries[key] = entry
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n")
    os.replace(tmp, path)
  except OSError as e:
    log.warning("could not write the calibration to %s (%s); it holds for this process only", path, e)
  set_choices(chosen)
  log.info("calibrated the layer forms for this processor in %.1f s: %s", entry["seconds"],
           ", ".join(f"{k} {'fast' if v else 'plain'}" for k, v in chosen.items()))
  return {**entry, "source": "measured", "path": str(path)}


# ----------------------------------------------------------------------------- the measurement


def _choose(family: str, t: dict) -> bool:
  """Whether ``family``'s fast form is chosen from its timings: a near tie keeps the default form.

  The default (``form_choices.DEFAULTS``) is the fast form where it won at every measured shape on
  two processor kinds; for ``conv_wgrad`` it is the plain form, because the taps cost compile time.
  """
  if DEFAULTS[family]:
    return not t["plain_s"] < MARGIN * t["fast_s"]
  return t["fast_s"] < MARGIN * t["plain_s"]


def _with_choice(family: str, fast: bool, fn: Callable) -> Callable:
  """``fn`` traced with ``family``'s form set to ``fast`` (the other choices as installed)."""
  def traced(*args):
    saved = choices()
    set_choices({**saved, family: fast})
    try:
      return fn(*args)
    finally:
      set_choices(saved)
  return traced


def _cases():
  """family -> (fast fn, plain fn, argument shapes): layer-sized cases that compile in well under a second."""
  from jaxgan.models import fast_ops as F

  def resblock_conv(x, k):    # the forward and input gradient are the same in both forms, the kernel gradient not
    return F.conv2d_valid(x, k).sum()

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
      # a ResNet-block conv at a quarter of its size: the same function, traced with either form
      "conv_wgrad": (resblock_conv, resblock_conv, ((1, 34, 34, 128), (3, 3, 128, 128))),
  }


def measure_families(reps: int = 7) -> dict:
  """``{family: {"fast_s", "plain_s"}}``: median seconds of value and all gradients, the two forms alternated."""
  import jax
  import numpy as np
  rng = np.random.default_rng(0)
  out = {}
  for family, (fast, plain, shapes) in _cases().items():
    args = [jax.numpy.asarray(rng.standard_normal(s, np.float32) * (0.05 if i else 1.0)) for i, s in enumerate(shapes)]
    # traced with the family's choice set to the form (custom backward rules are traced late, inside)
    fns = {name: jax.jit(_with_choice(family, name == "fast", jax.value_and_grad(f, argnums=tuple(range(len(shapes))))))
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
