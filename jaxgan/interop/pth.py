"""Reading ``.pth`` files safely: :func:`read_state_dict` and :func:`load_pth`.

A ``.pth`` file is a pickle. It is read with ``torch.load(path, map_location="cpu",
weights_only=True)``: only tensors and plain containers are unpickled, never code
(a file that would run something is refused before anything from it executes).
Accepted contents, as the reference project and its users save them:

* a plain ``state_dict`` (``torch.save(net.state_dict(), path)``, the authors' files);
* keys with the ``module.`` prefix of ``nn.DataParallel``;
* a dict holding such a state_dict under ``"state_dict"`` (other entries, e.g. ``"epoch"``, are ignored).

torch is imported only here, when a file is read.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from jaxgan.interop.pytorch import _strip_module_prefix, convert_state_dict


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("reading .pth files needs PyTorch: pip install torch (CPU build is enough)") from e
  return torch


def _reason(error: Exception) -> str:
  """The informative part of torch's weights-only error (not its advice to load with weights_only=False)."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  boiler = ("Weights only load failed", "Check the documentation", "Please file an issue")
  kept = [l for l in lines if not l.startswith(boiler)]
  return " ".join(kept) or (lines[0] if lines else type(error).__name__)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The state_dict stored in ``path`` as ``{key: float32/int numpy array}`` (``module.`` prefix removed).

  Raises FileNotFoundError, or ValueError naming the file (and the entries at fault)
  when it is not a weights-only pickle or does not hold a state_dict.
  """
  torch = _torch()
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such .pth file")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # UnpicklingError for non-weights content, RuntimeError for a non-torch file
    raise ValueError(f"{path}: cannot be read as a PyTorch state_dict with weights_only=True "
                     f"(not a plain weights file, or corrupt; nothing in it was executed): "
                     f"{type(e).__name__}: {_reason(e)}") from e
  if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a dict of parameter names to "
                     "tensors, as the reference's save_networks writes, or a dict with a 'state_dict' entry)")
  if not obj:
    raise ValueError(f"{path}: holds an empty dict, not a state_dict")
  not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
  if not_tensors:
    raise ValueError(f"{path}: not a state_dict; entries {not_tensors[:10]} are not tensors (a training "
                     "checkpoint? save its network's state_dict, or put it under a 'state_dict' key)")
  out = {}
  for k, v in _strip_module_prefix(obj).items():
    v = v.detach().cpu()
    if v.is_floating_point() and v.dtype != torch.float32:
      v = v.float()
    out[k] = v.numpy()
  return out


def load_pth(path: str | os.PathLike, *, kind: str, net: str, norm: str, n_layers_D: int | None = None,
             use_dropout: bool | None = None) -> dict:
  """Read a reference ``.pth`` safely (:func:`read_state_dict`) and convert it (``convert_state_dict``).

  Returns float32 Flax variables ``{"params": ..., "batch_stats": ...}``; errors name the file.
  """
  sd = read_state_dict(path)
  try:
    return convert_state_dict(sd, kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout)
  except ValueError as e:
    raise ValueError(f"{os.fspath(path)}: {e}") from e


def file_sha256(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file (recorded with an import)."""
  import hashlib
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()
