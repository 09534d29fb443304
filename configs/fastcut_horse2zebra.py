"""FastCUT on horse -> zebra: the authors' CUT_mode=FastCUT (Park et al., ECCV 2020).

  jaxgan prepare tfds:cycle_gan/horse2zebra
  jaxgan train --config fastcut_horse2zebra --workdir runs/h2z_fastcut
  jaxgan evaluate --workdir runs/h2z_fastcut --fid

The authors' command: ``python train.py --dataroot ./datasets/horse2zebra --name h2z_FastCUT
--CUT_mode FastCUT``.

Recipe: cut_horse2zebra's with their FastCUT presets: lambda_NCE 10, no identity NCE term (nce_idt off),
flip-equivariance (the batch flipped horizontally with probability 0.5 before G, the query features
flipped back), 150 epochs constant + 50 of linear decay. FastCUT is published as about half CycleGAN's
memory and twice its training speed (one generator, one discriminator, no identity pass).

Result: the published FID 73.4 on horse2zebra (CUT 45.5, CycleGAN 77.2). Not run here (267k steps).
"""
import importlib.util
from pathlib import Path

# The CUT recipe beside this file (whether configs/ is run from the checkout or installed as jaxgan.configs).
_spec = importlib.util.spec_from_file_location("_cut_horse2zebra", Path(__file__).with_name("cut_horse2zebra.py"))
_cut = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cut)
PAIRS = _cut.PAIRS


def get_config(pair: str = "horse2zebra"):
  c = _cut.get_config(pair)
  c.lambda_NCE = 10.0
  c.nce_idt = False
  c.flip_equivariance = True
  c.n_epochs, c.n_epochs_decay = 150, 50
  return c
