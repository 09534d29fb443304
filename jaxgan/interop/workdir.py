"""Reference ``.pth`` networks -> a normal jaxgan workdir (what ``jaxgan import-torch`` writes).

:func:`import_files` reads each file safely (:mod:`jaxgan.interop.pth`), recognises
its network (:mod:`jaxgan.interop.detect`) and role, decides what the set of
networks makes (:func:`plan_import`), and writes one checkpoint at step 0: a whole
train state whose networks are the imported ones, with fresh optimiser states
(the schedule position 0, as the reference's ``--continue_train``), fresh image
pools and PRNG key, and a meta whose config records the detected options and
whose ``imported`` entry records the files (path, SHA-256, role, what was detected).
``translate`` and ``evaluate`` then work unchanged, and ``train`` continues from it.

What the networks make (roles from the reference's file names, or given):

* ``G`` + ``D``: pix2pix, trainable;
* ``G_A`` + ``G_B`` + ``D_A`` + ``D_B``: CycleGAN, trainable;
* ``G_A`` + ``G_B``: CycleGAN for translate / evaluate (no discriminators: not trainable);
* CUT (taesungp/contrastive-unpaired-translation; chosen by ``model="cut"``, or by the networks:
  an anti-aliased layout, i.e. ``filt`` buffers, or an ``F`` file): ``G`` alone is a translate-only
  ``cut`` workdir (the authors' released CUT/FastCUT models), ``G`` + ``D`` + ``F`` a trainable one;
  ``config.no_antialias`` / ``no_antialias_up`` / ``netF_nc`` come from the weights;
* one generator (``G``, ``G_A`` or ``G_B``; the authors' released models): a
  translate-only workdir of the pix2pix kind, i.e. one generator that maps its
  input to its output (``translate --direction AtoB``); ``config.direction``
  records which side of a dataset it reads (``G_B``: ``BtoA``). Its discriminator
  is a placeholder of zeros, so the meta marks it ``translate_only`` and
  ``jaxgan train`` refuses it.

Nothing is written until every file has been read and checked; an existing
checkpoint is never replaced.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from jaxgan import checkpoint, objectives
from jaxgan import config as config_lib
from jaxgan.interop import detect, pth

IMPORT_FORMAT = 1


@dataclasses.dataclass
class ImportedNet:
  """One file's network: where it came from, its role, what it is, its Flax variables."""
  path: str
  role: str
  spec: detect.NetSpec
  variables: dict
  sha256: str


@dataclasses.dataclass
class ImportPlan:
  """What :func:`import_files` writes: the workdir's config and which network fills which state slot."""
  config: ml_collections.ConfigDict
  slots: dict[str, ImportedNet]        # pix2pix: G, D; cyclegan: G_AB, G_BA, D_A, D_B
  trained_as: str                      # the objective the files were trained with
  translate_only: str | None           # why it cannot be trained (None: it can)
  notes: list[str]

  @property
  def model(self) -> str:
    return str(self.config.model)


def read_network(path: str | os.PathLike, role: str | None = None, *, norm: str | None = None) -> ImportedNet:
  """Read, recognise and convert one ``.pth``; ``role`` from the file name when not given.

  Raises FileNotFoundError / ValueError naming the file and the keys at fault.
  """
  path = os.fspath(path)
  if role is not None and role not in detect.ROLES:
    raise ValueError(f"{path}: role {role!r} is not one of {', '.join(detect.ROLES)}")
  role = role or detect.role_from_filename(path)
  sd = pth.read_state_dict(path)
  try:
    spec, variables = detect.detect(sd, norm=norm, kind=role[0] if role else None)
  except ValueError as e:
    named = f" (role {role} from its name)" if role and detect.role_from_filename(path) == role else ""
    raise ValueError(f"{path}{named}: {e}") from e
  return ImportedNet(path=os.path.abspath(path), role=role or spec.kind, spec=spec, variables=variables,
                     sha256=pth.file_sha256(path))


def _fail(nets: Sequence[ImportedNet], message: str) -> ValueError:
  files = "; ".join(f"{n.role}: {n.path}" for n in nets)
  return ValueError(f"{message} (files: {files})")


