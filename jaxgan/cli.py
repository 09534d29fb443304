"""The ``jaxgan`` command (also ``python -m jaxgan``): parse the command line, run a sub-command.

Owns the top-level parser (built from the sub-command modules listed in
:data:`jaxgan.commands.COMMANDS`), the persistent compilation cache, logging
set-up, and turning errors into a one-line message and a non-zero exit status
(2: bad command line or config, 1: the run failed, e.g. no checkpoint,
unreadable image, NaN loss). Each sub-command's options and work live in its
own module under :mod:`jaxgan.commands`.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Sequence

from jaxgan.commands import COMMANDS, UsageError
from jaxgan.commands.config_args import (apply_overrides, load_config_file, split_overrides,  # noqa: F401
                                         validate_config)

DESCRIPTION = """\
Image-to-image translation GANs in JAX. Objectives (config.model): {models}.

  jaxgan train        --config cyclegan_demo --workdir runs/demo [--config.KEY=VALUE ...]
  jaxgan translate    --workdir runs/demo --input photos/ --output out/ [--direction BtoA]
  jaxgan evaluate     --workdir runs/demo
  jaxgan fid          real_B/ fake_B/                      # FID / KID as pytorch-fid (folders or .npz stats)
  jaxgan prepare      tfds:cycle_gan/horse2zebra           # once, before training on a TFDS dataset
  jaxgan import-torch latest_net_G_A.pth latest_net_G_B.pth --workdir runs/imported
  jaxgan pretrained   horse2zebra --workdir runs/h2z       # the authors' released models (--list)

`train` resumes when WORKDIR already holds a checkpoint. Run `jaxgan COMMAND --help` for each command's options.
"""


def build_parser() -> argparse.ArgumentParser:
  from jaxgan import objectives  # pylint: disable=import-outside-toplevel  (the registry: jaxgan/objectives.py)
  parser = argparse.ArgumentParser(prog="jaxgan", description=DESCRIPTION.format(models=", ".join(objectives.NAMES)),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                      help="logging verbosity (default INFO)")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  sub.required = True
  for command in COMMANDS:
    command.add_parser(sub)
  return parser


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache in $JAXGAN_CACHE_DIR (default ~/.cache/jaxgan/xla)."""
  import jax
  from jaxgan.cpu import calibration
  cache = calibration.default_dir()   # the calibration file lives there too
  try:
    os.makedirs(cache, exist_ok=True)
  except OSError:
    return   # an unwritable home is no reason to fail
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  from jaxgan.cpu import aot_cache
  aot_cache.set_directory(cache)   # whole compiled steps too: a restart skips tracing them


def _setup_logging(level: str) -> None:
  logging.basicConfig(level=getattr(logging, level), format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stderr)
  for noisy in ("absl", "jax._src", "orbax", "tensorstore"):   # Orbax's notices come through absl
    logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)
  # Orbax logs each failed background write with its traceback from several threads (hundreds of lines for
  # one full disk) before raising it; the exception itself becomes our one line (--log_level DEBUG shows all).
  for noisy in ("absl", "orbax", "asyncio"):   # asyncio: "exception was never retrieved" of the same writes
    logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
  from absl import flags, logging as absl_logging
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()   # Grain worker processes read absl flags
  # (FATAL, not ERROR: absl's verbosity is the "absl" logger's level, and Orbax's failed-write tracebacks are ERRORs)
  absl_logging.set_verbosity(absl_logging.DEBUG if level == "DEBUG" else absl_logging.FATAL)


def _error_types() -> tuple[type, ...]:
  """Failures reported as one line (exit 1) instead of a traceback."""
  from jaxgan import checkpoint, train
  from jaxgan.data.image_io import DataError
  from jaxgan.parallel import DistributedStartError
  from jaxgan.workdir_lock import WorkdirBusyError
  # OSError: a full disk, a read-only or unwritable folder anywhere (each save site names what it kept)
  return (checkpoint.CheckpointError, train.TrainingError, DataError, DistributedStartError, WorkdirBusyError,
          OSError, ValueError)



def main(argv: Sequence[str] | None = None) -> int:
  """Entry point; returns the exit status (0 ok, 1 the run failed, 2 bad command line/config).

  Run as the program (``argv`` None) it first applies the process-wide CPU host
  settings of :mod:`jaxgan.cpu.host`; called with an explicit ``argv`` from other
  code it leaves the process's settings alone. SIGTERM/SIGINT are caught from
  the first line (:func:`jaxgan.preemption.install_early`): ``train`` stops
  cleanly wherever it is (exit 0); the other commands end with 128 + the signal
  number once the command line is read.
  """
  from jaxgan import preemption
  preemption.install_early()
  try:
    return _main(argv)
  finally:
    preemption.release_early()


def _main(argv: Sequence[str] | None) -> int:
  from jaxgan import preemption
  if argv is None:
    from jaxgan.cpu import host
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
  command = {c.NAME: c for c in COMMANDS}[args.command]
  saves_on_signal = bool(getattr(command, "SAVES_ON_SIGNAL", False))
  if not saves_on_signal:   # only train saves on a signal: the others get the default handlers back
    received = preemption.release_early()
    if received:
      print(f"jaxgan {args.command}: stopped by {received}", file=sys.stderr)
      return 128 + int(getattr(signal, received))
  if overrides and not getattr(command, "TAKES_CONFIG_OVERRIDES", False):
    print(f"jaxgan {args.command}: error: --config.* options apply to `jaxgan train` only "
          f"(the config comes from the checkpoint)", file=sys.stderr)
    return 2
  args.config_overrides = overrides
  _setup_logging(args.log_level)
  try:
    join = getattr(command, "join", None)
    if join is not None:   # a multi-process job is joined before anything starts JAX's backend
      preemption.check_startup("reading the command line")
      join(args)
      preemption.check_startup("joining the job")
    enable_compilation_cache()
    return int(command.run(args))
  except preemption.StartupStop as e:
    print(f"jaxgan {args.command}: {e}", file=sys.stderr)
    return 0
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


if __name__ == "__main__":  # pragma: no cover
  sys.exit(main())
