"""Import (and export) the reference PyTorch project's network weights.

The reference pix2pix/CycleGAN code saves each network as a ``state_dict``
(``latest_net_G.pth``, ``latest_net_G_A.pth``, ...). :func:`convert_state_dict`
maps such a dict -- numpy arrays or torch tensors, with the reference key names
and layouts -- onto the Flax variables of :mod:`jaxgan.models`, for every netG
(``resnet_<n>blocks``, ``unet_<N>``) and netD (``basic``, ``n_layers``, ``pixel``)
and every norm (``batch``, ``instance``, ``none``), and CUT's networks (taesungp/contrastive-unpaired-translation:
the anti-aliased ResNet generator and PatchGAN, whose fixed ``filt`` blur buffers are checked on import and
written on export, and the patch head ``F``, ``mlp_<i>.{0,2}`` Linear layers); the layouts are
:mod:`jaxgan.interop.layouts`:

* ``Conv2d.weight`` ``(out, in, kh, kw)``           -> ``kernel`` ``(kh, kw, in, out)``;
* ``Linear.weight`` ``(out, in)``                  -> ``kernel`` ``(in, out)``;
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
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgan import models

from jaxgan.interop.layouts import KINDS, Layer, blur_buffer, reference_layers  # noqa: F401  (re-exported)

_BN_IGNORED = ("num_batches_tracked",)
_LEGACY_INSTANCE = ("running_mean", "running_var", "num_batches_tracked")
_BLUR = ("blur_down", "blur_up")


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


def antialias_from_keys(sd: Mapping[str, Any]) -> tuple[bool, bool]:
  """``(no_antialias, no_antialias_up)`` as the authors' CUT options, read from the ``filt`` buffers:
  a ``[C, 1, 3, 3]`` one is a ``Downsample`` (anti-aliased down steps), a ``[C, 1, 4, 4]`` one an
  ``Upsample`` (anti-aliased up steps); a network without them is the plain layout (True, True)."""
  sizes = {int(np.shape(v)[-1]) for k, v in sd.items() if k.endswith(".filt") and np.ndim(v) == 4}
  return 3 not in sizes, 4 not in sizes


def _infer_n_layers(sd: Mapping[str, Any], no_antialias: bool = True) -> int:
  """A PatchGAN's depth from its head conv's index: ``3 n + 2`` (``4 n + 2`` anti-aliased)."""
  idx = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"model\.(\d+)\.weight", k))]
  step = 3 if no_antialias else 4
  if not idx or (max(idx) - 2) % step:
    raise ValueError(f"cannot infer n_layers_D from the state_dict keys {sorted(sd)[:8]}...; pass n_layers_D")
  return (max(idx) - 2) // step


def first_block(sd: Mapping[str, Any]) -> int | None:
  """The Sequential index of a ResNet generator's first residual block (10; 12 with CUT's
  anti-aliased down steps), None without blocks."""
  idx = [int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))]
  return min(idx) if idx else None


def _infer_resnet_dropout(sd: Mapping[str, Any]) -> bool:
  """Dropout shifts the second conv of each residual block from index 5 to 6."""
  b = first_block(sd)
  if b is None:
    return False
  w6 = sd.get(f"model.{b}.conv_block.6.weight")
  return f"model.{b}.conv_block.5.weight" not in sd and w6 is not None and np.ndim(w6) == 4


def _set(tree: dict, path: tuple[str, ...], leaf: str, value: np.ndarray) -> None:
  for p in path:
    tree = tree.setdefault(p, {})
  tree[leaf] = value


def _expected_keys(layers: list[Layer], norm: str) -> dict[str, tuple[Layer, str, str, str]]:
  """torch key -> (layer, collection, flax leaf, torch param name); a blur's ``filt`` is in ``const``."""
  out = {}
  for layer in layers:
    if layer.kind in ("conv", "convT", "linear"):
      out[f"{layer.prefix}.weight"] = (layer, "params", "kernel", "weight")
      if layer.bias:
        out[f"{layer.prefix}.bias"] = (layer, "params", "bias", "bias")
    elif layer.kind in _BLUR:
      out[f"{layer.prefix}.filt"] = (layer, "const", "filt", "filt")
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


