"""pytorch-fid's Inception weights: reading the file and folding it into :class:`FIDInceptionV3` params.

pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` is the state_dict of
torchvision's ``Inception3`` (``num_classes=1008``, no aux head) with the FID
blocks: ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_var``, ...
:func:`read_state_dict` reads it (``torch.load(weights_only=True)``) or an ``.npz``
of the same keys (no torch needed); :func:`convert_state_dict` folds each
BatchNorm (eps 1e-3) into its conv. Where the file comes from (flag, environment,
cache, download) is :mod:`jaxgan.fid_io`'s business.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan.fid.inception import FIDInceptionV3

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
BN_EPS = 1e-3                             # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)


class WeightsError(ValueError):
  """A weights file that cannot be read or does not hold pytorch-fid's Inception; names the file/keys."""


_IGNORED = ("fc.weight", "fc.bias")    # the 1008-way classifier pytorch-fid loads but never runs
_BN = ("weight", "bias", "running_mean", "running_var")


def _conv_leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Mapping]]:
  """``(path, {kernel, bias})`` of every folded conv in a parameter tree, in tree order."""
  for name, value in tree.items():
    if "kernel" in value:
      yield prefix + (name,), value
    else:
      yield from _conv_leaves(value, prefix + (name,))


def expected_kernel_shapes() -> dict[str, tuple[int, ...]]:
  """pytorch-fid's module prefix (``Mixed_5b.branch1x1``) -> its torch conv weight shape ``(out, in, kh, kw)``."""
  shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))
  out = {}
  for path, leaf in _conv_leaves(shapes["params"]):
    kh, kw, cin, cout = leaf["kernel"].shape
    out[".".join(path)] = (cout, cin, kh, kw)
  return out


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):   # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def convert_state_dict(state_dict: Mapping[str, Any]) -> dict:
  """pytorch-fid's Inception ``state_dict`` (torch tensors or numpy arrays) -> :class:`FIDInceptionV3` params.

  Each ``P.conv.weight (out, in, kh, kw)`` with ``P.bn.{weight, bias, running_mean,
  running_var}`` becomes ``kernel = weight * s`` (HWIO) and ``bias = bn.bias -
  running_mean * s`` with ``s = bn.weight / sqrt(running_var + 1e-3)``, folded in
  float64 and stored as float32. ``fc.*`` and ``num_batches_tracked`` are ignored.
  Raises :class:`WeightsError` listing missing keys, unexpected keys and shape mismatches.
  """
  expected = expected_kernel_shapes()
  sd = dict(state_dict)
  used: set[str] = set()
  missing, wrong, params = [], [], {}
  for prefix, shape in expected.items():
    keys = {"w": f"{prefix}.conv.weight", **{b: f"{prefix}.bn.{b}" for b in _BN}}
    absent = [k for k in keys.values() if k not in sd]
    if absent:
      missing.extend(absent)
      continue
    arrs = {name: _to_numpy(sd[k]).astype(np.float64) for name, k in keys.items()}
    used.update(keys.values())
    bad = [f"{keys[n]} {a.shape} (expected {shape if n == 'w' else (shape[0],)})" for n, a in arrs.items()
           if a.shape != (shape if n == "w" else (shape[0],))]
    if bad:
      wrong.extend(bad)
      continue
    s = arrs["weight"] / np.sqrt(arrs["running_var"] + BN_EPS)
    kernel = (arrs["w"] * s[:, None, None, None]).transpose(2, 3, 1, 0)
    bias = arrs["bias"] - arrs["running_mean"] * s
    node = params
    for part in prefix.split(".")[:-1]:
      node = node.setdefault(part, {})
    node[prefix.split(".")[-1]] = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
  unexpected = sorted(k for k in sd if k not in used and k not in _IGNORED and not k.endswith(".num_batches_tracked"))
  problems = []
  if missing:
    problems.append(f"{len(missing)} missing keys ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
  if wrong:
    problems.append(f"{len(wrong)} shape mismatches ({'; '.join(wrong[:5])}{'; ...' if len(wrong) > 5 else ''})")
  if unexpected:
    problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:5])}"
                    f"{', ...' if len(unexpected) > 5 else ''})")
  if problems:
    raise WeightsError("not pytorch-fid's FID Inception state_dict (" + FID_WEIGHTS_FILENAME + "): "
                       + "; ".join(problems))
  for k, v in sd.items():
    if k in used and not np.all(np.isfinite(_to_numpy(v))):
      raise WeightsError(f"the weights hold NaN or inf values (key {k})")
  return params


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read a weights file: pytorch-fid's ``.pth`` (``torch.load(weights_only=True)``: tensors and plain
  containers only, never arbitrary pickled code) or an ``.npz`` of the same keys (no torch needed).

  Returns ``{key: float numpy array}``; :class:`WeightsError` naming ``path`` when it cannot be read.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise WeightsError(f"FID weights file {path!r} does not exist")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - zipfile / format errors of a damaged file
      raise WeightsError(f"FID weights file {path!r} cannot be read as .npz (corrupt?): {type(e).__name__}: {e}"
                         ) from e
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise WeightsError(f"reading {path!r} (a PyTorch .pth) needs PyTorch once: pip install torch; later runs "
                       "use the converted .npz cache") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError for damaged files
    raise WeightsError(f"FID weights file {path!r} cannot be read as a PyTorch state_dict with weights_only=True "
                       f"(corrupt or not a weights file): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                       ) from e
  if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
    raise WeightsError(f"FID weights file {path!r} holds a {type(obj).__name__}, not a state_dict of tensors")
  return {str(k): v.detach().cpu().numpy() for k, v in obj.items()}


def load_params(path: str | os.PathLike) -> dict:
  """:func:`read_state_dict` then :func:`convert_state_dict`; errors name ``path``."""
  try:
    return convert_state_dict(read_state_dict(path))
  except WeightsError as e:
    if os.fspath(path) in str(e):
      raise
    raise WeightsError(f"{os.fspath(path)}: {e}") from e


