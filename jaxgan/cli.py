"""The ``jaxgan`` command (also ``python -m jaxgan``): train, translate, evaluate.

Owns argument parsing, loading ml_collections config files with
``--config.KEY=VALUE`` overrides (unknown keys and bad values are refused with
the valid choices), the persistent compilation cache, and turning errors into
a one-line message and a non-zero exit status (2: bad command line or config,
1: the run failed, e.g. no checkpoint, unreadable image, NaN loss).
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from jaxgan import config as config_lib

# Keys recipes may leave out; ``--config.KEY`` may still set them (name -> type, default).
OPTIONAL_KEYS: dict[str, tuple[type, Any]] = {
    "demo_seed": (int, 0),            # built-in demo data: generator seed
    "demo_train_size": (int, 400),    # images per domain in the demo train split
    "demo_test_size": (int, 50),      # images in the demo test split
    "demo_image_size": (int, 0),      # side of the generated images (0: load_size for train, else crop_size)
    "data_threads": (int, 0),         # Grain reader threads (0: automatic)
    "prefetch_batches": (int, 4),     # batches read ahead
    "wandb_project": (str, "jaxgan"),
    "sample_rows": (int, 4),          # images per sample grid
    "eval_mode": (bool, False),       # evaluate with running BatchNorm statistics and no dropout
}

CHOICES: dict[str, Sequence[str]] = {
    "model": config_lib.MODELS,
    "netD": config_lib.DISCRIMINATORS,
    "norm": config_lib.NORMS,
    "gan_mode": config_lib.GAN_MODES,
    "init_type": config_lib.INIT_TYPES,
    "preprocess": config_lib.PREPROCESS,
    "dtype": config_lib.DTYPES,
    "direction": ("AtoB", "BtoA"),
}
POSITIVE_KEYS = ("input_nc", "output_nc", "ngf", "ndf", "batch_size", "load_size", "crop_size", "n_layers_D")
NON_NEGATIVE_KEYS = ("lr", "lambda_L1", "lambda_A", "lambda_B", "lambda_identity", "lambda_gp", "pool_size",
                     "n_epochs", "n_epochs_decay", "num_workers", "init_gain", "log_every_steps",
                     "checkpoint_every_steps", "sample_every_steps", "eval_every_steps", "keep_checkpoints")

DESCRIPTION = """\
pix2pix and CycleGAN in JAX.

  jaxgan train     --config configs/cyclegan_demo.py --workdir runs/demo [--config.KEY=VALUE ...]
  jaxgan translate --workdir runs/demo --input photos/ --output out/ [--direction BtoA]
  jaxgan evaluate  --workdir runs/demo

`train` resumes when WORKDIR already holds a checkpoint. Run `jaxgan COMMAND --help` for each command's options.
"""

TRAIN_EPILOG = """\
Every config key can be overridden, e.g.
  --config.num_train_steps=2000 --config.batch_size=4 --config.dataset=folder:/data/horse2zebra
Datasets: demo:facades, demo:seasons (built in), folder:PATH (trainA/ trainB/ testA/ testB/, or train/ test/
of side-by-side A|B images), tfds:NAME[/CONFIG] (e.g. tfds:cycle_gan/horse2zebra, prepared beforehand).
A recipe may take an argument after a colon: --config configs/cyclegan_horse2zebra.py:monet2photo
Outputs in WORKDIR: checkpoints/, tensorboard/ (tensorboard --logdir WORKDIR), web/index.html, eval.json.
SIGTERM or Ctrl-C saves a checkpoint at the next step and exits 0; rerun the same command to resume."""


class UsageError(Exception):
  """A bad command line or config value (exit status 2)."""


# ------------------------------------------------------------------ config loading


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Load ``path.py`` or ``path.py:ARG`` and return its ``get_config([ARG])``."""
  path, _, arg = spec.partition(":") if not re.match(r"^[A-Za-z]:[\\/]", spec) else (spec, "", "")
  file = Path(path)
  if not file.is_file():
    raise UsageError(f"--config: no such file {path!r}" + _nearby_configs(file))
  module_spec = importlib.util.spec_from_file_location(f"jaxgan_config_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - a broken config file is a usage error
    raise UsageError(f"--config {path}: cannot load it: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_config"):
    raise UsageError(f"--config {path}: the file defines no get_config()")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except (ValueError, TypeError, KeyError) as e:
    raise UsageError(f"--config {spec}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f"--config {path}: get_config() must return an ml_collections.ConfigDict")
  return config


def _nearby_configs(file: Path) -> str:
  folder = file.parent if str(file.parent) else Path(".")
  if folder.is_dir():
    names = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))
    if names:
      return f"; files in {folder}/: {', '.join(names)}"
  return ""


