"""``jaxgan export``: a workdir's networks for elsewhere: the authors' ``.pth`` files, or ONNX generators."""
from __future__ import annotations

import argparse
import sys

NAME = "export"
HELP = "export the trained networks: the authors' .pth layout (their test.py) or ONNX (inference runtimes)"

EPILOG = """\
pth:  OUTPUT is a folder; writes latest_net_G.pth (pix2pix) or latest_net_G_A.pth / latest_net_G_B.pth
      (CycleGAN), plus the discriminators (latest_net_D.pth, latest_net_D_A.pth, ...) when the workdir has
      trained ones and no --direction is given: plain state_dicts that the authors' networks for the same
      netG / norm / dropout load with strict=True. Needs PyTorch. CUT/FastCUT: latest_net_G.pth (+ D and
      the patch head latest_net_F.pth) in taesungp/contrastive-unpaired-translation's layout, filt buffers included.
        python test.py --dataroot DATA --name NAME --checkpoints_dir DIR --model test --no_dropout \\
            --netG resnet_9blocks --norm instance --model_suffix _A    (OUTPUT = DIR/NAME)
onnx: OUTPUT is a .onnx file (one direction) or a folder of AtoB.onnx / BtoA.onnx. The graph takes uint8
      NHWC images ("images", any batch size; H and W multiples of the generator's stride, dynamic where the
      exporter can trace it, else fixed at --size, default config.crop_size) and returns uint8 NHWC images
      ("translated"), the [-1, 1] scaling inside. It computes what `jaxgan translate --eval` computes:
      BatchNorm running statistics, no dropout (not the reference's default test-time mode), with the
      EMA weights when the run keeps them. metadata_props: jaxgan_version, objective, direction,
      input_size, config (JSON). Needs jax2onnx and onnx (pip install 'jaxgan[onnx]').
Nothing is replaced unless --overwrite; nothing is written when a check fails."""


def add_parser(subparsers) -> None:
  from jaxgan.interop.export import DISCRIMINATOR_CHOICES, FORMATS  # pylint: disable=import-outside-toplevel
  p = subparsers.add_parser(NAME, help=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Export WORKDIR's newest checkpoint for the authors' code or ONNX runtimes.")
  p.add_argument("--workdir", required=True, help="the training run's (or import's) folder")
  p.add_argument("--format", required=True, choices=FORMATS, help="pth (authors' state_dicts) or onnx")
  p.add_argument("--output", required=True, help="pth: a folder; onnx: a .onnx file or a folder")
  p.add_argument("--direction", default=None, choices=("AtoB", "BtoA"),
                 help="export this direction's generator only (default: every generator of the model)")
  p.add_argument("--discriminators", default="auto", choices=DISCRIMINATOR_CHOICES,
                 help="pth: also write the discriminators (auto: when the workdir has trained ones and no "
                      "--direction is given; yes: required)")
  p.add_argument("--size", default=None, metavar="N|HxW",
                 help="onnx: fixed input size (default: dynamic where the exporter allows, else config.crop_size)")
  p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
  from jaxgan.interop import export  # pylint: disable=import-outside-toplevel
  try:
    if args.format == "pth":
      if args.size is not None:
        raise export.ExportError("--size is for --format onnx (a .pth file has no input size)")
      loaded = export.load_workdir(args.workdir)
      paths = export.export_pth(loaded, args.output, direction=args.direction,
                                discriminators=args.discriminators, overwrite=args.overwrite)
      print(f"wrote {len(paths)} .pth file(s) (checkpoint step {loaded.step}, {loaded.config.model}):",
            file=sys.stderr)
      for line in export.describe_pth(loaded, paths):
        print(line, file=sys.stderr)
      return 0
    from jaxgan.interop import onnx_export  # pylint: disable=import-outside-toplevel
    if args.discriminators == "yes":
      raise export.ExportError("--discriminators yes is for --format pth (ONNX export writes generators)")
    size = onnx_export.parse_size(args.size)
    loaded = export.load_workdir(args.workdir)
    directions = export.directions_for(loaded.objective, args.direction)
    onnx_export.onnx_targets(args.output, directions)   # a bad --output fails before the conversion
    written = onnx_export.export_onnx(loaded, args.output, directions=directions, size=size,
                                      overwrite=args.overwrite)
  except ImportError as e:
    print(f"jaxgan {NAME}: error: {e}", file=sys.stderr)
    return 1
  print(f"wrote {len(written)} ONNX file(s) (checkpoint step {loaded.step}, {loaded.config.model}; uint8 NHWC in "
        "and out, translate --eval):", file=sys.stderr)
  for path, size_text in written:
    print(f"  {path}  (input size {size_text}, any batch size)", file=sys.stderr)
  return 0
