"""The layer forms a network is built with: one explicit, hashable value (the networks' ``forms`` field).

Each layer family has two forms that compute the same math (values and gradients up
to float rounding, same parameters): the plain XLA form, which is the reference and
what GPUs and TPUs always run, and the CPU form of :mod:`jaxgan.cpu.fast_ops`,
written around XLA:CPU's slow paths. A :class:`LayerForms` says which CPU form each
family uses -- for the whole family, and optionally per layer shape (``shapes``:
``(family, shape key)`` pairs that take the other form). It only matters in programs
compiled for CPU devices (:func:`jaxgan.models.layers.target_platform`); elsewhere
every layer is plain whatever the value says.

The value is a field of the Linen modules (``define_G(..., forms=...)``), so it is
part of the program's definition; nothing is read from process state. The runs
spell it as a string (config key ``layer_forms``, see :func:`LayerForms.parse` and
:meth:`LayerForms.spec`), decided once when a run starts, logged and recorded in the
workdir's checkpoint metadata (``jaxgan.train``); how a machine picks it is
:mod:`jaxgan.cpu.calibration`'s business, not this module's.

Families: ``conv`` (Conv2d), ``conv_transpose`` (ConvTranspose2d), ``pad``
(reflection padding), ``instance_norm``, ``conv_wgrad`` (the kernel gradient of a
stride-1 convolution with more than 4 taps: one matmul per tap, or XLA's
convolution; only used inside the ``conv`` family's CPU form).
"""
from __future__ import annotations

import dataclasses

FAMILIES = ("conv", "conv_transpose", "pad", "instance_norm", "conv_wgrad")

# The CPU forms that won at every measured shape on every processor measured so far (2-core AVX2
# Zen 3, AVX-512 EPYC, Sapphire Rapids): all but the tap kernel gradients, which depend on the
# processor and the shape and cost compile time (~1,300 extra matmuls in a CycleGAN step).
DEFAULT_FAST = frozenset({"conv", "conv_transpose", "pad", "instance_norm"})