def _describe(kind: str, net: str, norm: str, no_antialias: bool = True, no_antialias_up: bool = True) -> str:
  if kind == "F":
    return "kind='F' (CUT's patch head)"
  aa = "" if no_antialias and (no_antialias_up or kind == "D") else \
      f", no_antialias={no_antialias}" + (f", no_antialias_up={no_antialias_up}" if kind == "G" else "")
  return f"kind={kind!r}, net={net!r}, norm={norm!r}{aa}"


def _flax_module(kind: str, net: str, norm: str, n_layers_D: int, use_dropout: bool,
                 sd: Mapping[str, np.ndarray], layers: list[Layer], no_antialias: bool, no_antialias_up: bool):
  """define_G/define_D for the channel counts stored in the weights, and a sample input shape."""
  first = sd[f"{layers[0].prefix}.weight"]
  width, in_nc = int(first.shape[0]), int(first.shape[1])
  if kind == "G":
    if net.startswith("resnet_"):  # the 7x7 head conv (out, in, kh, kw)
      out_nc = int(sd[f"{layers[-1].prefix}.weight"].shape[0])
    else:  # the outermost ConvTranspose2d (in, out, kh, kw), second in the table
      out_nc = int(sd[f"{layers[1].prefix}.weight"].shape[1])
    module = models.define_G(in_nc, out_nc, width, net, norm=norm, use_dropout=use_dropout,
                             no_antialias=no_antialias, no_antialias_up=no_antialias_up)
    size = models.generator_stride(net) * 2
  else:
    module = models.define_D(in_nc, width, net, n_layers_D=n_layers_D, norm=norm, no_antialias=no_antialias)
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


def count_mlps(sd: Mapping[str, Any]) -> int:
  """The number of MLPs (NCE layers) of a CUT patch head ``F``: its ``mlp_<i>.*`` keys."""
  idx = {int(m.group(1)) for k in sd if (m := re.match(r"mlp_(\d+)\.", k))}
  return max(idx) + 1 if idx else 0


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


def match_keys(sd: Mapping[str, Any], *, kind: str, net: str = "", norm: str = "instance", n_layers_D: int = 3,
               use_dropout: bool = False, no_antialias: bool = True, no_antialias_up: bool = True,
               n_mlps: int = 0) -> KeyMatch:
  """Compare the keys of ``sd`` (``module.`` prefix already stripped) with one reference network.

  With ``norm="none"`` the convs that feed a norm layer may all lack their bias (the
  reference's ``use_bias`` quirk): those keys are then listed in ``zero_bias``, not ``missing``.
  """
  layers = reference_layers(kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout,
                            no_antialias=no_antialias, no_antialias_up=no_antialias_up, n_mlps=n_mlps)
  expected = _expected_keys(layers, norm)
  zero_bias = []
  if norm == "none" and kind != "F":
    quirk = [f"{l.prefix}.bias" for l in layers if l.norm_bias]
    if quirk and not any(k in sd for k in quirk):
      zero_bias = quirk
      expected = {k: v for k, v in expected.items() if k not in quirk}
  missing = [k for k in expected if k not in sd]
  unexpected = [k for k in sd if k not in expected and not _ignorable(k, layers, norm)]
  return KeyMatch(layers, expected, missing, unexpected, zero_bias)


