"""``jaxgan translate``: translate an image file or a folder of images with a trained model."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

NAME = "translate"
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
  if Path(args.workdir).exists() and not Path(args.workdir).is_dir():
    raise NotADirectoryError(f"--workdir {args.workdir} is a file, not a directory: give the training run's folder")
  if args.batch_size < 1:
    raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
  files = inference.list_inputs(args.input)
  from jaxgan.data import image_io  # pylint: disable=import-outside-toplevel
  for f in files:   # unreadable headers and decompression bombs: one line naming the file, before any loading
    image_io.check_image_header(f)
  targets = inference.plan_outputs(files, args.output, overwrite=args.overwrite)
  inference.ensure_writable(args.output)
  state, config, step = inference.load_for_inference(args.workdir, args.step)
  started = time.time()
  try:
    written = inference.translate_files(state, config, files, targets, direction=args.direction,
                                        eval_mode=args.eval, convert=args.convert, batch_size=args.batch_size,
                                        progress=sys.stderr.isatty())
  except OSError as e:   # a full disk or a folder that turned unwritable: one line saying what was kept
    from jaxgan.checkpoint import write_failure  # pylint: disable=import-outside-toplevel
    if write_failure(e) is None:
      raise
    raise OSError(_write_failure_message(e, targets, started, args.output)) from e
  print(f"wrote {written} image(s) to {args.output} (checkpoint step {step}, {config.model}, {args.direction})",
        file=sys.stderr)
  return 0


def _write_failure_message(e: OSError, targets: list, started: float, output: str) -> str:
  """``cannot write OUT/x.png: No space left on device; 3 image(s) written before it are kept in OUT``;
  removes the unfinished temporary file of the image that failed."""
  done = []
  for t in targets:
    with contextlib.suppress(OSError):
      if t.stat().st_mtime >= started - 1:
        done.append(t)
    with contextlib.suppress(OSError):   # translate_files writes .<stem>.partial.png, then renames it
      t.with_name(f".{t.stem}.partial.png").unlink(missing_ok=True)
  where = Path(e.filename) if e.filename else Path(output)
  if where.name.startswith(".") and where.name.endswith(".partial.png"):
    where = where.with_name(where.name[1:-len(".partial.png")] + ".png")
  return (f"cannot write {where}: {e.strerror or e}; {len(done)} image(s) written before it are kept in {output} "
          "(the inputs are untouched)")
