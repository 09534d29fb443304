"""How strong a trained generator's checkerboard is: the fixed periodic pattern in its test outputs.

    python scripts/checkerboard.py --workdir runs/demo [--period 4] [--step N]

Translates the (paired) test split with each generator of the run and prints, per
direction, the amplitude of the ``period``-periodic pattern in the outputs and in
the targets (see :func:`jaxgan.metrics.periodic_pattern`), in levels of 255. An
output figure near the targets' means no fixed checkerboard is left.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from jaxgan import data, inference, metrics, objectives  # noqa: E402  pylint: disable=wrong-import-position
from jaxgan.images import batch_to_float  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="a training run's folder")
  parser.add_argument("--period", type=int, default=4, help="the pattern's period in pixels (4: two stride-2 layers)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
  args = parser.parse_args(argv)
  state, config, step = inference.load_for_inference(args.workdir, args.step)
  model = objectives.for_config(config)
  pipe = data.create_pipeline(config, split="test", shuffle=False, process_index=0, process_count=1, num_epochs=1)
  if not pipe.paired:
    print(f"{config.dataset}: the test split is not paired; the targets' figure is left out", file=sys.stderr)
  sources, targets = {"AtoB": "A", "BtoA": "B"}, {"AtoB": "B", "BtoA": "A"}
  outs: dict[str, list] = {d: [] for d in model.DIRECTIONS}
  tgts: dict[str, list] = {d: [] for d in model.DIRECTIONS}
  start = 0
  for batch in map(batch_to_float, pipe.iterator()):   # pixels as shipped -> [-1, 1] for the pattern
    ids = np.arange(start, start + len(batch["A"]), dtype=np.uint32)
    start += len(ids)
    for d in model.DIRECTIONS:
      outs[d].append(np.asarray(inference._translate_fn(model, config, d, False)(  # pylint: disable=protected-access
          state, batch[sources[d]], ids)))
      tgts[d].append(batch[targets[d]])
  print(f"{args.workdir} step {step}: period-{args.period} pattern, levels of 255 (output / target)")
  for d in model.DIRECTIONS:
    out = 255 * metrics.periodic_pattern(np.concatenate(outs[d]), args.period)
    tgt = 255 * metrics.periodic_pattern(np.concatenate(tgts[d]), args.period) if pipe.paired else float("nan")
    print(f"  {d}: {out:.2f} / {tgt:.2f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
