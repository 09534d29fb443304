"""``jaxgan import-torch``: the reference project's saved networks (``.pth``) -> a jaxgan workdir."""
from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

NAME = "import-torch"
HELP = "import the authors' PyTorch .pth networks into a jaxgan workdir (translate, evaluate, fine-tune)"

EPILOG = """\
The network (netG resnet_<n>blocks / unet_<N>, netD basic / n_layers / pixel), norm, ResNet dropout,
channels and ngf/ndf are read from the weights; roles from the reference's file names
(*_net_G.pth, *_net_D.pth, *_net_F.pth, *_net_G_A.pth, *_net_G_B.pth, *_net_D_A.pth, *_net_D_B.pth) or --roles.
  G + D                      -> pix2pix (trainable)
  CUT/FastCUT (anti-aliased filt buffers, an F file, or --model cut): G -> translate only; G + D + F -> trainable
  G_A + G_B + D_A + D_B      -> CycleGAN (trainable)
  G_A + G_B                  -> CycleGAN, translate/evaluate only
  one generator (G, G_A, G_B; the authors' released models) -> translate only, in the direction it was trained for
Examples:
  jaxgan import-torch checkpoints/h2z/latest_net_G_A.pth checkpoints/h2z/latest_net_G_B.pth \\
      checkpoints/h2z/latest_net_D_A.pth checkpoints/h2z/latest_net_D_B.pth --workdir runs/h2z
  jaxgan import-torch horse2zebra.pth --workdir runs/h2z_pretrained --model cyclegan
Files are read with torch.load(weights_only=True): nothing in them is executed."""


def add_parser(subparsers) -> None:
  from jaxgan import config as config_lib, objectives  # pylint: disable=import-outside-toplevel
  p = subparsers.add_parser(NAME, help=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Write the reference's saved networks as step 0 of a new jaxgan workdir.")
  p.add_argument("files", nargs="+", metavar="FILE.pth", help="state_dict files saved by the reference code")
  p.add_argument("--workdir", required=True, help="a new folder (refused if it already holds checkpoints)")
  p.add_argument("--model", choices=objectives.importable(), default=None,   # objectives with an IMPORT_SLOTS
                 help="what the files were trained with (default: from the roles)")
  p.add_argument("--direction", choices=("AtoB", "BtoA"), default=None,
                 help="config.direction: which side of a dataset is the input (G_B alone: BtoA)")
  p.add_argument("--roles", default=None, metavar="ROLE,...",
                 help="one role per file, in order, when the names do not say: G, D, F, G_A, G_B, D_A, D_B")
  p.add_argument("--norm", choices=config_lib.NORMS, default=None,
                 help="the norm, when the weights cannot tell (only instance vs none with conv biases)")
  group = p.add_mutually_exclusive_group()
  group.add_argument("--dropout", dest="dropout", action="store_const", const=True,
                     help="U-Net generators: trained with dropout (the weights do not record it)")
  group.add_argument("--no_dropout", dest="dropout", action="store_const", const=False,
                     help="U-Net generators: trained without dropout")
  p.set_defaults(dropout=None)
  p.add_argument("--config", default=None, metavar="FILE[:ARG]",
                 help="a recipe for everything the weights do not fix (data, crop_size, schedule, losses)")
  p.add_argument("--dataset", default=None, help="config.dataset for evaluate and fine-tuning, e.g. folder:PATH")


def parse_roles(text: str | None, n_files: int) -> list[str] | None:
  if text is None:
    return None
  from jaxgan.interop import detect  # pylint: disable=import-outside-toplevel
  roles = [r.strip() for r in text.split(",")]
  bad = [r for r in roles if r not in detect.ROLES]
  if bad:
    raise ValueError(f"--roles: {bad} not among {', '.join(detect.ROLES)}")
  if len(roles) != n_files:
    raise ValueError(f"--roles gives {len(roles)} role(s) for {n_files} file(s); give one per file, in order")
  return roles


def load_recipe(spec: str | None):
  if spec is None:
    return None
  from jaxgan.commands.config_args import load_config_file  # pylint: disable=import-outside-toplevel
  return load_config_file(spec)


def run(args: argparse.Namespace) -> int:
  from jaxgan.interop import workdir  # pylint: disable=import-outside-toplevel
  try:
    plan = workdir.import_files(args.files, args.workdir, roles=parse_roles(args.roles, len(args.files)),
                                model=args.model, direction=args.direction, norm=args.norm,
                                use_dropout=args.dropout, base_config=load_recipe(args.config),
                                dataset=args.dataset, source={"source": "import-torch"})
  except ImportError as e:
    print(f"jaxgan {NAME}: error: {e}", file=sys.stderr)
    return 1
  print_summary(plan, args.workdir, args.config)
  return 0


def fine_tune_overrides(plan, recipe_spec: str | None) -> list[str]:
  """``--config.KEY=VALUE`` for the keys that fix the state's shapes, where the recipe differs (all without one)."""
  from jaxgan import checkpoint, config as config_lib, objectives  # pylint: disable=import-outside-toplevel
  keys = [k for k in checkpoint.STRUCTURAL_KEYS if k != "model"]
  state_keys = list(objectives.get(plan.model).STATE_KEYS)
  keys += state_keys + (["crop_size"] if "pool_size" in state_keys else [])   # the image pools: their image shape too
  keys += ["no_dropout", "direction", "dataset"]
  if recipe_spec is not None:
    recipe = load_recipe(recipe_spec)
  else:
    recipe = config_lib.get_base_config(plan.model)
  return [f"--config.{k}={plan.config[k]}" for k in keys if k in plan.config and recipe.get(k) != plan.config[k]]


def print_summary(plan, workdir_path: str | os.PathLike, recipe_spec: str | None, stream: TextIO | None = None
                  ) -> None:
  """What was imported and the commands that use it."""
  from jaxgan import config as config_lib, objectives  # pylint: disable=import-outside-toplevel
  out = stream or sys.stdout
  kind = f"{plan.model}{', translate only' if plan.translate_only else ''}"
  print(f"imported into {workdir_path} (checkpoint step 0, {kind}; trained as {plan.trained_as}):", file=out)
  for slot, net in plan.slots.items():
    print(f"  {slot:5s} <- {net.path}: {net.spec.describe()}", file=out)
  for note in plan.notes:
    print(f"  note: {note}", file=out)
  w = str(workdir_path)
  if len(objectives.get(plan.model).DIRECTIONS) > 1:
    print(f"translate: jaxgan translate --workdir {w} --input IMAGES --output OUT [--direction BtoA]", file=out)
  else:
    print(f"translate: jaxgan translate --workdir {w} --input IMAGES --output OUT"
          f"   (input -> output; config.direction={plan.config.direction})", file=out)
  print(f"evaluate:  jaxgan evaluate --workdir {w}   (dataset {plan.config.dataset}; set --dataset at import)",
        file=out)
  if plan.translate_only:
    print(f"fine-tune: not possible: {plan.translate_only}", file=out)
    return
  recipe = recipe_spec or "RECIPE.py"
  extra = " ".join(fine_tune_overrides(plan, recipe_spec))
  line = f"fine-tune: jaxgan train --config {recipe} --workdir {w} {extra}".rstrip()
  if "epoch_count" in config_lib.get_base_config():
    line += "  [--config.epoch_count=N: the schedule starts at epoch N]"
  print(line, file=out)