def _same(nets: Sequence[ImportedNet], what: str, get) -> Any:
  values = {n.path: get(n) for n in nets}
  if len(set(values.values())) > 1:
    raise _fail(nets, f"the networks disagree on {what}: " + ", ".join(f"{p}: {v}" for p, v in values.items())
                + "; one jaxgan config has one value for it")
  return next(iter(values.values()))


def _slots(model: str, by_role: Mapping[str, ImportedNet]) -> dict[str, ImportedNet]:
  """The state slots of objective ``model`` filled from the networks by their reference roles (its
  ``IMPORT_SLOTS``: role -> slot, in the objective's order)."""
  return {slot: by_role[role] for role, slot in objectives.get(model).IMPORT_SLOTS.items() if role in by_role}


def plan_import(nets: Sequence[ImportedNet], *, model: str | None = None, direction: str | None = None,
                use_dropout: bool | None = None, base_config: ml_collections.ConfigDict | None = None,
                dataset: str | None = None) -> ImportPlan:
  """Decide the workdir's objective and config from the imported networks (see the module docstring).

  ``model``: the objective the files were trained with (``pix2pix`` / ``cyclegan``; from
  the roles when None). ``direction``: ``config.direction``. ``use_dropout``: for U-Net
  generators, whose weights do not record it (default: the objective's, pix2pix on,
  CycleGAN off). ``base_config``: a recipe whose other settings (data, schedule, loss
  weights) the workdir takes; the networks' options always come from the weights.
  """
  if model is not None and model not in objectives.importable():
    raise ValueError(f"--model must be one of {objectives.importable()} (the objectives with an import plan, "
                     f"IMPORT_SLOTS), got {model!r}")
  if direction is not None and direction not in ("AtoB", "BtoA"):
    raise ValueError(f"--direction must be AtoB or BtoA, got {direction!r}")
  by_role: dict[str, ImportedNet] = {}
  for n in nets:
    if n.role in by_role:
      raise _fail(nets, f"two files have the role {n.role}: {by_role[n.role].path} and {n.path}")
    by_role[n.role] = n
  roles = set(by_role)
  gens = [r for r in ("G", "G_A", "G_B") if r in roles]
  notes: list[str] = []
  translate_only = None
  cut_like = [n for n in nets if n.spec.antialiased or n.role == "F"]
  if cut_like and model not in (None, "cut"):
    raise _fail(nets, f"{cut_like[0].path} is a CUT network ({cut_like[0].spec.describe()}): a {model} model "
                      "cannot hold it; import it with --model cut")
  if model == "cut" or (model is None and cut_like):
    if not roles <= {"G", "D", "F"} or "G" not in roles or roles == {"G", "D"} or roles == {"G", "F"}:
      raise _fail(nets, f"roles {sorted(roles)}: a CUT import is the generator alone (latest_net_G.pth; translate "
                        "only) or a training run's latest_net_G.pth + latest_net_D.pth + latest_net_F.pth (trainable)")
    trained_as = workdir_model = "cut"
    slots = _slots(workdir_model, by_role)
    if roles == {"G"}:
      translate_only = ("it holds the generator (latest_net_G.pth) and no discriminator or patch head; to "
                        "fine-tune, import the run's latest_net_D.pth and latest_net_F.pth with it")
  elif roles in ({"G"}, {"G_A"}, {"G_B"}):
    role = gens[0]
    trained_as = model or ("cyclegan" if role != "G" else "pix2pix")
    workdir_model, slots = "pix2pix", {"G": by_role[role]}
    fixed = {"G_A": "AtoB", "G_B": "BtoA"}.get(role)
    if fixed and direction and direction != fixed:
      raise _fail(nets, f"--direction {direction} contradicts the file's role {role} (which maps "
                        f"{'A to B' if fixed == 'AtoB' else 'B to A'})")
    direction = direction or fixed
    translate_only = (f"it holds one generator ({role}) and no discriminator; to fine-tune, import the "
                      "networks of a training run: G + D (pix2pix) or G_A + G_B + D_A + D_B (CycleGAN)")
  elif roles == {"G", "D"}:
    if model == "cyclegan":
      raise _fail(nets, "a G + D pair is a pix2pix model; a CycleGAN run saves net_G_A, net_G_B, net_D_A, "
                        "net_D_B (name the roles with --roles)")
    trained_as = workdir_model = "pix2pix"
    slots = _slots(workdir_model, by_role)
  elif roles in ({"G_A", "G_B"}, {"G_A", "G_B", "D_A", "D_B"}):
    if model == "pix2pix":
      raise _fail(nets, "G_A / G_B files are a CycleGAN model (pix2pix saves net_G and net_D)")
    trained_as = workdir_model = "cyclegan"
    slots = _slots(workdir_model, by_role)
    if "D_A" not in roles:
      translate_only = ("it holds the two generators but no discriminators; import latest_net_D_A.pth and "
                        "latest_net_D_B.pth too to fine-tune")
  else:
    if not gens:
      raise _fail(nets, "no generator among the files: a workdir needs G (pix2pix), or G_A and G_B (CycleGAN)")
    if "G" in roles and roles & {"G_A", "G_B", "D_A", "D_B"} or "D" in roles and roles & {"G_A", "G_B"}:
      raise _fail(nets, f"the roles {sorted(roles)} mix a pix2pix model (G, D) with a CycleGAN one (G_A, G_B, "
                        "D_A, D_B)")
    if roles & {"G_A", "G_B"} and len(roles & {"G_A", "G_B"}) == 1:
      raise _fail(nets, f"a CycleGAN import needs both generators G_A and G_B (or just one of them for a "
                        f"translate-only workdir); got {sorted(roles)}")
    missing = sorted({"D_A", "D_B"} - roles) if roles & {"D_A", "D_B"} else []
    raise _fail(nets, f"roles {sorted(roles)}: " + (f"{', '.join(missing)} missing (a CycleGAN import takes both "
                      "discriminators or neither)" if missing else "not a model jaxgan can assemble"))

  gen_nets = [n for s, n in slots.items() if s.startswith("G")]
  disc_nets = [n for s, n in slots.items() if s.startswith("D")]
  all_nets = list(slots.values())
  norm = _same(gen_nets + disc_nets, "norm", lambda n: n.spec.norm)
  netG = _same(gen_nets, "netG", lambda n: n.spec.net)
  ngf = _same(gen_nets, "ngf", lambda n: n.spec.width)
  recorded = _same(gen_nets, "dropout", lambda n: n.spec.use_dropout)
  if recorded is not None and use_dropout is not None and recorded != use_dropout:
    raise _fail(gen_nets, f"{'--dropout' if use_dropout else '--no_dropout'} contradicts the weights: the "
                          f"residual blocks' layer indices say use_dropout={recorded}")
  if recorded is None:
    if use_dropout is None:
      use_dropout = not bool((base_config if base_config is not None else config_lib.get_base_config(trained_as)
                              ).no_dropout)
      notes.append(f"U-Net dropout is not recorded in the weights: assumed {'on' if use_dropout else 'off'} "
                   f"(the {'recipe' if base_config is not None else trained_as} default); pass "
                   f"{'--no_dropout' if use_dropout else '--dropout'} if it was trained otherwise")
    recorded = use_dropout
  g = slots["G"] if "G" in slots else slots["G_AB"]
  input_nc, output_nc = g.spec.input_nc, g.spec.output_nc
  if "G_BA" in slots and (slots["G_BA"].spec.input_nc, slots["G_BA"].spec.output_nc) != (output_nc, input_nc):
    raise _fail(all_nets, f"G_A maps {input_nc} -> {output_nc} channels but G_B maps "
                          f"{slots['G_BA'].spec.input_nc} -> {slots['G_BA'].spec.output_nc}; G_B must map back")
  cut = workdir_model == "cut"
  want_d = {"D": output_nc if cut else input_nc + output_nc, "D_A": output_nc, "D_B": input_nc}
  for s in ("D", "D_A", "D_B"):
    if s in slots and slots[s].spec.input_nc != want_d[s]:
      why = {"D": "CUT's D judges output images" if cut else "pix2pix's D sees input and output together",
             "D_A": "D_A judges B images", "D_B": "D_B judges A images"}[s]
      raise _fail(all_nets, f"{slots[s].path}: the discriminator takes {slots[s].spec.input_nc} channels, "
                            f"expected {want_d[s]} ({why}, with generators of {input_nc} -> {output_nc} channels)")

  if base_config is not None:
    config = ml_collections.ConfigDict(base_config.to_dict())
  else:
    config = config_lib.get_base_config(workdir_model)
  if str(config.model) != workdir_model:
    if translate_only and workdir_model == "pix2pix":
      notes.append(f"the recipe is a {config.model} one; a single generator is written as a pix2pix-kind "
                   "translate-only workdir")
    else:
      raise _fail(all_nets, f"the --config recipe is for {config.model} but the files make a {workdir_model} model")
    config = config_lib.with_model(config, workdir_model)   # that objective's own keys, not the recipe's
  with config.unlocked():
    config.netG, config.ngf, config.norm = netG, int(ngf), norm
    config.input_nc, config.output_nc = int(input_nc), int(output_nc)
    config.no_dropout = not bool(recorded)
    if cut:
      config.no_antialias, config.no_antialias_up = g.spec.no_antialias, g.spec.no_antialias_up
      if disc_nets and disc_nets[0].spec.no_antialias != g.spec.no_antialias:
        raise _fail(all_nets, f"the generator's down steps are {'plain' if g.spec.no_antialias else 'anti-aliased'} "
                              f"but the discriminator's are {'plain' if disc_nets[0].spec.no_antialias else 'anti-aliased'}"
                              "; one config.no_antialias sets both (the authors' --no_antialias)")
      if "F" in slots:
        config.netF_nc = int(slots["F"].spec.width)
    if disc_nets:
      config.netD = _same(disc_nets, "netD", lambda n: n.spec.net)
      config.ndf = int(_same(disc_nets, "ndf", lambda n: n.spec.width))
      config.n_layers_D = int(_same(disc_nets, "n_layers_D", lambda n: n.spec.n_layers_D))
    if direction:
      config.direction = direction
    if dataset:
      config.dataset = dataset
    if int(config.steps_per_epoch) <= 0:   # set by the training loop from the data; the state needs a value
      config.steps_per_epoch = 1
    if workdir_model == "cyclegan" and input_nc != output_nc and float(config.lambda_identity) > 0:
      config.lambda_identity = 0.0
      notes.append("lambda_identity set to 0: the identity loss needs input_nc == output_nc")
  stride = config_lib.generator_stride(netG)
  if int(config.crop_size) % stride:
    raise ValueError(f"config.crop_size={config.crop_size} is not a multiple of {stride}, the stride of {netG}; "
                     "use a --config recipe with a crop_size that is")
  for n in all_nets:
    notes.extend(f"{os.path.basename(n.path)}: {note}" for note in n.spec.notes)
  return ImportPlan(config=config, slots=slots, trained_as=trained_as, translate_only=translate_only, notes=notes)


