"""Which XLA:CPU layer forms a run uses: measured once per processor and layer shape, cached on disk.

What it buys, and where: only on CPUs. ``jaxgan.cpu.fast_ops`` holds equal-math
forms of the layers that XLA:CPU compiles badly; whether each one wins depends on the
processor (2-core AVX2 Zen 3, AVX-512 EPYC and Sapphire Rapids AMX were measured) and
on the layer shape (on a Sapphire Rapids Xeon the tap kernel gradients tie at a 32x32
probe but win 2x at the 64x64x256 residual blocks). GPUs and TPUs run the plain forms
and never calibrate.

:func:`resolve_forms` turns a run's ``layer_forms`` setting into the explicit
:class:`jaxgan.models.forms.LayerForms` the networks are built with. ``auto`` on a
one-process CPU run decides every distinct layer of the step on its own:
:func:`step_layer_shapes` lists them (``family@shape key``, by tracing the model's init
abstractly through the layers' one hook), :func:`measure_layer_shapes` times each one
once per processor in both forms (value and the step's gradients, one image, the forms
alternated), and a form other than the default is chosen only when it takes under
:data:`MARGIN` of the default's time. Without a step to trace (a command that only
loads a network), ``auto`` is the per-family choice at representative shapes
(:func:`ensure`, ~5-10 s once). Results live in ``jaxgan-calibration.json`` beside the
persistent compilation cache (``$JAXGAN_CACHE_DIR``, default ``~/.cache/jaxgan/xla``)
under a key of this processor and the JAX version; later starts read them
(milliseconds). Elsewhere ``auto`` is :data:`jaxgan.models.forms.DEFAULT` on CPUs
(multi-process runs: every process must compile the same program; or
``JAXGAN_CALIBRATION=0``) and ``plain`` on GPU/TPU. ``jaxgan.train`` resolves once at
the start of a run, logs the result and records it in the checkpoint metadata, which
resume, ``translate`` and ``evaluate`` reuse: nothing here is read while a network is
traced.

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

from jaxgan.models.forms import (DEFAULT, FAMILIES, PLAIN, LayerForms, parse_conv_key, parse_conv_transpose_key,
                                 parse_image_key)

log = logging.getLogger(__name__)

FILE_NAME = "jaxgan-calibration.json"
ENV = "JAXGAN_CALIBRATION"
MARGIN = 0.9   # a form other than the default is chosen only when it takes under 0.9 of the default's time
VERSION = 4          # bump when the measured cases change: older entries are measured again


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
  _warn_if_busy(path)
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


def _warn_if_busy(path: Path) -> None:
  """Warn when other work holds the cores while timings that are cached for good are taken."""
  try:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
  except (AttributeError, OSError):
    return
  if load >= cores + 1:
    log.warning("measuring the layer forms while the machine is busy (load %.1f on %d cores): the timings, and "
                "so the forms, may be off; they are kept in %s (delete it to measure again)", load, cores, path)


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
  process does not calibrate (:func:`calibrates`). Else, given the step's ``shapes``
  (``family@key`` strings from :func:`step_layer_shapes`), each of them decided by its own
  measurement (:func:`shape_choices`; each family's form is the one most of its shapes chose, the
  others listed per shape); without shapes, this processor's per-family choice at representative
  shapes (:func:`ensure`).
  """
  import jax
  if not (spec is None or (isinstance(spec, str) and spec.strip() == "auto")):
    return LayerForms.parse(spec)
  if (platform or jax.default_backend()) != "cpu":
    return PLAIN
  if calibrates() is not None:
    return DEFAULT
  if not shapes:
    chosen = {**{f: DEFAULT.use_fast(f) for f in FAMILIES}, **ensure(cache_dir, measure=measure).get("choices", {})}
    return LayerForms(frozenset(f for f, v in chosen.items() if v))
  choices = [(*s.split("@", 1), fast) for s, fast in shape_choices(shapes, cache_dir=cache_dir,
                                                                   measure=measure_shapes).items()]
  fast = set(DEFAULT.fast)
  for family in FAMILIES:     # the family's form: the one most of its shapes chose
    votes = [use for f, _, use in choices if f == family]
    if 2 * sum(votes) != len(votes):      # a tie, or no shape of this family: the default stays
      (fast.add if 2 * sum(votes) > len(votes) else fast.discard)(family)
  return LayerForms(frozenset(fast), tuple((f, key) for f, key, use in choices if use != (f in fast)))


def wgrad_relevant(key: str) -> bool:
  """Whether ``conv_wgrad`` changes the kernel gradient of the conv layer ``key``: a stride-1 conv
  of more than 4 taps whose kernel gradient ``fast_ops`` does not already compute one way only."""
  (_, _, c), (kh, kw, _, o), stride, _ = parse_conv_key(key)
  taps = kh * kw
  return stride == 1 and taps > 4 and not (o == 1 and taps <= 16) and not (o <= 16 < c)


def step_layer_shapes(init_fn: Callable[[], Any]) -> list[str]:
  """The ``family@shape key`` of every distinct layer that ``init_fn`` (e.g. an objective's ``init`` on
  the first batch) builds, for each family whose form is decided per shape, traced abstractly (no
  compile): its convs, transposed convs, reflection paddings and instance norms, and ``conv_wgrad``
  at the convs where the kernel-gradient form matters (:func:`wgrad_relevant`)."""
  import jax
  from jaxgan.models import layers
  with layers.recording_layers() as calls, jax.disable_jit():   # no jit cache hit may skip the Python code
    jax.eval_shape(init_fn)
  keys = {f"{family}@{key}" for family, key in calls if family != "conv_wgrad"}
  keys |= {f"conv_wgrad@{key}" for family, key in calls if family == "conv" and wgrad_relevant(key)}
  return sorted(keys)


