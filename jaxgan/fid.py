"""FID and KID: pytorch-fid's Inception network in Flax, its weights, the Frechet distance and KID (pure).

Owns the math of the metric and nothing of its I/O (folders, stats files and
where the weights come from live in :mod:`jaxgan.fid_io`); the one file it reads
is a weights file (:func:`read_state_dict`).

* :class:`FIDInceptionV3` -- the InceptionV3 variant of pytorch-fid (itself
  TensorFlow's FID graph): torchvision's Inception3 with ``FIDInceptionA``
  (Mixed_5b-d), ``FIDInceptionC`` (Mixed_6b-e), ``FIDInceptionE_1`` (Mixed_7b)
  and ``FIDInceptionE_2`` (Mixed_7c): the branch average pools exclude the zero
  padding from their count, Mixed_7c pools with a 3x3 max. Input: NHWC images
  in [0, 1] of any size, resized to 299x299 bilinearly (``align_corners=False``,
  no antialiasing, as ``F.interpolate``) and scaled to [-1, 1]; output the
  2048-d pool3 features (global average of Mixed_7c), float32 ``[N, 2048]``.
* Parameters mirror pytorch-fid's ``state_dict`` names: ``params[block][conv]``
  (``params["Mixed_5b"]["branch1x1"]``) or ``params[conv]`` for the stem
  (``params["Conv2d_1a_3x3"]``) holds ``kernel (kh, kw, in, out)`` and ``bias``:
  each ``BasicConv2d``'s eval-mode BatchNorm (eps 1e-3) folded into its conv
  (:func:`convert_state_dict`), the same affine map.
* Equal-math rearrangements for speed (``tests/test_fid.py`` checks the result
  against pytorch-fid's own model): the 1x1 convs that read the same input are one
  conv with their output channels side by side, and a branch's 3x3 *average*
  pool is applied after its 1x1 conv (both are linear, so they commute) so that
  it pools ``pool_features`` channels instead of the block's input channels.
* :class:`FeatureExtractor` -- the network jit-compiled once for a fixed batch,
  the batch split over a 1-D ``data`` mesh of the devices, padded for the last
  partial batch.
* :func:`frechet_distance` -- pytorch-fid's ``calculate_frechet_distance``
  numerics: float64, ``scipy.linalg.sqrtm``, ``eps * I`` added to both
  covariances when the product's square root is not finite, and its tolerance on
  the imaginary part. :func:`feature_statistics` -- ``mu``, ``sigma`` as
  pytorch-fid (``np.mean``, ``np.cov(rowvar=False)`` in float64).
* :func:`kid` -- the Kernel Inception Distance of Binkowski et al. (2018) with
  torch-fidelity's defaults: unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``
  over 100 random subsets of ``min(1000, n1, n2)`` features each (seed 2020),
  mean and standard deviation over the subsets.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"   # torch.hub's convention: the name ends in the file's SHA-256 prefix
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3                             # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)
KID_SUBSETS, KID_SUBSET_SIZE, KID_DEGREE, KID_COEF0, KID_SEED = 100, 1000, 3, 1.0, 2020

Params = Mapping[str, Any]
_HIGHEST = jax.lax.Precision.HIGHEST


class WeightsError(ValueError):
  """A weights file that cannot be read or does not hold pytorch-fid's Inception; names the file/keys."""


# ----------------------------------------------------------------------------- layers


def _conv_param(module: nn.Module, name: str, cin: int, cout: int, kh: int, kw: int) -> dict:
  """The folded conv ``{kernel (kh, kw, cin, cout), bias (cout,)}`` named ``name`` in ``module``."""
  def init(rng):
    return {"kernel": nn.initializers.lecun_normal()(rng, (kh, kw, cin, cout), jnp.float32),
            "bias": jnp.zeros((cout,), jnp.float32)}
  return module.param(name, init)