def build_state(plan: ImportPlan) -> tuple[Any, dict]:
  """A whole fresh train state for ``plan.config`` with the imported networks in it; and its dummy batch.

  The objective's ``init`` gives the state's structure (traced, not run: compiling the
  initialisers of every network would cost seconds each). A fresh state is zero
  everywhere outside the networks (Adam's moments and count, the schedule position,
  the image pools, the step), so it is built as zeros, with the imported networks
  and ``PRNGKey(config.seed)`` put in. A network slot with no file (the
  discriminator of a translate-only import) stays zero: a placeholder never trained
  nor used. ``tests/test_import_torch.py`` checks this against a real ``init``.
  """
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxgan import objectives  # pylint: disable=import-outside-toplevel
  config = plan.config
  crop = int(config.crop_size)
  batch = {"A": np.zeros((1, crop, crop, int(config.input_nc)), np.float32),
           "B": np.zeros((1, crop, crop, int(config.output_nc)), np.float32)}
  seed = int(config.seed)
  abstract = objectives.abstract_state(config, {k: v.shape for k, v in batch.items()})
  state = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)
  params, stats = dict(state.params), dict(state.batch_stats)
  for slot, net in plan.slots.items():
    new_p, new_s = net.variables["params"], net.variables.get("batch_stats", {}) or {}
    for what, old, new in (("params", params[slot], new_p), ("batch_stats", stats.get(slot, {}), new_s)):
      a = jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), old)
      b = jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), new)
      if a != b and slot == "F":   # the patch head's MLPs take G's channels at config.nce_layers
        sizes = [int(new[k]["kernel"].shape[0]) for k in sorted(new, key=lambda k: int(k.split("_")[1]))
                 if k.endswith("_fc_0")]
        want = [int(old[k]["kernel"].shape[0]) for k in sorted(old, key=lambda k: int(k.split("_")[1]))
                if k.endswith("_fc_0")]
        raise ValueError(f"{net.path}: the patch head F's MLPs take {sizes} channels but G's features at "
                         f"config.nce_layers={tuple(config.nce_layers)} have {want}; pass the run's recipe "
                         "(--config) with its nce_layers")
      if a != b:  # pragma: no cover - detection and jaxgan.models disagree
        raise ValueError(f"internal: the imported {slot} {what} do not fit the {config.model} state "
                         f"({net.path})")
    params[slot] = new_p
    if slot in stats:   # CUT's F has no batch_stats entry
      stats[slot] = new_s
  key = jax.random.PRNGKey(seed).astype(abstract.rng.dtype)
  # With a recipe that keeps a weight average (config.ema_decay > 0) the average starts at the imported weights.
  ema = {slot: params[slot] for slot in state.ema}
  return state.replace(params=params, batch_stats=stats, rng=key, ema=ema), batch


