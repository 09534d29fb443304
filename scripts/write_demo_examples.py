"""Write the example grids of the built-in demo datasets (docs/demo_facades.png, docs/demo_seasons.png).

    python scripts/write_demo_examples.py [DIR] [--size 160] [--n 5]

``DIR`` defaults to ``docs/``; the pictures are drawn by :func:`jaxgan.data.demo_examples.write_examples`.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxgan.data import demo_examples  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("out_dir", nargs="?", default="docs", help="folder for the example PNGs (default docs/)")
  parser.add_argument("--size", type=int, default=160, help="side of each picture in pixels")
  parser.add_argument("--n", type=int, default=5, help="examples per row")
  args = parser.parse_args(argv)
  for path in demo_examples.write_examples(args.out_dir, size=args.size, n=args.n):
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