def parse_value(key: str, text: str, default: Any) -> Any:
  """Parse ``text`` as the type of ``default`` (bool, int, float or str)."""
  if isinstance(default, bool):
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
      return True
    if low in ("false", "0", "no", "off"):
      return False
    raise UsageError(f"--config.{key}={text!r}: expected true or false")
  if isinstance(default, int):
    try:
      return int(text)
    except ValueError:
      try:
        f = float(text)
      except ValueError:
        f = None
      if f is not None and f.is_integer():
        return int(f)
      raise UsageError(f"--config.{key}={text!r}: expected an integer") from None
  if isinstance(default, float):
    try:
      return float(text)
    except ValueError:
      raise UsageError(f"--config.{key}={text!r}: expected a number") from None
  return text


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separate ``--config.KEY=VALUE`` / ``--config.KEY VALUE`` from the other arguments."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      body = arg[len("--config."):]
      if "=" in body:
        key, value = body.split("=", 1)
      elif i + 1 < len(argv):
        key, value = body, argv[i + 1]
        i += 1
      else:
        raise UsageError(f"{arg}: missing value (write {arg}=VALUE)")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]
                    ) -> ml_collections.ConfigDict:
  """Set each override on ``config``; unknown keys are refused with close matches and the full list."""
  for key, text in overrides:
    if key in config:
      default = config[key]
    elif key in OPTIONAL_KEYS:
      default = OPTIONAL_KEYS[key][1]
    else:
      known = sorted(set(config.keys()) | set(OPTIONAL_KEYS))
      close = difflib.get_close_matches(key, known, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise UsageError(f"--config.{key}: unknown config key.{hint} Valid keys: {', '.join(known)}")
    value = parse_value(key, text, default)
    with config.unlocked():
      config[key] = value
  validate_config(config)
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Check choices and ranges of a whole config; UsageError naming the key and the valid values."""
  for key, choices in CHOICES.items():
    if key in config and config[key] not in choices:
      raise UsageError(f"config.{key}={config[key]!r} is not valid; choose one of: {', '.join(choices)}")
  from jaxgan import models  # deferred: imports flax
  try:
    models.parse_netG(str(config.netG))
  except ValueError:
    raise UsageError(f"config.netG={config.netG!r} is not valid; choose one of: "
                     f"{', '.join(config_lib.GENERATORS)} (or unet_<N> with N a power of two >= 32, "
                     "resnet_<n>blocks)") from None
  for key in POSITIVE_KEYS:
    if int(config[key]) < 1:
      raise UsageError(f"config.{key}={config[key]} must be >= 1")
  for key in NON_NEGATIVE_KEYS:
    if key in config and float(config[key]) < 0:
      raise UsageError(f"config.{key}={config[key]} must be >= 0")
  if int(config.crop_size) > int(config.load_size) and "crop" in str(config.preprocess):
    raise UsageError(f"config.crop_size={config.crop_size} is larger than config.load_size={config.load_size}")
  kind = str(config.dataset).split(":", 1)[0]
  if ":" not in str(config.dataset) or kind not in ("demo", "folder", "tfds"):
    raise UsageError(f"config.dataset={config.dataset!r}: expected demo:facades, demo:seasons, folder:PATH "
                     "or tfds:NAME[/CONFIG]")
  if kind == "demo":
    from jaxgan.data.demo import DEMO_DATASETS
    name = str(config.dataset).split(":", 1)[1]
    if name not in DEMO_DATASETS:
      raise UsageError(f"config.dataset={config.dataset!r}: unknown demo dataset; choose one of: "
                       + ", ".join("demo:" + d for d in DEMO_DATASETS))


# ------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxgan", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                      help="logging verbosity (default INFO)")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  sub.required = True

  p = sub.add_parser("train", help="train a model (resumes from WORKDIR's newest checkpoint)",
                     description="Train pix2pix or CycleGAN. Resumes when WORKDIR holds a checkpoint.",
                     epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True, metavar="FILE[:ARG]",
                 help="a recipe from configs/, e.g. configs/pix2pix_demo.py")
  p.add_argument("--workdir", required=True, help="folder for checkpoints, logs, samples, eval.json")
  p.add_argument("--coordinator_address", default=None, help="multi-host: host:port of process 0")
  p.add_argument("--num_processes", type=int, default=None, help="multi-host: number of processes")
  p.add_argument("--process_id", type=int, default=None, help="multi-host: this process's index")

  p = sub.add_parser("translate", help="translate an image file or a folder of images with a trained model",
                     description="Translate images with WORKDIR's newest checkpoint (or --step). Writes "
                     "OUTPUT/<input name>.png at each input's own size, with the channels the model was "
                     "trained on.")
  p.add_argument("--workdir", required=True, help="the training run's folder")
  p.add_argument("--input", required=True, help="an image file or a folder of images (not searched recursively)")
  p.add_argument("--output", required=True, help="folder for the results (created; must differ from the input)")
  p.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                 help="CycleGAN: which generator (default AtoB); pix2pix: AtoB only")
  p.add_argument("--step", type=int, default=None, help="checkpoint step to use (default: newest)")
  p.add_argument("--eval", action="store_true",
                 help="running BatchNorm averages and no dropout (default: the reference test-time behaviour)")
  p.add_argument("--convert", action="store_true",
                 help="convert inputs with another channel count (RGB<->gray, drop alpha) instead of refusing")
  p.add_argument("--batch_size", type=int, default=8, help="images per batch (default 8)")
  p.add_argument("--overwrite", action="store_true", help="replace existing files in OUTPUT")

  p = sub.add_parser("evaluate", help="L1 / PSNR / SSIM on the test split; prints JSON, writes WORKDIR/eval.json",
                     description="Evaluate WORKDIR's newest checkpoint (or --step) on a split of its dataset. "
                     "Metrics on [0,1] images: l1 (lower is better), psnr in dB and ssim (higher is better); "
                     "copy_input_* is the baseline of returning the input unchanged.")
  p.add_argument("--workdir", required=True, help="the training run's folder")
  p.add_argument("--split", default="test", help="dataset split (default test)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step to use (default: newest)")
  p.add_argument("--eval", action="store_true", help="running BatchNorm averages and no dropout")
  p.add_argument("--batches", type=int, default=-1, help="evaluate at most this many batches (-1: all)")
  return parser


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache in $JAXGAN_CACHE_DIR (default ~/.cache/jaxgan/xla)."""
  import jax
  cache = os.environ.get("JAXGAN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxgan", "xla")
  try:
    os.makedirs(cache, exist_ok=True)
  except OSError:
    return   # an unwritable home is no reason to fail
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _setup_logging(level: str) -> None:
  logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stderr)
  for noisy in ("absl", "jax._src", "orbax", "tensorstore"):   # Orbax's notices come through absl
    logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
  from absl import flags, logging as absl_logging
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()   # Grain worker processes read absl flags
  absl_logging.set_verbosity(absl_logging.DEBUG if level == "DEBUG" else absl_logging.ERROR)


