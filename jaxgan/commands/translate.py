"""``jaxgan translate``: translate an image file or a folder of images with a trained model."""
from __future__ import annotations

import argparse
import sys

NAME = "translate"
RUNS_GENERATORS = True   # the CLI calibrates the layer forms first (jaxgan.calibration)
HELP = "translate an image file or a folder of images with a trained model"


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, description=(
      "Translate images with WORKDIR's newest checkpoint (or --step). Writes OUTPUT/<input name>.png at each "
      "input's own size, with the channels the model was trained on."))
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


def run(args: argparse.Namespace) -> int:
  from jaxgan import inference  # pylint: disable=import-outside-toplevel
  if args.batch_size < 1:
    raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
  files = inference.list_inputs(args.input)
  from jaxgan.data import image_io  # pylint: disable=import-outside-toplevel
  for f in files:   # unreadable headers and decompression bombs: one line naming the file, before any loading
    image_io.check_image_header(f)
  targets = inference.plan_outputs(files, args.output, overwrite=args.overwrite)
  inference.ensure_writable(args.output)
  state, config, step = inference.load_for_inference(args.workdir, args.step)
  written = inference.translate_files(state, config, files, targets, direction=args.direction,
                                      eval_mode=args.eval, convert=args.convert, batch_size=args.batch_size,
                                      progress=sys.stderr.isatty())
  print(f"wrote {written} image(s) to {args.output} (checkpoint step {step}, {config.model}, {args.direction})",
        file=sys.stderr)
  return 0
