"""``jaxgan evaluate``: metrics of a trained model on a split; one JSON line, WORKDIR/eval.json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "evaluate"
HELP = "L1 / PSNR / SSIM on the test split, with baselines; prints JSON, writes WORKDIR/eval.json"


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, description=(
      "Evaluate WORKDIR's newest checkpoint (or --step) on a split of its dataset. Metrics on [0,1] images: l1 "
      "(lower is better), psnr in dB and ssim (higher is better). Baselines: copy_input_* returns the input "
      "unchanged, mean_image_* predicts the split's mean target image for every input, oracle_* (demo data) is a "
      "second rendering of the same scene; BtoA_* is the second direction of a CycleGAN."))
  p.add_argument("--workdir", required=True, help="the training run's folder")
  p.add_argument("--split", default="test", help="dataset split (default test)")
  p.add_argument("--step", type=int, default=None, help="checkpoint step to use (default: newest)")
  p.add_argument("--eval", action="store_true", help="running BatchNorm averages and no dropout")
  p.add_argument("--batches", type=int, default=-1, help="evaluate at most this many batches (-1: all)")


def run(args: argparse.Namespace) -> int:
  from jaxgan import inference  # pylint: disable=import-outside-toplevel
  state, config, _ = inference.load_for_inference(args.workdir, args.step)
  results = inference.evaluate(config, state, split=args.split, max_batches=args.batches, eval_mode=args.eval)
  name = "eval.json" if args.split == "test" else f"eval_{args.split}.json"
  inference.write_json(Path(args.workdir) / name, results)
  print(json.dumps(results))
  return 0