def describe(plan: ImportPlan) -> dict:
  """The ``imported`` entry of the meta (JSON)."""
  slot_role = {"G_AB": "G_A", "G_BA": "G_B"}
  return {"format": IMPORT_FORMAT, "trained_as": plan.trained_as, "translate_only": plan.translate_only,
          "files": [{"slot": s, "role": n.role, "path": n.path, "sha256": n.sha256, "detected": n.spec.to_json()}
                    for s, n in plan.slots.items()],
          "roles": {s: slot_role.get(s, s) for s in plan.slots}, "notes": list(plan.notes)}


def write_workdir(plan: ImportPlan, workdir: str | os.PathLike, *, source: Mapping[str, Any] | None = None) -> Path:
  """Write ``plan`` as step 0 of ``workdir`` (refused when it already holds checkpoints)."""
  from jaxgan import train  # pylint: disable=import-outside-toplevel
  workdir = Path(workdir).absolute()
  check_target(workdir)
  state, batch = build_state(plan)
  meta = train.make_meta(plan.config, batch)
  meta[checkpoint.IMPORTED_KEY] = {**describe(plan), **(dict(source) if source else {})}
  if plan.translate_only:
    meta[checkpoint.TRANSLATE_ONLY_KEY] = plan.translate_only
  existed = workdir.exists()
  try:
    ckpt = checkpoint.Checkpointer(workdir, keep=0, async_save=False)
    try:
      ckpt.save(0, state, meta=meta)
      ckpt.wait()
    finally:
      ckpt.close()
  except BaseException:
    if not existed:
      shutil.rmtree(workdir, ignore_errors=True)
    raise
  return workdir