def check_blur_buffers(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> None:
  """The ``filt`` buffers are the authors' fixed blurs (they are not learnt: jaxgan's blur is a constant);
  ValueError naming the first key that differs in shape or values."""
  for key, (layer, collection, _, _) in expected.items():
    if collection != "const":
      continue
    ref, axis = layer.channels
    got = arrays[key]
    channels = arrays[ref].shape[axis] if ref in arrays and arrays[ref].ndim == 4 else got.shape[0]
    want = blur_buffer(layer.kind, channels)
    if got.shape != want.shape or not np.allclose(got, want, rtol=0.0, atol=1e-6):
      what = {"blur_down": "Downsample: [1,2,1] x [1,2,1] / 16", "blur_up": "Upsample: [1,3,3,1] x [1,3,3,1] / 16"}
      seen = f"values {np.unique(np.round(got, 6))[:6].tolist()}" if got.shape == want.shape else f"shape {got.shape}"
      raise ValueError(f"state_dict[{key!r}] is not the authors' fixed blur filter ({what[layer.kind]} per channel, "
                       f"shape {want.shape}); got {seen}. jaxgan's blur is that constant: this file holds a "
                       "different network")


def _check_patch_head(arrays: Mapping[str, np.ndarray], layers: list[Layer]) -> None:
  """F: every ``mlp_<i>`` is Linear(C_i, nc), ReLU, Linear(nc, nc) with one ``nc``."""
  nc = arrays[f"{layers[0].prefix}.weight"].shape[0]
  bad = []
  for layer in layers:
    w, b = arrays[f"{layer.prefix}.weight"], arrays[f"{layer.prefix}.bias"]
    want_in = w.shape[1] if layer.prefix.endswith(".0") else nc
    if w.shape != (nc, want_in) or b.shape != (nc,):
      bad.append(f"{layer.prefix}.weight {w.shape} / .bias {b.shape} (expected ({nc}, {want_in}) / ({nc},))")
  if bad:
    raise ValueError(f"state_dict shapes do not fit CUT's patch head F (netF_nc={nc}): " + "; ".join(bad))


def convert_state_dict(state_dict: Mapping[str, Any], *, kind: str, net: str = "", norm: str = "instance",
                       n_layers_D: int | None = None, use_dropout: bool | None = None,
                       no_antialias: bool | None = None, no_antialias_up: bool | None = None) -> dict:
  """Reference ``state_dict`` -> ``{"params": ..., "batch_stats": ...}`` for ``jaxgan.models``.

  Args:
    state_dict: ``{key: array}`` with torch tensors or numpy arrays, the reference
      key names and layouts (a ``module.`` prefix from ``DataParallel`` is accepted).
    kind: ``"G"`` (generator), ``"D"`` (discriminator) or ``"F"`` (CUT's patch head; its
      ``{"params": {"mlp_<i>_fc_0": ..., ...}}`` as :class:`jaxgan.cut.PatchSampleF`).
    net: the reference ``netG`` (``resnet_9blocks``, ``resnet_6blocks``, ``unet_256``,
      ``unet_128``, ``unet_<N>``) or ``netD`` (``basic``, ``n_layers``, ``pixel``).
    norm: ``batch``, ``instance`` or ``none`` (as trained).
    n_layers_D: for ``net="n_layers"``; inferred from the keys when None.
    use_dropout: ResNet generators only (dropout shifts the layer indices of the
      residual blocks); inferred from the keys when None.
    no_antialias, no_antialias_up: CUT's options (False: anti-aliased down / up steps);
      inferred from the ``filt`` buffers when None. Each ``filt`` must be the fixed blur.

  Returns:
    float32 Flax variables; ``batch_stats`` is ``{}`` unless ``norm="batch"``.

  Raises:
    ValueError naming the missing / unexpected keys or the keys whose shapes do not fit.
  """
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"state_dict must be a mapping of parameter names to arrays, got {type(state_dict).__name__}")
  sd = _strip_module_prefix(state_dict)
  found_aa, found_aa_up = antialias_from_keys(sd)
  no_antialias = found_aa if no_antialias is None else bool(no_antialias)
  no_antialias_up = found_aa_up if no_antialias_up is None else bool(no_antialias_up)
  if kind == "D" and net == "n_layers" and n_layers_D is None:
    n_layers_D = _infer_n_layers(sd, no_antialias)
  n_layers_D = 3 if n_layers_D is None else int(n_layers_D)
  if use_dropout is None:
    use_dropout = kind == "G" and net.startswith("resnet_") and _infer_resnet_dropout(sd)
  n_mlps = count_mlps(sd) if kind == "F" else 0
  if kind == "F" and not n_mlps:
    raise ValueError(f"not CUT's patch head F: no mlp_<i>.* keys among {sorted(sd)[:8]}")
  m = match_keys(sd, kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout,
                 no_antialias=no_antialias, no_antialias_up=no_antialias_up, n_mlps=n_mlps)
  layers, expected = m.layers, m.expected
  described = _describe(kind, net, norm, no_antialias, no_antialias_up)
  if not m.ok:
    raise ValueError(
        f"state_dict does not match the reference {described}"
        f"{f', n_layers_D={n_layers_D}' if kind == 'D' else ''}"
        f"{f', use_dropout={use_dropout}' if kind == 'G' else ''}:\n"
        f"  missing keys ({len(m.missing)}): {m.missing}\n  unexpected keys ({len(m.unexpected)}): {m.unexpected}\n"
        "Check net / norm (and n_layers_D / use_dropout) against the options the checkpoint was trained with.")
  arrays = {k: _to_numpy(sd[k], k) for k in expected}
  rank = {"kernel": lambda l: 2 if l.kind == "linear" else 4, "filt": lambda l: 4}
  bad_rank = [f"{k}: shape {arrays[k].shape}" for k, (layer, _, leaf, _) in expected.items()
              if arrays[k].ndim != rank.get(leaf, lambda l: 1)(layer)]
  if bad_rank:
    raise ValueError(f"state_dict entries with the wrong rank for {described}: {bad_rank}")
  check_blur_buffers(arrays, expected)

  variables: dict = {"params": {}, "batch_stats": {}}
  for key, (layer, collection, leaf, _) in expected.items():
    if collection == "const":
      continue
    a = arrays[key].astype(np.float32)
    if leaf == "kernel":
      a = a.transpose({"conv": (2, 3, 1, 0), "convT": (2, 3, 0, 1), "linear": (1, 0)}[layer.kind])
    _set(variables[collection], layer.path, leaf, a)
  if kind == "F":
    _check_patch_head(arrays, layers)
    return jax.tree_util.tree_map(jnp.asarray, variables)
  by_prefix = {l.prefix: l for l in layers}
  for key in m.zero_bias:   # the reference's norm="none" convs: no bias is a zero bias
    layer = by_prefix[key.rpartition(".")[0]]
    kernel = arrays[f"{layer.prefix}.weight"]
    _set(variables["params"], layer.path, "bias", np.zeros(kernel.shape[0 if layer.kind == "conv" else 1],
                                                            np.float32))

  module, input_shape = _flax_module(kind, net, norm, n_layers_D, use_dropout, arrays, layers, no_antialias,
                                     no_antialias_up)
  want = _expected_shapes(module, input_shape)
  back = {(collection,) + layer.path + (leaf,): key for key, (layer, collection, leaf, _) in expected.items()
          if collection != "const"}
  back.update({("params",) + by_prefix[k.rpartition(".")[0]].path + ("bias",): k for k in m.zero_bias})
  shapes = {k: a.shape for k, a in arrays.items()}
  shapes.update({k: "(absent: zeros)" for k in m.zero_bias})
  got_paths = {("params",) + p: v for p, v in _paths(variables["params"]).items()}
  got_paths.update({("batch_stats",) + p: v for p, v in _paths(variables["batch_stats"]).items()})
  want_paths = {("params",) + p: v for p, v in _paths(want.get("params", {})).items()}
  want_paths.update({("batch_stats",) + p: v for p, v in _paths(want.get("batch_stats", {})).items()})
  if set(got_paths) != set(want_paths):  # a naming drift between this table and jaxgan.models
    raise ValueError(
        f"internal: the conversion table does not cover jaxgan.models for {described}: "
        f"flax leaves not produced: {sorted('/'.join(p) for p in set(want_paths) - set(got_paths))}; "
        f"produced but unknown: {sorted('/'.join(p) for p in set(got_paths) - set(want_paths))}")
  mismatched = [f"{back[p]}: torch shape {shapes[back[p]]} -> {tuple(v.shape)}, "
                f"expected {tuple(want_paths[p].shape)} at {'/'.join(p)}"
                for p, v in got_paths.items() if tuple(v.shape) != tuple(want_paths[p].shape)]
  if mismatched:
    raise ValueError(f"state_dict shapes do not fit {described} with the channel counts of its "
                     f"first/last layers ({input_shape[-1]} input channels):\n  " + "\n  ".join(mismatched))
  return jax.tree_util.tree_map(jnp.asarray, variables)


