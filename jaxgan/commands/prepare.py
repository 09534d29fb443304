"""``jaxgan prepare tfds:NAME[/CONFIG]``: download and prepare a TFDS dataset as ArrayRecord, once.

jaxgan reads TFDS datasets by random access (``tfds.data_source``), which
needs ArrayRecord files; TFDS's own ``download_and_prepare()`` writes TFRecord
by default. This command asks for ArrayRecord, checks that every split opens,
and prints one JSON line. TensorFlow is needed here only (TFDS encodes images
with it); training then reads the files without it.
"""
from __future__ import annotations

import argparse
import json
import sys

from jaxgan.commands.base import UsageError

NAME = "prepare"
HELP = "download and prepare a TFDS dataset as ArrayRecord (needs TensorFlow for this step only)"


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, description=(
      "Download and prepare a TensorFlow Datasets dataset in the ArrayRecord format jaxgan reads, e.g. "
      "`jaxgan prepare tfds:cycle_gan/horse2zebra`. Needs TensorFlow (pip install -e \".[tfds]\") for this step "
      "only. A dataset already prepared as ArrayRecord is left as it is; one prepared as TFRecord is refused, "
      "never replaced."))
  p.add_argument("dataset", metavar="tfds:NAME[/CONFIG]", help="e.g. tfds:cycle_gan/horse2zebra")
  p.add_argument("--data_dir", default=None,
                 help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets); train with "
                      "--config.tfds_data_dir=DIR when you set it")


def run(args: argparse.Namespace) -> int:
  from jaxgan.data import sources, tfds_source  # pylint: disable=import-outside-toplevel
  from jaxgan.data.image_io import DataError  # pylint: disable=import-outside-toplevel
  try:
    kind, name = sources.parse_dataset(args.dataset)
  except DataError as e:
    raise UsageError(f"{e}; `jaxgan prepare` takes tfds:NAME[/CONFIG]") from e
  if kind != "tfds":
    raise UsageError(f"{args.dataset!r}: only tfds:NAME[/CONFIG] datasets are prepared "
                     f"({kind}: datasets need no preparation)")
  result = tfds_source.prepare(name, args.data_dir)
  counts = ", ".join(f"{k} {v}" for k, v in result["splits"].items())
  verb = "already prepared" if result["already_prepared"] else "prepared"
  train_args = f"--config.dataset={result['dataset']}" + (
      f" --config.tfds_data_dir={args.data_dir}" if args.data_dir else "")
  print(f"{result['dataset']} {verb} as ArrayRecord in {result['path']} ({counts}); train with {train_args}",
        file=sys.stderr)
  print(json.dumps(result))
  return 0
