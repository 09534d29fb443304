"""Export a workdir's networks for use elsewhere: the authors' ``.pth`` layout (and, via
:mod:`jaxgan.interop.onnx_export`, ONNX). What ``jaxgan export`` runs.

Owns reading a workdir for export (:func:`load_workdir`: the newest checkpoint with its meta),
choosing the networks (:func:`plan_pth`: driven by the objective registry's ``GENERATOR_FOR`` and
``IMPORT_SLOTS``, never by objective names), the generator weights ``translate`` uses
(:func:`generator_variables`: the EMA when the state keeps one) and writing ``.pth`` files
(:func:`export_pth`).

``.pth`` files: one plain ``state_dict`` per network (``torch.save(net.state_dict())`` as the
authors' ``save_networks`` writes them), named ``latest_net_<role>.pth`` with the reference's
roles (``G`` for pix2pix; ``G_A`` / ``G_B`` / ``D_A`` / ``D_B`` for CycleGAN; ``G``, ``D`` and the
patch head ``F`` for CUT, in taesungp/contrastive-unpaired-translation's layout with the anti-aliased
layers' fixed ``filt`` buffers), float32 tensors under the authors' keys
(:func:`jaxgan.interop.pytorch.to_state_dict`), so their networks for the config's netG / netD / norm /
dropout (/ no_antialias, no_antialias_up) load them with ``strict=True`` (CUT's ``F`` once its MLPs
exist, as their ``data_dependent_initialize`` makes them before loading). BatchNorm's
``num_batches_tracked`` is written as 0 (jaxgan does not count; the authors' BatchNorm, with a
momentum, never reads it).

Every target is checked before anything is written (existing files are refused unless
``overwrite``), and each file appears only complete (written beside it, then renamed).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from jaxgan import objectives   # jaxgan.checkpoint (orbax) is imported where used: the CLI parser imports this

FORMATS = ("pth", "onnx")
DISCRIMINATOR_CHOICES = ("auto", "yes", "no")


class ExportError(ValueError):
  """A request that cannot be exported (one line naming the option, file or workdir at fault)."""


@dataclasses.dataclass
class Loaded:
  """A workdir read for export: its state, config, checkpoint step and meta."""
  workdir: Path
  state: Any
  config: ml_collections.ConfigDict
  step: int
  meta: dict

  @property
  def objective(self):
    return objectives.for_config(self.config)

  @property
  def translate_only(self) -> str | None:
    """Why the workdir has no trained discriminators (an import of generators only), else None."""
    from jaxgan import checkpoint  # pylint: disable=import-outside-toplevel
    return self.meta.get(checkpoint.TRANSLATE_ONLY_KEY) or None


@dataclasses.dataclass(frozen=True)
class Network:
  """One network to export: its state slot, the reference's role and kind, the file name."""
  slot: str
  role: str
  kind: str          # "G", "D" or "F" (CUT's patch head)
  direction: str | None   # the direction a generator translates (None for a discriminator)

  @property
  def filename(self) -> str:
    return f"latest_net_{self.role}.pth"


def load_workdir(workdir: str | os.PathLike) -> Loaded:
  """The newest readable checkpoint of ``workdir`` with its meta; ExportError when there is none."""
  from jaxgan import checkpoint, parallel  # pylint: disable=import-outside-toplevel
  path = Path(workdir)
  if not path.is_dir():
    raise ExportError(f"--workdir {path} " + ("is a file, not a training run's folder" if path.exists()
                                               else "does not exist"))
  if not checkpoint.list_steps(path):
    raise ExportError(f"--workdir {path} holds no checkpoint (train first, or jaxgan import-torch); "
                      "nothing was written")
  rep = parallel.replicated_sharding(parallel.make_mesh())
  ckpt = checkpoint.Checkpointer(path, read_only=True)
  try:
    step, state, meta = ckpt.restore_newest(None, lambda m: checkpoint.abstract_state_for(m, rep))
  except checkpoint.CheckpointError as e:
    raise ExportError(f"--workdir {path}: {e}; nothing was written") from e
  finally:
    ckpt.close()
  return Loaded(path, state, ml_collections.ConfigDict(meta["config"]), int(step), dict(meta))


