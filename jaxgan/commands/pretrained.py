"""``jaxgan pretrained``: download (once, into a cache) and import one of the authors' released models."""
from __future__ import annotations

import argparse
import os
import sys

NAME = "pretrained"
HELP = "download (when online) and import one of the authors' released generators (pix2pix, CycleGAN, CUT)"


def add_parser(subparsers) -> None:
  from jaxgan import objectives  # pylint: disable=import-outside-toplevel
  from jaxgan.interop import zoo  # pylint: disable=import-outside-toplevel
  released = [n for n in objectives.importable() if any(m.model == n for m in zoo.MODELS)]
  p = subparsers.add_parser(
      NAME, help=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
      description="Download the authors' released generator NAME from their published URL into a cache (once) "
      "and import it as a translate-only workdir. `jaxgan pretrained --list` shows the released models.",
      epilog="Example:\n  jaxgan pretrained horse2zebra --workdir runs/h2z\n"
      "  jaxgan translate --workdir runs/h2z --input horses/ --output zebras/\n"
      "Names released for both models need the model: cyclegan/sat2map or pix2pix/sat2map (or --model).")
  p.add_argument("name", nargs="?", metavar="NAME", help="e.g. horse2zebra, style_monet, pix2pix/facades_label2photo")
  p.add_argument("--workdir", default=None, help="a new folder for the imported model")
  p.add_argument("--list", action="store_true", help="print the table of released models and exit")
  p.add_argument("--model", choices=released, default=None,   # objectives with an import plan and released models
                 help="for names released for both models")
  p.add_argument("--cache", default=None,
                 help="download folder (default $JAXGAN_PRETRAINED_DIR or ~/.cache/jaxgan/pretrained)")
  p.add_argument("--url", default=None, help="download from this URL instead of the authors' (a mirror)")
  p.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
  p.add_argument("--dataset", default=None, help="config.dataset (default folder:datasets/<its dataset>)")
  p.add_argument("--config", default=None, metavar="FILE[:ARG]", help="a recipe for the other settings")


def manual_steps(entry, workdir: str) -> str:
  """How to do by hand what the command could not: fetch the file, then import it."""
  flags = f"--model {entry.model} --direction {entry.direction}" + (" --dropout" if entry.dropout else "")
  if entry.member:   # one archive of several models (CUT)
    return (f"The authors publish it in {entry.url}\n"
            f"Fetch it by hand (on a machine that is online, then copy it here) and import it:\n"
            f"  curl -L -o {os.path.basename(entry.url)} {entry.url}\n"
            f"  tar -xf {os.path.basename(entry.url)} {entry.member}\n"
            f"  jaxgan import-torch {entry.member} --workdir {workdir} {flags} --dataset {entry.jaxgan_dataset}")
  return (f"The authors publish it at {entry.url}\n"
          f"Fetch it by hand (on a machine that is online, then copy it here) and import it:\n"
          f"  curl -L -o {entry.name}.pth {entry.url}\n"
          f"  jaxgan import-torch {entry.name}.pth --workdir {workdir} {flags} --dataset {entry.jaxgan_dataset}")


def run(args: argparse.Namespace) -> int:
  from jaxgan.commands import import_torch  # pylint: disable=import-outside-toplevel
  from jaxgan.interop import workdir, zoo  # pylint: disable=import-outside-toplevel
  if args.list:
    print(zoo.markdown_table())
    return 0
  if not args.name or not args.workdir:
    print(f"jaxgan {NAME}: error: give NAME and --workdir (or --list)", file=sys.stderr)
    return 2
  entry = zoo.find(args.name, args.model)
  workdir.check_target(args.workdir)   # refuse before downloading anything
  recipe = import_torch.load_recipe(args.config)
  try:
    path, downloaded = zoo.fetch(entry, cache_dir=args.cache, url=args.url, timeout=args.timeout)
  except zoo.DownloadError as e:
    print(f"jaxgan {NAME}: error: {e}\n{manual_steps(entry, args.workdir)}", file=sys.stderr)
    return 1
  print(f"{'downloaded' if downloaded else 'using the cached'} {entry.key}: {path}", file=sys.stderr)
  try:
    plan = workdir.import_files([path], args.workdir, roles=["G"], model=entry.model, direction=entry.direction,
                                use_dropout=entry.dropout, base_config=recipe,
                                dataset=args.dataset or entry.jaxgan_dataset,
                                source={"source": f"pretrained:{entry.key}", "url": args.url or entry.url})
  except ImportError as e:
    print(f"jaxgan {NAME}: error: {e}", file=sys.stderr)
    return 1
  import_torch.print_summary(plan, args.workdir, args.config)
  return 0
