"""Recognising the reference network in a state_dict, and a file's role from its name.

:func:`detect` reads, from the keys and shapes alone, what the reference's options
were when the network was saved: ``netG`` (``resnet_<n>blocks``, ``unet_<N>``) or
``netD`` (``basic``, ``n_layers`` with its ``n_layers_D``, ``pixel``), ``norm``,
ResNet dropout (it shifts the residual blocks' layer indices: the reference's
``conv_block.5`` vs ``.6``), the channel counts and ``ngf`` / ``ndf``, and CUT's
``no_antialias`` / ``no_antialias_up`` (the anti-aliased layouts hold ``filt`` buffers:
``[C, 1, 3, 3]`` for a ``Downsample``, ``[C, 1, 4, 4]`` for an ``Upsample``; a CUT network
trained with both options set has the plain pix2pix/CycleGAN layout), or CUT's patch head
``F`` (``mlp_<i>.*``). It then
converts the weights (:func:`jaxgan.interop.pytorch.convert_state_dict`), which
checks every shape, so a damaged file fails with an error naming its keys.

What the weights cannot tell:

* U-Net dropout has no parameters: ``use_dropout`` is None unless given;
* instance norm and ``norm="none"`` with conv biases look the same; the reference
  never writes the latter (with ``none`` its convs have no bias), so it reads as
  instance norm unless ``norm="none"`` is given.

:func:`role_from_filename` maps the reference's file names (``latest_net_G.pth``,
``200_net_G_A.pth``, ``latest_net_D_B.pth``, ...) to the network's role.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

from jaxgan.config import NORMS
from jaxgan.interop import pytorch

ROLES = ("G", "D", "F", "G_A", "G_B", "D_A", "D_B")
_ROLE_RE = re.compile(r"(?:^|_)net_([GDF])(?:_([AB]))?\.pth$")
_RESNET_BLOCK = re.compile(r"model\.(\d+)\.conv_block\.")


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """What a reference state_dict holds.

  ``kind``: ``"G"``, ``"D"`` or ``"F"`` (CUT's patch head: ``net`` ``mlp_sample``, ``width`` its
  ``netF_nc``, ``input_nc`` its MLP count); ``net``: the reference ``netG`` / ``netD`` name;
  ``output_nc`` is 1 for a discriminator; ``width`` is ``ngf`` / ``ndf``;
  ``use_dropout`` is None where the weights do not record it (U-Net); ``no_antialias`` /
  ``no_antialias_up``: CUT's options (False: anti-aliased down / up steps); ``notes``:
  choices made where the weights were not conclusive.
  """
  kind: str
  net: str
  norm: str
  input_nc: int
  output_nc: int
  width: int
  n_layers_D: int = 3
  use_dropout: bool | None = None
  notes: tuple[str, ...] = ()
  no_antialias: bool = True
  no_antialias_up: bool = True

  @property
  def antialiased(self) -> bool:
    """Whether the network has CUT's anti-aliased layout (then only a CUT model can hold it)."""
    return not (self.no_antialias and self.no_antialias_up)

  def describe(self) -> str:
    if self.kind == "F":
      return f"CUT patch head F (mlp_sample), {self.input_nc} MLPs, netF_nc={self.width}"
    aa = ""
    if self.antialiased:
      down = "anti-aliased" if not self.no_antialias else "strided"
      up = "" if self.kind == "D" else f" / {'anti-aliased' if not self.no_antialias_up else 'transposed-conv'} up"
      aa = f", CUT {down} down{up}"
    if self.kind == "G":
      drop = {None: "dropout not recorded", True: "dropout", False: "no dropout"}[self.use_dropout]
      return (f"generator {self.net}, norm={self.norm}, {drop}, {self.input_nc}->{self.output_nc} channels, "
              f"ngf={self.width}{aa}")
    layers = f" (n_layers_D={self.n_layers_D})" if self.net == "n_layers" else ""
    return (f"discriminator {self.net}{layers}, norm={self.norm}, {self.input_nc} input channels, "
            f"ndf={self.width}{aa}")

  def to_json(self) -> dict:
    return dataclasses.asdict(self) | {"notes": list(self.notes)}