def directions_for(objective, direction: str | None) -> tuple[str, ...]:
  """The directions to export: ``direction`` (checked against the objective's) or all of them."""
  known = tuple(objective.DIRECTIONS)
  if direction is None:
    return known
  if direction not in known:
    raise ExportError(f"--direction {direction}: a {objective.__name__.rsplit('.', 1)[-1]} model translates "
                      f"{' or '.join(known)} only")
  return (direction,)


def plan_pth(loaded: Loaded, *, direction: str | None = None, discriminators: str = "auto") -> list[Network]:
  """The networks to write: the generators of the chosen directions, then the discriminators.

  ``discriminators``: ``auto`` writes them when the workdir has trained ones and no
  ``direction`` narrows the export; ``yes`` requires them (refused for a translate-only
  import); ``no`` writes generators only.
  """
  if discriminators not in DISCRIMINATOR_CHOICES:
    raise ExportError(f"--discriminators must be one of {', '.join(DISCRIMINATOR_CHOICES)}, got {discriminators!r}")
  objective = loaded.objective
  slots = getattr(objective, "IMPORT_SLOTS", None)
  if not slots:
    raise ExportError(f"model {loaded.config.model} has no reference .pth layout (its module has no IMPORT_SLOTS)")
  role_of = {slot: role for role, slot in slots.items()}
  gen_for = dict(objective.GENERATOR_FOR)
  nets = []
  for d in directions_for(objective, direction):
    slot = gen_for[d]
    if slot not in role_of:
      raise ExportError(f"model {loaded.config.model}: generator {slot} has no reference role in IMPORT_SLOTS")
    nets.append(Network(slot, role_of[slot], "G", d))
  disc = [Network(slot, role, "F" if role == "F" else "D", None) for role, slot in slots.items()
          if slot not in gen_for.values()]   # the discriminators (and CUT's patch head F, trained with them)
  if discriminators == "yes" and loaded.translate_only:
    raise ExportError(f"--discriminators yes: {loaded.workdir} has no trained discriminators ({loaded.translate_only}); "
                      "export its generators (--discriminators auto or no); nothing was written")
  if discriminators == "yes" or (discriminators == "auto" and direction is None and not loaded.translate_only):
    nets.extend(disc)
  return nets


def generator_variables(loaded: Loaded, slot: str) -> dict:
  """``{"params", "batch_stats"}`` of generator ``slot`` as ``translate`` uses them (the EMA weights when
  the state keeps them)."""
  state = loaded.state
  ema = getattr(state, "ema", None) or {}
  params = ema[slot] if slot in ema else state.params[slot]
  return {"params": params, "batch_stats": state.batch_stats.get(slot, {}) or {}}


def network_state_dict(loaded: Loaded, net: Network) -> dict[str, np.ndarray]:
  """The authors' ``state_dict`` (numpy) of one network of ``loaded``."""
  from jaxgan.interop import pytorch  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  c = loaded.config
  no_aa = bool(c.get("no_antialias", True))
  if net.kind == "F":
    return pytorch.to_state_dict(jax.device_get({"params": loaded.state.params[net.slot]}), kind="F")
  if net.kind == "G":
    variables = generator_variables(loaded, net.slot)
    opts = dict(net=str(c.netG), use_dropout=not bool(c.no_dropout), no_antialias=no_aa,
                no_antialias_up=bool(c.get("no_antialias_up", True)))
  else:
    variables = {"params": loaded.state.params[net.slot], "batch_stats": loaded.state.batch_stats.get(net.slot, {})}
    opts = dict(net=str(c.netD), n_layers_D=int(c.n_layers_D), no_antialias=no_aa)
  variables = jax.device_get(variables)
  sd = pytorch.to_state_dict(variables, kind=net.kind, norm=str(c.norm), **opts)
  if str(c.norm) == "none":   # the authors' norm='none' convs that would feed a norm have no bias
    layers = pytorch.reference_layers(kind=net.kind, norm="none", **opts)
    quirk = [f"{l.prefix}.bias" for l in layers if l.norm_bias and f"{l.prefix}.bias" in sd]
    nonzero = [k for k in quirk if np.any(sd[k])]
    if nonzero:
      raise ExportError(f"{net.role}: with norm='none' the authors' network has no bias at {nonzero[:3]}"
                        f"{'...' if len(nonzero) > 3 else ''} but this model's are not zero; it cannot be loaded "
                        "by their code (nothing was written)")
    for k in quirk:
      del sd[k]
  return sd


