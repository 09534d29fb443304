"""Import (and export) the reference PyTorch project's network weights.

The reference pix2pix/CycleGAN code saves each network as a ``state_dict``
(``latest_net_G.pth``, ``latest_net_G_A.pth``, ...). :func:`convert_state_dict`
maps such a dict -- numpy arrays or torch tensors, with the reference key names
and layouts -- onto the Flax variables of :mod:`jaxgan.models`, for every netG
(``resnet_<n>blocks``, ``unet_<N>``) and netD (``basic``, ``n_layers``, ``pixel``)
and every norm (``batch``, ``instance``, ``none``):

* ``Conv2d.weight`` ``(out, in, kh, kw)``           -> ``kernel`` ``(kh, kw, in, out)``;
* ``ConvTranspose2d.weight`` ``(in, out, kh, kw)``  -> ``kernel`` ``(kh, kw, in, out)`` (no flip;
  ``jaxgan.models.layers.ConvTranspose2d`` flips internally);
* ``BatchNorm2d`` ``weight/bias`` -> ``params`` ``scale/bias``; ``running_mean/var`` ->
  ``batch_stats`` ``mean/var``; ``num_batches_tracked`` is ignored;
* legacy InstanceNorm running statistics (pre-0.4 checkpoints) are dropped, as the reference does;
* ``norm="none"``: the reference's convolutions that feed a norm layer have no bias then (its
  ``use_bias`` is true for instance norm only); jaxgan keeps those biases, so a file without them
  gets zero biases (the same network), and a file with them (jaxgan's own export) keeps its values.

:func:`to_state_dict` is the inverse (numpy arrays, ready for ``torch.from_numpy``).
Reading ``.pth`` files safely is :mod:`jaxgan.interop.pth`; recognising the network in a
state_dict is :mod:`jaxgan.interop.detect`.

Channel counts (``input_nc``, ``output_nc``, ``ngf``/``ndf``) are read from the
weights; the result is checked leaf by leaf against the shapes of the Flax module
``define_G``/``define_D`` builds for them, so a wrong ``net``/``norm`` or a damaged
file fails with an error that names the keys at fault.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import models
from jaxgan.config import NORMS, parse_netG

KINDS = ("G", "D")
_BN_IGNORED = ("num_batches_tracked",)
_LEGACY_INSTANCE = ("running_mean", "running_var", "num_batches_tracked")


class Layer(NamedTuple):
  """One reference layer: torch module prefix, Flax module path, kind and whether it has a bias.

  ``norm_bias``: the bias is the reference's ``use_bias`` (a conv feeding a norm layer, and the
  pixel discriminator's head), which its code leaves out for ``norm="none"`` as for batch norm.
  """
  prefix: str
  path: tuple[str, ...]
  kind: str          # "conv", "convT" or "norm"
  bias: bool = True
  norm_bias: bool = False


# ----------------------------------------------------------------------------- architecture tables


def _resnet_layers(n_blocks: int, norm: str, use_dropout: bool) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("model.1", ("stem_conv",), "conv", b, True)
  yield Layer("model.2", ("stem_norm",), "norm")
  for i, (c, n) in enumerate(((4, 5), (7, 8))):
    yield Layer(f"model.{c}", (f"down_{i}_conv",), "conv", b, True)
    yield Layer(f"model.{n}", (f"down_{i}_norm",), "norm")
  idx = (1, 2, 6, 7) if use_dropout else (1, 2, 5, 6)
  for i in range(n_blocks):
    base, blk = f"model.{10 + i}.conv_block", f"block_{i}"
    yield Layer(f"{base}.{idx[0]}", (blk, "conv_0"), "conv", b, True)
    yield Layer(f"{base}.{idx[1]}", (blk, "norm_0"), "norm")
    yield Layer(f"{base}.{idx[2]}", (blk, "conv_1"), "conv", b, True)
    yield Layer(f"{base}.{idx[3]}", (blk, "norm_1"), "norm")
  for i in range(2):
    yield Layer(f"model.{10 + n_blocks + 3 * i}", (f"up_{i}_conv",), "convT", b, True)
    yield Layer(f"model.{11 + n_blocks + 3 * i}", (f"up_{i}_norm",), "norm")
  yield Layer(f"model.{17 + n_blocks}", ("head_conv",), "conv", True)


def _unet_layers(num_downs: int, norm: str) -> Iterator[Layer]:
  b = norm != "batch"
  prefix, path = "model.model", ("level_0",)
  yield Layer(f"{prefix}.0", path + ("down", "conv"), "conv", b, True)
  yield Layer(f"{prefix}.3", path + ("up", "conv"), "convT", True)
  prefix = f"{prefix}.1.model"
  for level in range(1, num_downs):
    path = path + (f"level_{level}",)
    yield Layer(f"{prefix}.1", path + ("down", "conv"), "conv", b, True)
    if level == num_downs - 1:  # innermost: no down norm, no child
      yield Layer(f"{prefix}.3", path + ("up", "conv"), "convT", b, True)
      yield Layer(f"{prefix}.4", path + ("up", "norm"), "norm")
    else:
      yield Layer(f"{prefix}.2", path + ("down", "norm"), "norm")
      yield Layer(f"{prefix}.5", path + ("up", "conv"), "convT", b, True)
      yield Layer(f"{prefix}.6", path + ("up", "norm"), "norm")
      prefix = f"{prefix}.3.model"


def _nlayer_layers(n_layers: int, norm: str) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("model.0", ("conv_0",), "conv", True)
  for i in range(1, n_layers + 1):
    yield Layer(f"model.{3 * i - 1}", (f"conv_{i}",), "conv", b, True)
    yield Layer(f"model.{3 * i}", (f"norm_{i}",), "norm")
  yield Layer(f"model.{3 * n_layers + 2}", (f"conv_{n_layers + 1}",), "conv", True)


def _pixel_layers(norm: str) -> Iterator[Layer]:
  b = norm != "batch"
  yield Layer("net.0", ("conv_0",), "conv", True)
  yield Layer("net.2", ("conv_1",), "conv", b, True)
  yield Layer("net.3", ("norm_1",), "norm")
  yield Layer("net.5", ("conv_2",), "conv", b, True)


def reference_layers(*, kind: str, net: str, norm: str, n_layers_D: int = 3,
                     use_dropout: bool = False) -> list[Layer]:
  """The reference layers of one network, in order, with their Flax module paths."""
  if kind not in KINDS:
    raise ValueError(f"kind must be 'G' or 'D', got {kind!r}")
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
  if kind == "G":
    try:
      family, n = parse_netG(net)
    except ValueError:
      raise ValueError(f"net={net!r} is not a generator: use resnet_9blocks, resnet_6blocks (resnet_<n>blocks), "
                       "unet_256, unet_128 or unet_<N> (N a power of two >= 32)") from None
    if family == "resnet":
      return list(_resnet_layers(n, norm, use_dropout))
    return list(_unet_layers(n, norm))
  if net == "pixel":
    return list(_pixel_layers(norm))
  if net in ("basic", "n_layers"):
    n_layers = 3 if net == "basic" else int(n_layers_D)
    if n_layers < 1:
      raise ValueError(f"n_layers_D must be >= 1, got {n_layers_D}")
    return list(_nlayer_layers(n_layers, norm))
  raise ValueError(f"net={net!r} is not a discriminator: use basic, n_layers or pixel")


# ----------------------------------------------------------------------------- torch -> flax


def _to_numpy(value: Any, key: str) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor; torch is not imported here
    value = value.detach().cpu()
    if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
      value = value.float()
    value = value.numpy()
  try:
    return np.asarray(value)
  except Exception as e:  # pragma: no cover - exotic values
    raise ValueError(f"state_dict[{key!r}] is not an array ({type(value).__name__})") from e


def _strip_module_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
  """Drop the ``module.`` prefix that ``nn.DataParallel`` adds when every key has it."""
  keys = list(sd)
  if keys and all(k.startswith("module.") for k in keys):
    return {k[len("module."):]: v for k, v in sd.items()}
  return dict(sd)


def _infer_n_layers(sd: Mapping[str, Any]) -> int:
  idx = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
  if not idx or (max(idx) - 2) % 3:
    raise ValueError(f"cannot infer n_layers_D from the state_dict keys {sorted(sd)[:8]}...; pass n_layers_D")
  return (max(idx) - 2) // 3


def _infer_resnet_dropout(sd: Mapping[str, Any]) -> bool:
  """Dropout shifts the second conv of each residual block from index 5 to 6."""
  w6 = sd.get("model.10.conv_block.6.weight")
  return "model.10.conv_block.5.weight" not in sd and w6 is not None and np.ndim(w6) == 4


def _set(tree: dict, path: tuple[str, ...], leaf: str, value: np.ndarray) -> None:
  for p in path:
    tree = tree.setdefault(p, {})
  tree[leaf] = value


def _expected_keys(layers: list[Layer], norm: str) -> dict[str, tuple[Layer, str, str, str]]:
  """torch key -> (layer, collection, flax leaf, torch param name)."""
  out = {}
  for layer in layers:
    if layer.kind in ("conv", "convT"):
      out[f"{layer.prefix}.weight"] = (layer, "params", "kernel", "weight")
      if layer.bias:
        out[f"{layer.prefix}.bias"] = (layer, "params", "bias", "bias")
    elif norm == "batch":
      out[f"{layer.prefix}.weight"] = (layer, "params", "scale", "weight")
      out[f"{layer.prefix}.bias"] = (layer, "params", "bias", "bias")
      out[f"{layer.prefix}.running_mean"] = (layer, "batch_stats", "mean", "running_mean")
      out[f"{layer.prefix}.running_var"] = (layer, "batch_stats", "var", "running_var")
  return out


def _ignorable(key: str, layers: list[Layer], norm: str) -> bool:
  prefix, _, name = key.rpartition(".")
  norm_prefixes = {l.prefix for l in layers if l.kind == "norm"}
  if prefix not in norm_prefixes:
    return False
  return name in (_BN_IGNORED if norm == "batch" else _LEGACY_INSTANCE if norm == "instance" else ())


def _describe(kind: str, net: str, norm: str) -> str:
  return f"kind={kind!r}, net={net!r}, norm={norm!r}"


def _flax_module(kind: str, net: str, norm: str, n_layers_D: int, use_dropout: bool,
                 sd: Mapping[str, np.ndarray], layers: list[Layer]):
  """define_G/define_D for the channel counts stored in the weights, and a sample input shape."""
  first = sd[f"{layers[0].prefix}.weight"]
  width, in_nc = int(first.shape[0]), int(first.shape[1])
  if kind == "G":
    if net.startswith("resnet_"):  # the 7x7 head conv (out, in, kh, kw)
      out_nc = int(sd[f"{layers[-1].prefix}.weight"].shape[0])
    else:  # the outermost ConvTranspose2d (in, out, kh, kw), second in the table
      out_nc = int(sd[f"{layers[1].prefix}.weight"].shape[1])
    module = models.define_G(in_nc, out_nc, width, net, norm=norm, use_dropout=use_dropout)
    size = models.generator_stride(net) * 2
  else:
    module = models.define_D(in_nc, width, net, n_layers_D=n_layers_D, norm=norm)
    size = 3 * 2 ** (3 if net == "basic" else n_layers_D) if net != "pixel" else 4
  return module, (1, size, size, in_nc)


def _expected_shapes(module, input_shape) -> dict:
  x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
  return jax.eval_shape(lambda: module.init(rngs, jnp.zeros(x.shape, x.dtype), train=False))


def _paths(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_paths(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


class KeyMatch(NamedTuple):
  """How a state_dict's keys compare with one reference network (see :func:`match_keys`)."""
  layers: list
  expected: dict           # torch key -> (layer, collection, flax leaf, torch name), the keys to read
  missing: list            # expected keys the state_dict lacks
  unexpected: list         # keys of the state_dict that the network does not have (ignorable ones excluded)
  zero_bias: list          # norm="none": the reference's omitted biases, to be filled with zeros

  @property
  def ok(self) -> bool:
    return not self.missing and not self.unexpected


