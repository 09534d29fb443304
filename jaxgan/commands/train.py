"""``jaxgan train``: train (or resume) a run from a recipe with ``--config.KEY=VALUE`` overrides."""
from __future__ import annotations

import argparse
import sys

NAME = "train"
HELP = "train a model (resumes from WORKDIR's newest checkpoint)"
TAKES_CONFIG_OVERRIDES = True
SAVES_ON_SIGNAL = True   # SIGTERM/SIGINT from the first line of cli.main: stop cleanly, exit 0

EPILOG = """\
Every config key can be overridden, e.g.
  --config.num_train_steps=2000 --config.batch_size=4 --config.dataset=folder:/data/horse2zebra
Datasets: demo:facades, demo:seasons (built in), folder:PATH (trainA/ trainB/ testA/ testB/, or train/ test/
of side-by-side A|B images), tfds:NAME[/CONFIG] (e.g. tfds:cycle_gan/horse2zebra; prepare it once with
`jaxgan prepare tfds:NAME[/CONFIG]`).
A recipe may take an argument after a colon: --config cyclegan_horse2zebra:monet2photo
Outputs in WORKDIR: checkpoints/, tensorboard/ (tensorboard --logdir WORKDIR), web/index.html, eval.json.
SIGTERM or Ctrl-C saves a checkpoint at the next step and exits 0; rerun the same command to resume.
A NaN/inf loss or state stops the run (exit 1) naming the step and the newest checkpoint, which is finite
(a non-finite state is never saved). Unreadable checkpoints are moved to WORKDIR/unreadable_checkpoints/;
when all were, train refuses to start again from step 0 unless given --restart_from_scratch."""


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Train pix2pix or CycleGAN. Resumes when WORKDIR holds a checkpoint.")
  p.add_argument("--config", required=True, metavar="NAME|FILE[:ARG]",
                 help="one of jaxgan's recipes by name (cyclegan_demo, pix2pix_demo, cyclegan_horse2zebra, "
                      "pix2pix_facades, ...: the files of configs/) or a recipe file, e.g. my_recipe.py")
  p.add_argument("--workdir", required=True, help="folder for checkpoints, logs, samples, eval.json")
  p.add_argument("--restart_from_scratch", action="store_true",
                 help="when every checkpoint of WORKDIR was unreadable and set aside in "
                      "WORKDIR/unreadable_checkpoints/, train again from step 0 (the set-aside folders are kept); "
                      "without it such a train refuses. With a readable checkpoint the run resumes as always")
  p.add_argument("--coordinator_address", default=None, help="multi-host: host:port of process 0")
  p.add_argument("--num_processes", type=int, default=None, help="multi-host: number of processes")
  p.add_argument("--process_id", type=int, default=None, help="multi-host: this process's index")


def join(args: argparse.Namespace) -> None:
  """Join the multi-process job, if this is one (flags, or SLURM / Open MPI / Cloud TPU environment).

  ``cli.main`` calls it before anything that starts JAX's backend (the
  compilation cache, the calibration), which ``jax.distributed`` must precede.
  """
  from jaxgan import parallel  # pylint: disable=import-outside-toplevel
  parallel.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)


def run(args: argparse.Namespace) -> int:
  from jaxgan import train  # pylint: disable=import-outside-toplevel
  from jaxgan.commands import config_args  # pylint: disable=import-outside-toplevel
  config = config_args.apply_overrides(config_args.load_config_file(args.config), args.config_overrides)
  join(args)   # a no-op after cli.main joined (kept for callers of run())
  result = train.train_and_evaluate(config, args.workdir,
                                     restart_from_scratch=getattr(args, "restart_from_scratch", False))
  if result.preempted:
    print(f"stopped by a signal at step {result.step}; checkpoint saved. Run the same command to resume.",
          file=sys.stderr)
  return 0