def _error_types() -> tuple[type, ...]:
  from jaxgan import checkpoint, train
  from jaxgan.data.image_io import DataError
  return (checkpoint.CheckpointError, train.TrainingError, DataError, FileNotFoundError, PermissionError,
          NotADirectoryError, FileExistsError, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point; returns the exit status (0 ok, 1 the run failed, 2 bad command line/config).

  Run as the program (``argv`` None) it first applies the process-wide CPU host
  settings of :mod:`jaxgan.host`; called with an explicit ``argv`` from other
  code it leaves the process's settings alone.
  """
  if argv is None:
    from jaxgan import host
    host.configure()
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  try:
    rest, overrides = split_overrides(argv)
    args = parser.parse_args(rest)
  except UsageError as e:
    print(f"jaxgan: error: {e}", file=sys.stderr)
    return 2
  except SystemExit as e:   # argparse: --help (0) or a bad option (2, message already printed)
    return int(e.code or 0)
  if overrides and args.command != "train":
    print(f"jaxgan {args.command}: error: --config.* options apply to `jaxgan train` only "
          f"(the config comes from the checkpoint)", file=sys.stderr)
    return 2
  _setup_logging(args.log_level)
  try:
    if args.command == "train":
      config = apply_overrides(load_config_file(args.config), overrides)
    enable_compilation_cache()
    if args.command == "train":
      return _train(args, config)
    from jaxgan import inference
    if args.command == "translate":
      return inference.translate_command(args)
    return inference.evaluate_command(args)
  except UsageError as e:
    print(f"jaxgan {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"jaxgan {args.command}: interrupted", file=sys.stderr)
    return 130
  except Exception as e:  # noqa: BLE001 - known failures become one line; others keep their traceback
    if isinstance(e, _error_types()):
      logging.getLogger(__name__).debug("error details", exc_info=True)
      print(f"jaxgan {args.command}: error: {e}", file=sys.stderr)
      return 1
    raise


def _train(args: argparse.Namespace, config: ml_collections.ConfigDict) -> int:
  from jaxgan import parallel, train
  parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  result = train.train_and_evaluate(config, args.workdir)
  if result.preempted:
    print(f"stopped by a signal at step {result.step}; checkpoint saved. Run the same command to resume.",
          file=sys.stderr)
  return 0


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