# ----------------------------------------------------------------------------- flax -> torch


def to_state_dict(variables: Mapping[str, Any], *, kind: str, net: str = "", norm: str = "instance",
                  n_layers_D: int = 3, use_dropout: bool = False, no_antialias: bool = True,
                  no_antialias_up: bool = True) -> dict[str, np.ndarray]:
  """Flax variables of ``jaxgan.models`` (or of CUT's patch head, ``kind="F"``) -> reference ``state_dict``
  of float32 numpy arrays.

  Keys in the order the reference's ``net.state_dict()`` lists them; ``num_batches_tracked``
  (batch norm) is written as 0 (int64, 0-d); the anti-aliased layouts' ``filt`` buffers as the
  authors' fixed blurs. Load into torch with
  ``net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})``.
  """
  params = variables.get("params", {})
  stats = variables.get("batch_stats", {}) or {}
  n_mlps = 0
  if kind == "F":
    n_mlps = len([k for k in params if re.fullmatch(r"mlp_\d+_fc_0", k)])
  layers = reference_layers(kind=kind, net=net, norm=norm, n_layers_D=n_layers_D, use_dropout=use_dropout,
                            no_antialias=no_antialias, no_antialias_up=no_antialias_up, n_mlps=n_mlps)
  trees = {"params": params, "batch_stats": stats}
  expected = _expected_keys(layers, norm)
  out: dict[str, np.ndarray] = {}
  for key, (layer, collection, leaf, _) in expected.items():
    if collection == "const":
      continue
    node = trees[collection]
    try:
      for p in layer.path + (leaf,):
        node = node[p]
    except (KeyError, TypeError) as e:
      raise ValueError(f"variables have no {collection}/{'/'.join(layer.path + (leaf,))} (for torch key {key}); "
                       f"do they belong to {_describe(kind, net, norm, no_antialias, no_antialias_up)}?") from e
    a = np.array(node, dtype=np.float32)  # a writable copy
    if leaf == "kernel":
      a = a.transpose({"conv": (3, 2, 0, 1), "convT": (2, 3, 0, 1), "linear": (1, 0)}[layer.kind])
    out[key] = np.ascontiguousarray(a)
    if leaf == "var":
      out[f"{layer.prefix}.num_batches_tracked"] = np.zeros((), np.int64)
  for key, (layer, collection, _, _) in expected.items():   # the blurs: sized by their neighbouring conv
    if collection == "const":
      ref, axis = layer.channels
      out[key] = blur_buffer(layer.kind, out[ref].shape[axis])
  if kind == "F":   # mlp_0, mlp_1, ... as registered (not sorted as strings)
    return {k: out[k] for k in expected}
  return {k: out[k] for k in sorted(out, key=_torch_order)}


_PARAM_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def _torch_order(key: str) -> tuple:
  """Sort key giving a torch ``state_dict``'s order: modules in registration order (their Sequential
  indices, numerically; names in the order given), then weight, bias, running_mean, running_var,
  num_batches_tracked."""
  prefix, _, name = key.rpartition(".")
  parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in prefix.split("."))
  return parts, _PARAM_ORDER.get(name, len(_PARAM_ORDER)), name