def match_keys(sd: Mapping[str, Any], *, kind: str, net: str, norm: str, n_layers_D: int = 3,
               use_dropout: bool = False) -> KeyMatch:
  """Compare the keys of ``sd`` (``module.`` prefix already stripped) with one reference network.

  With ``norm="none"`` the convs that feed a norm layer may all lack their bias (the
  reference's ``use_bias`` quirk): those keys are then listed in ``zero_bias``, not ``missing``.
  """
  layers = reference_layers(kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout)
  expected = _expected_keys(layers, norm)
  zero_bias = []
  if norm == "none":
    quirk = [f"{l.prefix}.bias" for l in layers if l.norm_bias]
    if quirk and not any(k in sd for k in quirk):
      zero_bias = quirk
      expected = {k: v for k, v in expected.items() if k not in quirk}
  missing = [k for k in expected if k not in sd]
  unexpected = [k for k in sd if k not in expected and not _ignorable(k, layers, norm)]
  return KeyMatch(layers, expected, missing, unexpected, zero_bias)


def convert_state_dict(state_dict: Mapping[str, Any], *, kind: str, net: str, norm: str,
                       n_layers_D: int | None = None, use_dropout: bool | None = None) -> dict:
  """Reference ``state_dict`` -> ``{"params": ..., "batch_stats": ...}`` for ``jaxgan.models``.

  Args:
    state_dict: ``{key: array}`` with torch tensors or numpy arrays, the reference
      key names and layouts (a ``module.`` prefix from ``DataParallel`` is accepted).
    kind: ``"G"`` (generator) or ``"D"`` (discriminator).
    net: the reference ``netG`` (``resnet_9blocks``, ``resnet_6blocks``, ``unet_256``,
      ``unet_128``, ``unet_<N>``) or ``netD`` (``basic``, ``n_layers``, ``pixel``).
    norm: ``batch``, ``instance`` or ``none`` (as trained).
    n_layers_D: for ``net="n_layers"``; inferred from the keys when None.
    use_dropout: ResNet generators only (dropout shifts the layer indices of the
      residual blocks); inferred from the keys when None.

  Returns:
    float32 Flax variables; ``batch_stats`` is ``{}`` unless ``norm="batch"``.

  Raises:
    ValueError naming the missing / unexpected keys or the keys whose shapes do not fit.
  """
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"state_dict must be a mapping of parameter names to arrays, got {type(state_dict).__name__}")
  sd = _strip_module_prefix(state_dict)
  if kind == "D" and net == "n_layers" and n_layers_D is None:
    n_layers_D = _infer_n_layers(sd)
  n_layers_D = 3 if n_layers_D is None else int(n_layers_D)
  if use_dropout is None:
    use_dropout = kind == "G" and net.startswith("resnet_") and _infer_resnet_dropout(sd)
  m = match_keys(sd, kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout)
  layers, expected = m.layers, m.expected
  if not m.ok:
    raise ValueError(
        f"state_dict does not match the reference {_describe(kind, net, norm)}"
        f"{f', n_layers_D={n_layers_D}' if kind == 'D' else ''}"
        f"{f', use_dropout={use_dropout}' if kind == 'G' else ''}:\n"
        f"  missing keys ({len(m.missing)}): {m.missing}\n  unexpected keys ({len(m.unexpected)}): {m.unexpected}\n"
        "Check net / norm (and n_layers_D / use_dropout) against the options the checkpoint was trained with.")
  arrays = {k: _to_numpy(sd[k], k) for k in expected}
  bad_rank = [f"{k}: shape {arrays[k].shape}" for k, (layer, _, leaf, _) in expected.items()
              if arrays[k].ndim != (4 if leaf == "kernel" else 1)]
  if bad_rank:
    raise ValueError(f"state_dict entries with the wrong rank for {_describe(kind, net, norm)}: {bad_rank}")

  variables: dict = {"params": {}, "batch_stats": {}}
  for key, (layer, collection, leaf, _) in expected.items():
    a = arrays[key].astype(np.float32)
    if leaf == "kernel":
      a = a.transpose(2, 3, 1, 0) if layer.kind == "conv" else a.transpose(2, 3, 0, 1)
    _set(variables[collection], layer.path, leaf, a)
  by_prefix = {l.prefix: l for l in layers}
  for key in m.zero_bias:   # the reference's norm="none" convs: no bias is a zero bias
    layer = by_prefix[key.rpartition(".")[0]]
    kernel = arrays[f"{layer.prefix}.weight"]
    _set(variables["params"], layer.path, "bias", np.zeros(kernel.shape[0 if layer.kind == "conv" else 1],
                                                            np.float32))

  module, input_shape = _flax_module(kind, net, norm, n_layers_D, use_dropout, arrays, layers)
  want = _expected_shapes(module, input_shape)
  back = {(collection,) + layer.path + (leaf,): key for key, (layer, collection, leaf, _) in expected.items()}
  back.update({("params",) + by_prefix[k.rpartition(".")[0]].path + ("bias",): k for k in m.zero_bias})
  shapes = {k: a.shape for k, a in arrays.items()}
  shapes.update({k: "(absent: zeros)" for k in m.zero_bias})
  got_paths = {("params",) + p: v for p, v in _paths(variables["params"]).items()}
  got_paths.update({("batch_stats",) + p: v for p, v in _paths(variables["batch_stats"]).items()})
  want_paths = {("params",) + p: v for p, v in _paths(want.get("params", {})).items()}
  want_paths.update({("batch_stats",) + p: v for p, v in _paths(want.get("batch_stats", {})).items()})
  if set(got_paths) != set(want_paths):  # a naming drift between this table and jaxgan.models
    raise ValueError(
        f"internal: the conversion table does not cover jaxgan.models for {_describe(kind, net, norm)}: "
        f"flax leaves not produced: {sorted('/'.join(p) for p in set(want_paths) - set(got_paths))}; "
        f"produced but unknown: {sorted('/'.join(p) for p in set(got_paths) - set(want_paths))}")
  mismatched = [f"{back[p]}: torch shape {shapes[back[p]]} -> {tuple(v.shape)}, "
                f"expected {tuple(want_paths[p].shape)} at {'/'.join(p)}"
                for p, v in got_paths.items() if tuple(v.shape) != tuple(want_paths[p].shape)]
  if mismatched:
    raise ValueError(f"state_dict shapes do not fit {_describe(kind, net, norm)} with the channel counts of its "
                     f"first/last layers ({input_shape[-1]} input channels):\n  " + "\n  ".join(mismatched))
  return jax.tree_util.tree_map(jnp.asarray, variables)