def shape_choices(shapes: Sequence[str], *, cache_dir: str | os.PathLike | None = None,
                  measure: Callable | None = None) -> dict[str, bool]:
  """``{family@key: fast form chosen}`` for each layer shape, each measured once per processor
  (cached under this machine's key beside the family choices; a near tie keeps the family's
  default form, :func:`_choose`)."""
  path = Path(cache_dir or default_dir()) / FILE_NAME
  entries = _read(path)
  key = machine_key()
  entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
  known = dict(entry.get("layer_shapes", {})) if isinstance(entry.get("layer_shapes"), dict) else {}
  missing = [s for s in shapes if not isinstance(known.get(s), dict)]
  if missing:
    _warn_if_busy(path)
    t0 = time.perf_counter()
    known.update((measure or measure_layer_shapes)(missing))
    log.info("measured the layer forms at %d layer shapes in %.1f s", len(missing), time.perf_counter() - t0)
    entries = _read(path)       # merge with what another process may have written meanwhile
    entry = entries.get(key) if isinstance(entries.get(key), dict) else {}
    entries[key] = {**entry, "layer_shapes": {**entry.get("layer_shapes", {}), **known}}
    _write(path, entries)
  return {s: _choose(s.split("@", 1)[0], known[s]) for s in shapes}


def _shape_case(shape: str):
  """(fast fn, plain fn, argument shapes, argnums) of one layer at ``family@key``: value and the
  gradients a train step takes (a conv's input and kernel, only the kernel for ``conv_wgrad``)."""
  from jaxgan.cpu import fast_ops as F
  family, key = shape.split("@", 1)
  if family in ("conv", "conv_wgrad"):
    (h, w, c), kernel, stride, padding = parse_conv_key(key)
    if family == "conv":
      return (lambda x, k: F.conv2d_fast(x, k, stride, padding), lambda x, k: F.conv2d(x, k, stride, padding),
              ((1, h, w, c), kernel), (0, 1))
    return (lambda x, k: F.conv2d_fast(x, k, stride, padding, wgrad_taps=True),
            lambda x, k: F.conv2d_fast(x, k, stride, padding, wgrad_taps=False), ((1, h, w, c), kernel), (1,))
  if family == "conv_transpose":
    (h, w, c), kernel, stride, padding, op = parse_conv_transpose_key(key)
    return (lambda x, k: F.conv_transpose_fast(x, k, stride, padding, op),
            lambda x, k: F.conv_transpose_plain(x, k, stride, padding, op), ((1, h, w, c), kernel), (0, 1))
  (h, w, c), pad = parse_image_key(key)
  if family == "pad":
    return (lambda x: F.reflection_pad(x, pad), lambda x: F.reflection_pad_plain(x, pad), ((1, h, w, c),), (0,))
  if family == "instance_norm":
    return (lambda x: F.instance_norm(x, 1e-5), lambda x: F.instance_norm_plain(x, 1e-5), ((1, h, w, c),), (0,))
  raise ValueError(f"no per-shape measurement for layer family {family!r} ({shape!r})")


def measure_layer_shapes(shapes: Sequence[str], reps: int = 5) -> dict:
  """``{family@key: {"fast_s", "plain_s"}}``: median seconds of one image's layer (value and the
  gradients of :func:`_shape_case`) at each shape, the two forms alternated, ``reps`` rounds (fewer
  where the winner is already clear, :func:`_clear`)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  rng = np.random.default_rng(0)
  out = {}
  for shape in shapes:
    fast, plain, arg_shapes, argnums = _shape_case(shape)

    def grad_of(f):
      def loss(*a):
        y = f(*a)
        return jnp.vdot(y, jnp.sin(y))
      return jax.jit(jax.grad(loss, argnums=argnums))

    out[shape] = _time_forms(grad_of(fast), grad_of(plain), _random_args(rng, arg_shapes), reps, stop_early=True)
  return out


def _random_args(rng, shapes) -> list:
  """An input (unit normal) and then parameters (scaled like initialised weights) of ``shapes``."""
  import jax.numpy as jnp
  import numpy as np
  return [jnp.asarray(rng.standard_normal(s, np.float32) * (0.05 if i else 1.0)) for i, s in enumerate(shapes)]


def _time_forms(fast, plain, args, reps: int, stop_early: bool = False) -> dict:
  """``{"fast_s", "plain_s"}``: median seconds of the two compiled forms on ``args``, each called once
  first (compile), then alternated for ``reps`` rounds (fewer with ``stop_early`` once :func:`_clear`)."""
  import jax
  fns = {"fast": fast, "plain": plain}
  for fn in fns.values():
    jax.block_until_ready(fn(*args))
  times: dict[str, list[float]] = {"fast": [], "plain": []}
  for _ in range(reps):
    for name, fn in fns.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - t)
    if stop_early and _clear(times):
      break
  return {f"{name}_s": round(statistics.median(v), 6) for name, v in times.items()}


def _clear(times: dict[str, list[float]]) -> bool:
  """After two or more alternated rounds: every time of one form is under half of every time of the
  other, so more rounds cannot change the choice (the plain transposed convs take 1.2 s a round
  at CycleGAN's shapes)."""
  fast, plain = times["fast"], times["plain"]
  return len(fast) >= 2 and (2 * max(fast) < min(plain) or 2 * max(plain) < min(fast))


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
      # a ResNet-block conv at a quarter of its size (the family's choice where no layer shape was
      # measured; a run decides each of its own shapes with shape_choices)
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
    fns = [jax.jit(jax.value_and_grad(f, argnums=tuple(range(len(shapes))))) for f in (fast, plain)]
    out[family] = _time_forms(*fns, _random_args(rng, shapes), reps)
  return out
