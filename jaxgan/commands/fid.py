"""``jaxgan fid``: FID and KID between two folders of images or pytorch-fid stats files; one JSON line.

Like ``python -m pytorch_fid PATH1 PATH2`` (same network, same numbers), plus KID
(torch-fidelity's defaults) when both paths are folders. ``--save-stats FOLDER
OUT.npz`` writes the folder's statistics in pytorch-fid's format instead.
"""
from __future__ import annotations

import argparse
import json
import os

NAME = "fid"
HELP = "FID / KID between two image folders or pytorch-fid .npz stats (pytorch-fid's numbers); one JSON line"

EPILOG = """\
Each PATH is a folder of images (its own files, not subfolders; RGB, any size: resized to 299x299 as
pytorch-fid) or an .npz of mu/sigma as pytorch-fid writes. Prints {"fid", "kid", "kid_std" (folders only),
"images_1", "images_2"}.
Weights: --weights FILE, else $JAXGAN_FID_WEIGHTS, else the cache ($JAXGAN_FID_CACHE_DIR, default
~/.cache/jaxgan/fid), else a download of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (when online).
A .pth is converted once (needs torch that time) and cached as .npz."""


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def add_parser(subparsers) -> None:
  p = subparsers.add_parser(NAME, help=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="FID (and KID between folders) with pytorch-fid's Inception and numerics.")
  p.add_argument("paths", nargs=2, metavar="PATH", help="a folder of images or a pytorch-fid .npz of mu/sigma")
  p.add_argument("--weights", default=None, metavar="FILE",
                 help="pytorch-fid's Inception weights (.pth, or the .npz cache of one)")
  p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=_positive, default=50,
                 help="images per batch (default 50, as pytorch-fid)")
  p.add_argument("--save-stats", "--save_stats", dest="save_stats", action="store_true",
                 help="write the statistics of the folder PATH1 to the .npz PATH2 instead (never replaces a file)")


def run(args: argparse.Namespace) -> int:
  # pylint: disable=import-outside-toplevel
  from jaxgan import fid, fid_io
  from jaxgan.data.image_io import DataError

  path1, path2 = args.paths
  extractor = None

  def get_extractor():
    nonlocal extractor
    if extractor is None:
      extractor = fid.FeatureExtractor(fid_io.load_weights(args.weights), batch_size=args.batch_size)
    return extractor

  if args.save_stats:
    if fid_io.is_stats_file(path1):
      raise DataError(f"--save-stats: PATH1 must be a folder of images, got the stats file {path1!r}")
    if not fid_io.is_stats_file(path2):
      raise DataError(f"--save-stats: PATH2 is the .npz to write, got {path2!r}")
    if os.path.exists(path2):   # before any work (save_stats checks again when writing)
      raise FileExistsError(f"{path2!r} exists; FID statistics are never written over an existing file")
    fid_io.list_images(path1)
    mu, sigma, feats = fid_io.statistics_of(path1, get_extractor, batch_size=args.batch_size)
    fid_io.save_stats(path2, mu, sigma)
    print(json.dumps({"saved": path2, "images": len(feats)}))
    return 0

  for path in (path1, path2):   # fail on a bad second path before computing the first
    if fid_io.is_stats_file(path):
      fid_io.load_stats(path)
    else:
      fid_io.list_images(path)
  mu1, sigma1, f1 = fid_io.statistics_of(path1, get_extractor, batch_size=args.batch_size)
  mu2, sigma2, f2 = fid_io.statistics_of(path2, get_extractor, batch_size=args.batch_size)
  if mu1.shape != mu2.shape:
    raise DataError(f"{path1!r} and {path2!r} hold statistics of different feature sizes "
                    f"({mu1.shape[0]} and {mu2.shape[0]})")
  result = {"fid": fid.frechet_distance(mu1, sigma1, mu2, sigma2)}
  if f1 is not None and f2 is not None:
    result["kid"], result["kid_std"] = fid.kid(f1, f2)
  result["images_1"] = None if f1 is None else len(f1)
  result["images_2"] = None if f2 is None else len(f2)
  print(json.dumps(result))
  return 0