# ----------------------------------------------------------------------------- flax -> torch


def to_state_dict(variables: Mapping[str, Any], *, kind: str, net: str, norm: str, n_layers_D: int = 3,
                  use_dropout: bool = False) -> dict[str, np.ndarray]:
  """Flax variables of ``jaxgan.models`` -> reference ``state_dict`` of float32 numpy arrays.

  Keys in the order the reference's ``net.state_dict()`` lists them; ``num_batches_tracked``
  (batch norm) is written as 0 (int64, 0-d). Load into torch with
  ``net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
  """
  params = variables.get("params", {})
  stats = variables.get("batch_stats", {}) or {}
  layers = reference_layers(kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout)
  trees = {"params": params, "batch_stats": stats}
  out: dict[str, np.ndarray] = {}
  for key, (layer, collection, leaf, _) in _expected_keys(layers, norm).items():
    node = trees[collection]
    try:
      for p in layer.path + (leaf,):
        node = node[p]
    except (KeyError, TypeError) as e:
      raise ValueError(f"variables have no {collection}/{'/'.join(layer.path + (leaf,))} (for torch key {key}); "
                       f"do they belong to {_describe(kind, net, norm)}?") from e
    a = np.array(node, dtype=np.float32)  # a writable copy
    if leaf == "kernel":
      a = a.transpose(3, 2, 0, 1) if layer.kind == "conv" else a.transpose(2, 3, 0, 1)
    out[key] = np.ascontiguousarray(a)
    if leaf == "var":
      out[f"{layer.prefix}.num_batches_tracked"] = np.zeros((), np.int64)
  return {k: out[k] for k in sorted(out, key=_torch_order)}


_PARAM_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def _torch_order(key: str) -> tuple:
  """Sort key giving a torch ``state_dict``'s order: modules in registration order (their Sequential
  indices, numerically), then weight, bias, running_mean, running_var, num_batches_tracked."""
  prefix, _, name = key.rpartition(".")
  parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prefix.split("."))
  return parts, _PARAM_ORDER.get(name, len(_PARAM_ORDER)), name