def role_from_filename(path: str | os.PathLike) -> str | None:
  """``G``, ``D``, ``G_A``, ``G_B``, ``D_A`` or ``D_B`` from a reference file name; None otherwise."""
  m = _ROLE_RE.search(os.path.basename(os.fspath(path)))
  if not m:
    return None
  return m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")


def _sample(keys, n: int = 8) -> str:
  keys = sorted(keys)
  return ", ".join(keys[:n]) + (f", ... ({len(keys)} keys)" if len(keys) > n else "")


def _architecture(sd: Mapping[str, Any]) -> tuple[str, str, int]:
  """``(kind, net, n_layers_D)`` from the key layout; ValueError for an unknown network."""
  keys = list(sd)
  if keys and all(k.startswith("mlp_") for k in keys):
    return "F", "mlp_sample", 3
  if "net.0.weight" in sd:
    return "D", "pixel", 3
  if "model.model.0.weight" in sd:
    inner = [k.count(".3.model") for k in keys if k.startswith("model.model.1.model.")]
    if not inner:
      raise ValueError(f"a U-Net generator's outermost layer (model.model.0) without its inner blocks "
                       f"(model.model.1.model.*): keys {_sample(keys)}")
    return "G", f"unet_{2 ** (max(inner) + 2)}", 3
  blocks = sorted({int(m.group(1)) for k in keys if (m := _RESNET_BLOCK.match(k))})
  no_aa, _ = pytorch.antialias_from_keys(sd)
  if blocks:
    start = 10 if no_aa else 12   # CUT's anti-aliased down steps add a Downsample each
    if blocks != list(range(start, start + len(blocks))):
      raise ValueError(f"a ResNet generator's residual blocks must be model.{start} ... "
                       f"model.{start - 1 + len(blocks)}{'' if no_aa else ' (anti-aliased: filt buffers present)'}; "
                       f"found model.{blocks} (conv_block keys)")
    return "G", f"resnet_{len(blocks)}blocks", 3
  if "model.0.weight" in sd:
    n = pytorch._infer_n_layers(sd, no_aa)  # pylint: disable=protected-access
    return "D", ("basic" if n == 3 else "n_layers"), n
  raise ValueError(
      f"not a network of the reference project: keys {_sample(keys)}; expected a ResnetGenerator "
      "(model.1.weight, model.<i>.conv_block.*), a UnetGenerator (model.model.0.weight, ...), an "
      "NLayerDiscriminator (model.0.weight, ...), a PixelDiscriminator (net.0.weight, ...) or CUT's "
      "PatchSampleF (mlp_0.0.weight, ...)")


