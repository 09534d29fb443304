"""Which layer forms the layers trace on a CPU: the fast ``fast_ops`` form or the plain one, per family.

Pure state, set by :mod:`jaxgan.calibration` (which measures them once per
processor) or by hand; read by :func:`jaxgan.models.layers.fast_ops_enabled`
when a network is traced. Empty means the defaults (:data:`DEFAULTS`): every
fast form but ``conv_wgrad``'s.
"""
from __future__ import annotations

# conv_wgrad is read inside fast_ops (canonical._wgrad_s1): the kernel gradient of a stride-1 conv
# with more than 4 taps as one matmul per tap (True) or as XLA's convolution (False).
FAMILIES = ("conv", "conv_transpose", "pad", "instance_norm", "conv_wgrad")

# The form used when nothing was chosen (no calibration: the test suite, multi-process runs, library
# code that does not call jaxgan.calibration.ensure()). The tap kernel gradients are off by default:
# they won clearly on a 2-core AVX2 Zen 3 (CycleGAN step 0.84x -> 0.91x PyTorch) but tied on an
# AVX-512 EPYC, and their ~1,300 extra matmuls made the CycleGAN step compile in 34 s instead of 22-24.
DEFAULTS = {"conv": True, "conv_transpose": True, "pad": True, "instance_norm": True, "conv_wgrad": False}

_CHOICES: dict[str, bool] = {}     # family -> use the fast form


def choice(family: str) -> bool:
  """Whether the fast form of ``family`` is used on a CPU (as chosen, else :data:`DEFAULTS`)."""
  if family not in FAMILIES:
    raise KeyError(f"unknown layer family {family!r}; known: {', '.join(FAMILIES)}")
  return _CHOICES.get(family, DEFAULTS[family])


def choices() -> dict[str, bool]:
  """The installed choices (empty: :data:`DEFAULTS`)."""
  return dict(_CHOICES)


def set_choices(new: dict[str, bool] | None) -> None:
  """Install ``new`` (family -> the fast form wins), or None to go back to the defaults."""
  _CHOICES.clear()
  if new:
    unknown = set(new) - set(FAMILIES)
    if unknown:
      raise KeyError(f"unknown layer families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    _CHOICES.update({k: bool(v) for k, v in new.items()})