def check_targets(targets: Sequence[Path], *, overwrite: bool) -> None:
  """Refuse targets that exist (unless ``overwrite``) or are folders; nothing is written."""
  for t in targets:
    if t.is_dir():
      raise ExportError(f"{t} is a folder; nothing was written")
  existing = [t for t in targets if t.exists()]
  if existing and not overwrite:
    raise ExportError(f"{existing[0]} already exists{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}"
                      "; pass --overwrite to replace, or choose another --output; nothing was written")


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
  """``write(tmp)`` beside ``target``, then rename it into place (no half-written file is ever visible)."""
  tmp = target.with_name(f".{target.name}.partial")
  try:
    write(tmp)
    os.replace(tmp, target)
  finally:
    if tmp.exists():
      tmp.unlink()


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("--format pth writes files with PyTorch, which is not installed: pip install torch "
                      "(the CPU build is enough; jaxgan's 'torch' extra); nothing was written") from e
  return torch


def pth_output_folder(output: str | os.PathLike) -> Path:
  out = Path(output)
  if out.exists() and not out.is_dir():
    raise ExportError(f"--output {out} is a file; --format pth writes a folder of latest_net_*.pth files "
                      "(the authors' checkpoints/NAME layout); nothing was written")
  return out


def export_pth(loaded: Loaded, output: str | os.PathLike, *, direction: str | None = None,
               discriminators: str = "auto", overwrite: bool = False) -> list[Path]:
  """Write ``OUTPUT/latest_net_<role>.pth`` for each network :func:`plan_pth` chooses; returns the paths."""
  out = pth_output_folder(output)
  nets = plan_pth(loaded, direction=direction, discriminators=discriminators)
  targets = [out / n.filename for n in nets]
  check_targets(targets, overwrite=overwrite)
  torch = _torch()
  dicts = [network_state_dict(loaded, n) for n in nets]   # every conversion before the first write
  out.mkdir(parents=True, exist_ok=True)
  for target, sd in zip(targets, dicts):
    tensors = {k: torch.from_numpy(np.array(v, order="C")) for k, v in sd.items()}   # 0-d stays 0-d
    write_atomic(target, lambda tmp, t=tensors: torch.save(t, os.fspath(tmp)))
  return targets


def describe_pth(loaded: Loaded, paths: Sequence[Path]) -> list[str]:
  """One line per file, with the authors' options that build the network it fits."""
  c = loaded.config
  cut = str(c.model) == "cut"   # the CUT repository's options: --normG / --normD, the anti-aliasing switches
  norm = f"--normG {c.norm}" if cut else f"--norm {c.norm}"
  aa = "".join(f" --{k}" for k in ("no_antialias", "no_antialias_up") if cut and c.get(k, True))
  g_opts = (f"{'--model cut ' if cut else ''}--netG {c.netG} --ngf {c.ngf} {norm}{' --no_dropout' if c.no_dropout else ''}"
            f"{aa} --input_nc {c.input_nc} --output_nc {c.output_nc}")
  d_opts = (f"--netD {c.get('netD', '?')} --ndf {c.get('ndf', '?')} --n_layers_D {c.get('n_layers_D', '?')}"
            f"{f' --normD {c.norm}' if cut else ''}")
  lines = []
  what = {"G": "generator", "D": "discriminator", "F": "patch head"}
  for p in paths:
    role = p.stem[len("latest_net_"):]
    lines.append(f"  {p}  ({what[role[0]]} {role})")
  with_d = any(p.stem[len("latest_net_"):].startswith("D") for p in paths)
  if any(p.stem == "latest_net_F" for p in paths):
    d_opts += f" --netF mlp_sample --netF_nc {c.get('netF_nc', '?')}"
  lines.append(f"  authors' options: {g_opts}{' ' + d_opts if with_d else ''}")
  return lines


def config_metadata(loaded: Loaded) -> Mapping[str, str]:
  """What an exported file records: jaxgan version, objective, checkpoint step, config JSON."""
  import json  # pylint: disable=import-outside-toplevel
  import jaxgan  # pylint: disable=import-outside-toplevel
  return {"jaxgan_version": str(jaxgan.__version__), "objective": str(loaded.config.model),
          "checkpoint_step": str(loaded.step), "config": json.dumps(loaded.config.to_dict(), sort_keys=True,
                                                                    default=str)}