def detect(sd: Mapping[str, Any], *, norm: str | None = None, use_dropout: bool | None = None,
           kind: str | None = None) -> tuple[NetSpec, dict]:
  """Recognise and convert a reference state_dict (``module.`` prefix already stripped).

  Args:
    sd: ``{key: array}`` as :func:`jaxgan.interop.pth.read_state_dict` gives.
    norm: the norm, when known (otherwise detected; see the module docstring).
    use_dropout: generators only; for ResNets it must agree with the weights, for
      U-Nets it is recorded as given (None: unknown).
    kind: ``"G"``, ``"D"`` or ``"F"`` when the role requires one; a mismatch is an error.

  Returns:
    ``(spec, variables)``: the :class:`NetSpec` and the Flax variables.

  Raises:
    ValueError naming the keys at fault (unknown layout, missing / unexpected keys,
    wrong shapes, a norm or dropout that contradicts the weights).
  """
  if norm is not None and norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
  got_kind, net, n_layers = _architecture(sd)
  want = {"G": "a generator", "D": "a discriminator", "F": "CUT's patch head F"}
  if kind is not None and kind != got_kind:
    raise ValueError(f"expected {want[kind]} but the keys are those of {want[got_kind]} ({net}): "
                     f"keys {_sample(sd)}")
  if got_kind == "F":
    variables = pytorch.convert_state_dict(sd, kind="F")
    first = sd["mlp_0.0.weight"]                     # Linear (nc, C_0)
    spec = NetSpec(kind="F", net=net, norm=norm or "instance", input_nc=pytorch.count_mlps(sd), output_nc=0,
                   width=int(first.shape[0]))
    return spec, variables
  no_aa, no_aa_up = pytorch.antialias_from_keys(sd)
  aa = dict(no_antialias=no_aa, no_antialias_up=no_aa_up)
  is_resnet = net.startswith("resnet_")
  dropouts = ([use_dropout] if use_dropout is not None else [False, True]) if is_resnet else [False]
  candidates = []
  for n in ([norm] if norm else list(NORMS)):
    for d in dropouts:
      m = pytorch.match_keys(sd, kind=got_kind, net=net, norm=n, n_layers_D=n_layers, use_dropout=d, **aa)
      candidates.append((n, d, m))
  ok = [(n, d) for n, d, m in candidates if m.ok]
  if not ok:
    n, d, m = min(candidates, key=lambda c: len(c[2].missing) + len(c[2].unexpected))
    what = f"{net}, norm={n}" + (f", use_dropout={d}" if is_resnet else "")
    if not (no_aa and no_aa_up):
      what += f", no_antialias={no_aa}" + (f", no_antialias_up={no_aa_up}" if got_kind == "G" else "")
    raise ValueError(
        f"the keys do not fit any reference {net} (closest: {what}):\n"
        f"  missing keys ({len(m.missing)}): {m.missing[:12]}{' ...' if len(m.missing) > 12 else ''}\n"
        f"  unexpected keys ({len(m.unexpected)}): {m.unexpected[:12]}{' ...' if len(m.unexpected) > 12 else ''}")
  notes = []
  if len(ok) > 1:
    norms = {n for n, _ in ok}
    if norms == {"instance", "none"} and len(ok) == 2:   # the reference writes none without those biases
      ok = [c for c in ok if c[0] == "instance"]
    else:  # pragma: no cover - the tables make other overlaps impossible
      raise ValueError(f"ambiguous state_dict: it fits {net} with {ok}; pass norm / use_dropout")
  found_norm, found_dropout = ok[0]
  if is_resnet:
    spec_dropout: bool | None = found_dropout
  else:
    spec_dropout = use_dropout if got_kind == "G" else None
  variables = pytorch.convert_state_dict(sd, kind=got_kind, net=net, norm=found_norm, n_layers_D=n_layers,
                                         use_dropout=bool(found_dropout), **aa)
  layers = pytorch.reference_layers(kind=got_kind, net=net, norm=found_norm, n_layers_D=n_layers,
                                    use_dropout=bool(found_dropout), **aa)
  first = sd[f"{layers[0].prefix}.weight"]          # conv (out, in, kh, kw)
  if got_kind == "D":
    out_nc = 1
  elif is_resnet:                                    # the 7x7 head conv (out, in, kh, kw)
    out_nc = sd[f"{layers[-1].prefix}.weight"].shape[0]
  else:                                              # the outermost ConvTranspose2d (in, out, kh, kw)
    out_nc = sd[f"{layers[1].prefix}.weight"].shape[1]
  spec = NetSpec(kind=got_kind, net=net, norm=found_norm, input_nc=int(first.shape[1]), output_nc=int(out_nc),
                 width=int(first.shape[0]), n_layers_D=int(n_layers), use_dropout=spec_dropout, notes=tuple(notes),
                 no_antialias=no_aa, no_antialias_up=no_aa_up if got_kind == "G" else True)
  return spec, variables