def _conv(x: jax.Array, p: Mapping, stride: int = 1, padding: tuple[int, int] = (0, 0),
          relu: bool = True) -> jax.Array:
  """``relu(conv(x) + bias)``: a ``BasicConv2d`` with its BatchNorm folded in (NHWC, HWIO)."""
  y = jax.lax.conv_general_dilated(x, p["kernel"], (stride, stride), ((padding[0],) * 2, (padding[1],) * 2),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
  y = y + p["bias"]
  return jax.nn.relu(y) if relu else y


def _conv1x1_group(x: jax.Array, ps: Sequence[Mapping], rectify: Sequence[bool]) -> list[jax.Array]:
  """Several 1x1 convs of the same input as one matmul. Output ``i`` is ``relu(conv + bias)`` when
  ``rectify[i]``, else the bare ``conv`` (no bias: the caller pools it first, then adds the bias)."""
  kernel = jnp.concatenate([p["kernel"][0, 0] for p in ps], axis=1)
  n, h, w, c = x.shape
  y = jnp.dot(x.reshape(n * h * w, c), kernel, precision=_HIGHEST)
  outs, start = [], 0
  for p, r in zip(ps, rectify):
    width = p["kernel"].shape[-1]
    part = y[:, start:start + width].reshape(n, h, w, width)
    outs.append(jax.nn.relu(part + p["bias"]) if r else part)
    start += width
  return outs


def _pooled_branch(y: jax.Array, p: Mapping) -> jax.Array:
  """``relu(avgpool(y) + bias)``: the pool branch with its 1x1 conv ``y`` (no bias) computed first."""
  return jax.nn.relu(avg_pool_3x3_exclude_pad(y) + p["bias"])


def _pool_counts(h: int, w: int) -> np.ndarray:
  """How many in-image pixels each 3x3 window (stride 1, padding 1) covers: ``[1, h, w, 1]``."""
  def one(n):
    c = np.full(n, 3.0, np.float32)
    c[0] -= 1
    c[-1] -= 1
    return c if n > 1 else np.ones(1, np.float32)
  return (one(h)[:, None] * one(w)[None, :])[None, :, :, None]


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
  """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)`` (NHWC)."""
  s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return s / _pool_counts(x.shape[1], x.shape[2])


def max_pool(x: jax.Array, stride: int, padding: int) -> jax.Array:
  """``F.max_pool2d(x, 3, stride, padding)`` (padding counts as -inf, NHWC)."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` float32 weights of 1-D linear interpolation as ``F.interpolate(mode="bilinear",
  align_corners=False)`` (torch's CPU formula, float32): source ``(i + 0.5) * in / out - 0.5``,
  clamped at 0, neighbours ``floor`` and ``floor + 1`` (clamped at the last pixel)."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
  src = np.maximum(src, np.float32(0.0))
  i0 = np.floor(src).astype(np.int64)
  i0 = np.minimum(i0, in_size - 1)
  lam = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
  i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
  m = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(m, (rows, i0), np.float32(1.0) - lam)
  np.add.at(m, (rows, i1), lam)
  return m


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """NHWC ``x`` resized to ``size x size`` as ``F.interpolate(bilinear, align_corners=False)``."""
  _, h, w, _ = x.shape
  if h != size:
    x = jnp.einsum("oh,nhwc->nowc", resize_matrix(h, size), x, precision=_HIGHEST)
  if w != size:
    x = jnp.einsum("pw,nowc->nopc", resize_matrix(w, size), x, precision=_HIGHEST)
  return x


# ----------------------------------------------------------------------------- blocks


class InceptionA(nn.Module):
  """``FIDInceptionA``: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(excl. pad)-1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b5_1, b3_1, bp = (c("branch1x1", cin, 64, 1, 1), c("branch5x5_1", cin, 48, 1, 1),
                          c("branch3x3dbl_1", cin, 64, 1, 1), c("branch_pool", cin, self.pool_features, 1, 1))
    y1, y5, y3, yp = _conv1x1_group(x, (b1, b5_1, b3_1, bp), (True, True, True, False))
    y5 = _conv(y5, c("branch5x5_2", 48, 64, 5, 5), padding=(2, 2))
    y3 = _conv(y3, c("branch3x3dbl_2", 64, 96, 3, 3), padding=(1, 1))
    y3 = _conv(y3, c("branch3x3dbl_3", 96, 96, 3, 3), padding=(1, 1))
    yp = _pooled_branch(yp, bp)
    return jnp.concatenate([y1, y5, y3, yp], axis=-1)


class InceptionB(nn.Module):
  """torchvision ``InceptionB`` (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    y3 = _conv(x, c("branch3x3", cin, 384, 3, 3), stride=2)
    yd = _conv1x1_group(x, (c("branch3x3dbl_1", cin, 64, 1, 1),), (True,))[0]
    yd = _conv(yd, c("branch3x3dbl_2", 64, 96, 3, 3), padding=(1, 1))
    yd = _conv(yd, c("branch3x3dbl_3", 96, 96, 3, 3), stride=2)
    return jnp.concatenate([y3, yd, max_pool(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
  """``FIDInceptionC``: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool(excl. pad)-1x1."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    cin, c7 = x.shape[-1], self.channels_7x7
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b7_1, bd_1, bp = (c("branch1x1", cin, 192, 1, 1), c("branch7x7_1", cin, c7, 1, 1),
                          c("branch7x7dbl_1", cin, c7, 1, 1), c("branch_pool", cin, 192, 1, 1))
    y1, y7, yd, yp = _conv1x1_group(x, (b1, b7_1, bd_1, bp), (True, True, True, False))
    y7 = _conv(y7, c("branch7x7_2", c7, c7, 1, 7), padding=(0, 3))
    y7 = _conv(y7, c("branch7x7_3", c7, 192, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_2", c7, c7, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_3", c7, c7, 1, 7), padding=(0, 3))
    yd = _conv(yd, c("branch7x7dbl_4", c7, c7, 7, 1), padding=(3, 0))
    yd = _conv(yd, c("branch7x7dbl_5", c7, 192, 1, 7), padding=(0, 3))
    yp = _pooled_branch(yp, bp)
    return jnp.concatenate([y1, y7, yd, yp], axis=-1)


class InceptionD(nn.Module):
  """torchvision ``InceptionD`` (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    y3, y7 = _conv1x1_group(x, (c("branch3x3_1", cin, 192, 1, 1), c("branch7x7x3_1", cin, 192, 1, 1)),
                            (True, True))
    y3 = _conv(y3, c("branch3x3_2", 192, 320, 3, 3), stride=2)
    y7 = _conv(y7, c("branch7x7x3_2", 192, 192, 1, 7), padding=(0, 3))
    y7 = _conv(y7, c("branch7x7x3_3", 192, 192, 7, 1), padding=(3, 0))
    y7 = _conv(y7, c("branch7x7x3_4", 192, 192, 3, 3), stride=2)
    return jnp.concatenate([y3, y7, max_pool(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
  """``FIDInceptionE_1`` (``max_pool=False``: avgpool excl. pad) or ``FIDInceptionE_2`` (3x3 max pool):
  1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1."""
  max_pool: bool

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    b1, b3_1, bd_1, bp = (c("branch1x1", cin, 320, 1, 1), c("branch3x3_1", cin, 384, 1, 1),
                          c("branch3x3dbl_1", cin, 448, 1, 1), c("branch_pool", cin, 192, 1, 1))
    if self.max_pool:
      y1, y3, yd = _conv1x1_group(x, (b1, b3_1, bd_1), (True, True, True))
      yp = _conv1x1_group(max_pool(x, 1, 1), (bp,), (True,))[0]
    else:
      y1, y3, yd, yp = _conv1x1_group(x, (b1, b3_1, bd_1, bp), (True, True, True, False))
      yp = _pooled_branch(yp, bp)
    y3 = jnp.concatenate([_conv(y3, c("branch3x3_2a", 384, 384, 1, 3), padding=(0, 1)),
                          _conv(y3, c("branch3x3_2b", 384, 384, 3, 1), padding=(1, 0))], axis=-1)
    yd = _conv(yd, c("branch3x3dbl_2", 448, 384, 3, 3), padding=(1, 1))
    yd = jnp.concatenate([_conv(yd, c("branch3x3dbl_3a", 384, 384, 1, 3), padding=(0, 1)),
                          _conv(yd, c("branch3x3dbl_3b", 384, 384, 3, 1), padding=(1, 0))], axis=-1)
    return jnp.concatenate([y1, y3, yd, yp], axis=-1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's ``InceptionV3()`` (default: pool3 block, resize, normalise): images -> pool3 features.

  ``x``: float NHWC ``[N, H, W, 3]`` in [0, 1] (pytorch-fid's ``ToTensor`` range), any ``H, W``.
  Returns float32 ``[N, 2048]``.
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"FIDInceptionV3 takes NHWC RGB images [N, H, W, 3], got shape {tuple(x.shape)}")
    c = lambda *a: _conv_param(self, *a)  # noqa: E731
    x = 2.0 * resize_bilinear(x.astype(jnp.float32)) - 1.0
    x = _conv(x, c("Conv2d_1a_3x3", 3, 32, 3, 3), stride=2)
    x = _conv(x, c("Conv2d_2a_3x3", 32, 32, 3, 3))
    x = _conv(x, c("Conv2d_2b_3x3", 32, 64, 3, 3), padding=(1, 1))
    x = max_pool(x, 2, 0)
    x = _conv1x1_group(x, (c("Conv2d_3b_1x1", 64, 80, 1, 1),), (True,))[0]
    x = _conv(x, c("Conv2d_4a_3x3", 80, 192, 3, 3))
    x = max_pool(x, 2, 0)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(max_pool=False, name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------- weights

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


# ----------------------------------------------------------------------------- batched, data-parallel features


class FeatureExtractor:
  """pool3 features of image batches: the network compiled once per input size, split over devices.

  ``extractor(images)``: ``images`` ``[N, H, W, 3]``, uint8 (0..255, divided by 255 as
  ``ToTensor``) or float in [0, 1]; returns float32 numpy ``[N, 2048]``. Batches of
  ``batch_size`` (rounded up to a multiple of the device count) run on a 1-D ``data``
  mesh of ``devices`` (default: this process's devices), the last one zero-padded.
  """

  def __init__(self, params: Params, *, batch_size: int = 50, devices: Sequence[jax.Device] | None = None):
    devices = list(jax.local_devices() if devices is None else devices)
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.batch_size = -(-int(batch_size) // len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), ("data",))
    self._batch = NamedSharding(mesh, P("data"))
    self._params = jax.device_put(params, NamedSharding(mesh, P()))
    model = FIDInceptionV3()

    def features(p, x):
      x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
      return model.apply({"params": p}, x)

    self._fn = jax.jit(features, out_shardings=self._batch)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FeatureExtractor takes [N, H, W, 3] RGB images, got shape {images.shape}")
    if images.dtype != np.uint8:
      images = images.astype(np.float32)
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      n = len(chunk)
      if n < self.batch_size:
        chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], chunk.dtype)])
      out.append(np.asarray(self._fn(self._params, jax.device_put(chunk, self._batch)))[:n])
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


# ----------------------------------------------------------------------------- statistics and distances


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``mu [D]``, ``sigma [D, D]`` (float64) of ``features [N, D]``, as pytorch-fid (``np.cov``, ddof 1)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"FID statistics need at least 2 feature vectors [N, D], got shape {f.shape}")
  return np.mean(f, axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` with pytorch-fid's numerics.

  float64; the square root by ``scipy.linalg.sqrtm``; when it is not finite (a
  singular product) ``eps * I`` is added to both covariances and it is taken again;
  an imaginary part of the result is dropped when its diagonal is within 1e-3 of
  zero, else ``ValueError('Imaginary component ...')``.
  """
  from scipy import linalg  # pylint: disable=import-outside-toplevel
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f"frechet_distance: mean vectors of different lengths {mu1.shape} and {mu2.shape}")
  if sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"frechet_distance: covariances {sigma1.shape} and {sigma2.shape} do not match the means "
                     f"{mu1.shape}")
  diff = mu1 - mu2
  covmean = linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    import logging  # pylint: disable=import-outside-toplevel
    logging.getLogger(__name__).warning("fid calculation produces singular product; adding %s to diagonal of "
                                        "cov estimates", eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
  return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
  m = kxx.shape[0]
  return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


FULL_GRAM_MAX = 2048   # up to this many features per set, the kernel matrices are computed once, whole


def kid(features1: np.ndarray, features2: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, degree: int = KID_DEGREE, gamma: float | None = None,
        coef0: float = KID_COEF0, seed: int = KID_SEED) -> tuple[float, float]:
  """Kernel Inception Distance ``(mean, std)`` of two feature sets ``[N1, D]``, ``[N2, D]``.

  For each of ``subsets`` draws (``np.random.RandomState(seed)``; per draw
  ``choice(N1, m)`` then ``choice(N2, m)`` without replacement, ``m = min(subset_size,
  N1, N2)``, as torch-fidelity), the unbiased MMD^2 with kernel
  ``k(x, y) = (gamma x.y + coef0)^degree`` (``gamma`` default ``1 / D``); float64.
  Returns the mean and the (population) standard deviation over the draws.
  """
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise ValueError(f"kid: expected two feature arrays [N1, D] and [N2, D], got {f1.shape} and {f2.shape}")
  m = min(int(subset_size), len(f1), len(f2))
  if m < 2:
    raise ValueError(f"kid: needs at least 2 features in each set, got {len(f1)} and {len(f2)}")
  gamma = 1.0 / f1.shape[1] if gamma is None else float(gamma)
  k = lambda a, b: _poly_kernel(a, b, degree, gamma, coef0)  # noqa: E731
  full = max(len(f1), len(f2)) <= FULL_GRAM_MAX
  if full:
    k11, k22, k12 = k(f1, f1), k(f2, f2), k(f1, f2)
  rng = np.random.RandomState(seed)
  mmds = np.zeros(int(subsets))
  for i in range(int(subsets)):
    a = rng.choice(len(f1), m, replace=False)
    b = rng.choice(len(f2), m, replace=False)
    if full:
      mmds[i] = _mmd2_unbiased(k11[np.ix_(a, a)], k12[np.ix_(a, b)], k22[np.ix_(b, b)])
    else:
      x, y = f1[a], f2[b]
      mmds[i] = _mmd2_unbiased(k(x, x), k(x, y), k(y, y))
  return float(np.mean(mmds)), float(np.std(mmds))
