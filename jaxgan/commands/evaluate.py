"""``jaxgan evaluate``: metrics of a trained model on a split; one JSON line, WORKDIR/eval.json."""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from jaxgan.commands.base import UsageError

NAME = "evaluate"
HELP = "L1 / PSNR / SSIM (and with --fid FID / KID) on the test split; prints JSON, writes WORKDIR/eval.json"


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, description=(
      "Evaluate WORKDIR's newest checkpoint (or --step) on a split of its dataset. Metrics on [0,1] images: l1 "
      "(lower is better), psnr in dB and ssim (higher is better). Baselines: copy_input_* returns the input "
      "unchanged, mean_image_* predicts the split's mean target image for every input, oracle_* (demo data) is a "
      "second rendering of the same scene; BtoA_* is the second direction of a CycleGAN. --fid adds fid, kid, kid_std "
      "(pytorch-fid's Inception and numbers): fake B from every A image against the real B images, and for a "
      "CycleGAN BtoA_fid, ... the other way, as the CUT repository evaluates."))
  p.add_argument("--workdir", required=True, help="the training run's folder")
  p.add_argument("--split", default="test", help="dataset split (default test)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step to use (default: newest)")
  p.add_argument("--eval", action="store_true", help="running BatchNorm averages and no dropout")
  p.add_argument("--batches", type=int, default=-1, help="evaluate at most this many batches (-1: all)")
  p.add_argument("--fid", action="store_true", help="also FID and KID (needs pytorch-fid's Inception weights)")
  p.add_argument("--fid_weights", "--fid-weights", default=None, metavar="FILE",
                 help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: $JAXGAN_FID_WEIGHTS, the "
                 "cache, else a download when online)")
  p.add_argument("--fid_batch_size", "--fid-batch-size", type=int, default=50,
                 help="images per Inception batch (default 50)")


def run(args: argparse.Namespace) -> int:
  from jaxgan import inference  # pylint: disable=import-outside-toplevel
  if Path(args.workdir).exists() and not Path(args.workdir).is_dir():
    raise NotADirectoryError(f"--workdir {args.workdir} is a file, not a directory: give the training run's folder")
  extractor = None
  if args.fid:   # the weights first: a missing file fails before the checkpoint is read
    from jaxgan import fid, fid_eval, fid_io  # pylint: disable=import-outside-toplevel
    if args.fid_batch_size < 1:
      raise UsageError(f"--fid_batch_size must be >= 1, got {args.fid_batch_size}")
    extractor = fid.FeatureExtractor(fid_io.load_weights(args.fid_weights), batch_size=args.fid_batch_size)
  state, config, _ = inference.load_for_inference(args.workdir, args.step)
  results = inference.evaluate(config, state, split=args.split, max_batches=args.batches, eval_mode=args.eval)
  if extractor is not None:
    results.update(fid_eval.model_fid(config, state, extractor, split=args.split, max_batches=args.batches,
                                      eval_mode=args.eval))
  name = "eval.json" if args.split == "test" else f"eval_{args.split}.json"
  print(json.dumps(results), flush=True)   # first: a workdir that cannot be written still gives the metrics
  path = Path(args.workdir) / name
  try:
    inference.write_json(path, results)
  except OSError as e:
    with contextlib.suppress(OSError):   # no half-written file left behind (write_json's temporary)
      path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    raise OSError(f"cannot write {path}: {e.strerror or e}; the metrics were printed above (not saved)") from e
  return 0