@dataclasses.dataclass(frozen=True)
class LayerForms:
  """Which form each layer family uses on a CPU.

  ``fast``: the families whose CPU form is used. ``shapes``: sorted ``(family,
  shape key)`` pairs that take the opposite of the family's choice at that layer
  shape (keys from :func:`conv_key`). Hashable, so it can be a module field.
  """
  fast: frozenset = DEFAULT_FAST
  shapes: tuple = ()

  def __post_init__(self):
    unknown = set(self.fast) - set(FAMILIES) | {f for f, _ in self.shapes} - set(FAMILIES)
    if unknown:
      raise ValueError(f"layer forms: unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    object.__setattr__(self, "fast", frozenset(self.fast))
    object.__setattr__(self, "shapes", tuple(sorted({(str(f), str(k)) for f, k in self.shapes})))

  def use_fast(self, family: str, shape: str | None = None) -> bool:
    """Whether ``family``'s CPU form is used (at layer shape ``shape`` when given)."""
    flip = shape is not None and (family, shape) in self.shapes
    return (family in self.fast) != flip

  def spec(self) -> str:
    """The string form, e.g. ``conv=fast,conv_transpose=fast,pad=fast,instance_norm=fast,conv_wgrad=plain``
    followed by ``;conv_wgrad@<shape>=fast`` for each per-shape choice. :func:`LayerForms.parse` reads it back."""
    head = ",".join(f"{f}={'fast' if f in self.fast else 'plain'}" for f in FAMILIES)
    return ";".join([head] + [f"{f}@{k}={'fast' if self.use_fast(f, k) else 'plain'}" for f, k in self.shapes])

  def summary(self) -> str:
    """One line for a log: the families, then how many shapes differ from their family."""
    per = {f: sum(1 for g, _ in self.shapes if g == f) for f in FAMILIES}
    return ", ".join(f"{f}={'fast' if f in self.fast else 'plain'}" + (f" ({per[f]} shapes opposite)" if per[f] else "")
                     for f in FAMILIES)

  @classmethod
  def parse(cls, text: "str | LayerForms | None") -> "LayerForms":
    """A ``layer_forms`` value: ``plain`` (the reference forms), ``fast`` (every CPU form),
    ``default`` (:data:`DEFAULT_FAST`), or a :meth:`spec` string (families left out take
    their default). ``auto`` and None read as ``default`` here; a run resolves ``auto``
    per machine before it builds anything (:func:`jaxgan.cpu.calibration.resolve_forms`)."""
    if isinstance(text, LayerForms):
      return text
    text = "default" if text is None else str(text).strip()
    if text in ("auto", "default", ""):
      return cls()
    if text == "plain":
      return cls(frozenset())
    if text == "fast":
      return cls(frozenset(FAMILIES))
    head, *rest = text.split(";")
    fast = set(DEFAULT_FAST)
    for item in filter(None, (s.strip() for s in head.split(","))):
      family, value = _item(item, text)
      fast.discard(family)
      if value:
        fast.add(family)
    shapes = []
    for item in filter(None, (s.strip() for s in rest)):
      where, value = _item(item, text, shaped=True)
      family, key = where.split("@", 1)
      if value != (family in fast):
        shapes.append((family, key))
    return cls(frozenset(fast), tuple(shapes))


def _item(item: str, text: str, shaped: bool = False):
  name, sep, value = item.partition("=")
  family = name.split("@", 1)[0] if shaped else name
  if not sep or value not in ("fast", "plain") or family not in FAMILIES or (shaped and "@" not in name):
    raise ValueError(f"layer_forms {text!r}: cannot read {item!r}; expected 'family=fast|plain' "
                     f"(families: {', '.join(FAMILIES)}) or 'plain', 'fast', 'default', 'auto'")
  return (name if shaped else family), value == "fast"


PLAIN = LayerForms(frozenset())
DEFAULT = LayerForms()


def _dim(v) -> str:
  """One size of a key: the number, or a symbolic size's expression as written (an export traced with
  ``jax.export`` symbolic shapes; such a key matches no measured shape, so the layer takes its
  family's form)."""
  try:
    return str(int(v))
  except Exception:  # noqa: BLE001 - jax's symbolic dimensions refuse int() with their own error type
    return str(v)


def conv_key(x_shape, kernel_shape, stride: int = 1, padding: int = 0) -> str:
  """The shape key of a convolution layer: one image's input ``HxWxC``, the kernel ``kxk>out``, the
  stride and zero padding, e.g. ``66x66x256:3x3>256:s1p0`` (the batch is left out: the same network
  runs the same forms whatever the per-device batch)."""
  h, w, c = (_dim(v) for v in tuple(x_shape)[-3:])
  kh, kw, _, o = (_dim(v) for v in kernel_shape)
  return f"{h}x{w}x{c}:{kh}x{kw}>{o}:s{int(stride)}p{int(padding)}"


def conv_transpose_key(x_shape, kernel_shape, stride: int, padding: int, output_padding: int = 0) -> str:
  """The shape key of a transposed convolution: :func:`conv_key` with the output padding, e.g.
  ``64x64x256:3x3>128:s2p1o1``."""
  return f"{conv_key(x_shape, kernel_shape, stride, padding)}o{int(output_padding)}"


def pad_key(x_shape, pad: int) -> str:
  """The shape key of a reflection padding: one image's input and the padding, e.g. ``256x256x3:p3``."""
  h, w, c = (_dim(v) for v in tuple(x_shape)[-3:])
  return f"{h}x{w}x{c}:p{int(pad)}"


def norm_key(x_shape) -> str:
  """The shape key of an instance norm: one image's input, e.g. ``64x64x256``."""
  h, w, c = (_dim(v) for v in tuple(x_shape)[-3:])
  return f"{h}x{w}x{c}"


def parse_conv_key(key: str) -> tuple[tuple[int, int, int], tuple[int, int, int, int], int, int]:
  """``(input HWC, kernel HWIO, stride, padding)`` of a :func:`conv_key`."""
  return _parse_conv(key, transposed=False)[:4]


def parse_conv_transpose_key(key: str):
  """``(input HWC, kernel HWIO, stride, padding, output padding)`` of a :func:`conv_transpose_key`."""
  return _parse_conv(key, transposed=True)


def _parse_conv(key: str, transposed: bool):
  try:
    img, ker, sp = key.split(":")
    h, w, c = (int(v) for v in img.split("x"))
    k, o = ker.split(">")
    kh, kw = (int(v) for v in k.split("x"))
    s, rest = sp[1:].split("p")
    p, has_op, op = rest.partition("o")
    if bool(has_op) != transposed:
      raise ValueError("output padding" + (" missing" if transposed else " in a conv key"))
    stride, padding, output_padding = int(s), int(p), int(op or 0)
  except ValueError as e:
    example = "64x64x256:3x3>128:s2p1o1" if transposed else "66x66x256:3x3>256:s1p0"
    raise ValueError(f"not a {'transposed ' if transposed else ''}conv shape key: {key!r} (expected like {example})") from e
  return (h, w, c), (kh, kw, c, int(o)), stride, padding, output_padding


def parse_image_key(key: str) -> tuple[tuple[int, int, int], int]:
  """``(input HWC, padding)`` of a :func:`pad_key` (padding 0 for a :func:`norm_key`)."""
  try:
    img, _, pad = key.partition(":")
    h, w, c = (int(v) for v in img.split("x"))
    padding = int(pad[1:]) if pad else 0
    if pad and pad[0] != "p":
      raise ValueError(pad)
  except ValueError as e:
    raise ValueError(f"not a pad or norm shape key: {key!r} (expected like 256x256x3:p3 or 64x64x256)") from e
  return (h, w, c), padding