def check_target(workdir: str | os.PathLike) -> None:
  """Refuse a workdir that exists as a file or already holds checkpoints (nothing is replaced)."""
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir {workdir} exists and is not a folder")
  if checkpoint.list_steps(workdir) or any(checkpoint.checkpoint_dir(workdir).glob("*")):
    raise FileExistsError(f"--workdir {workdir} already holds checkpoints; import into a new folder "
                          "(nothing was written)")


def import_files(paths: Sequence[str | os.PathLike], workdir: str | os.PathLike, *,
                 roles: Sequence[str] | None = None, model: str | None = None, direction: str | None = None,
                 norm: str | None = None, use_dropout: bool | None = None,
                 base_config: ml_collections.ConfigDict | None = None, dataset: str | None = None,
                 source: Mapping[str, Any] | None = None) -> ImportPlan:
  """Read ``paths``, plan and write the workdir; returns the plan. See the module docstring."""
  if not paths:
    raise ValueError("no .pth files given")
  if roles is not None and len(roles) != len(paths):
    raise ValueError(f"--roles gives {len(roles)} role(s) for {len(paths)} file(s); give one per file, in order")
  check_target(workdir)
  nets = [read_network(p, roles[i] if roles else None, norm=norm) for i, p in enumerate(paths)]
  plan = plan_import(nets, model=model, direction=direction, use_dropout=use_dropout, base_config=base_config,
                     dataset=dataset)
  write_workdir(plan, workdir, source=source)
  return plan
