"""CUT on horse -> zebra (and the other unpaired sets): the authors' set-up (Park et al., ECCV 2020).

Data: TFDS ``cycle_gan/<pair>`` prepared once as ArrayRecord (TensorFlow for that step only), or a local
copy in the authors' layout with ``--config.dataset=folder:datasets/horse2zebra``:

  pip install -e ".[tfds]"
  jaxgan prepare tfds:cycle_gan/horse2zebra
  jaxgan train --config cut_horse2zebra --workdir runs/h2z_cut
  jaxgan evaluate --workdir runs/h2z_cut --fid
  jaxgan translate --workdir runs/h2z_cut --input my_horses/ --output zebras/

The authors' command: ``python train.py --dataroot ./datasets/horse2zebra --name h2z_CUT --CUT_mode CUT``.

Recipe (their CUT_mode=CUT defaults, checked in their options and models/cut_model.py): anti-aliased
resnet_9blocks generator and basic PatchGAN, instance norm, xavier init gain 0.02, no dropout; LSGAN,
lambda_GAN 1, PatchNCE with lambda_NCE 1 on G's layers 0,4,8,12,16, 256 patches per layer, a 2-layer
MLP head of 256 (netF_nc), nce_T 0.07, the identity NCE term on (nce_idt), no flip-equivariance, no image
pool; Adam 2e-4 / (0.5, 0.999) for G, D and F; batch 1; resize 286 -> random crop 256 + flip; 200 epochs
constant + 200 of linear decay (an epoch is max(|A|, |B|) steps, 1334 for horse2zebra).

Result: the published FID 45.5 on horse2zebra (pytorch-fid, fakes of the 120 test horses against the test zebras;
CycleGAN 77.2, FastCUT 73.4). Not run here (534k steps; weeks on the 2-core development CPU): the
cut_demo recipe finishes in minutes.
"""
from jaxgan.config import get_base_config

PAIRS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
         "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower")


def get_config(pair: str = "horse2zebra"):
  if pair not in PAIRS:
    raise ValueError(f"unknown cycle_gan pair {pair!r}; choose one of: {', '.join(PAIRS)}")
  c = get_base_config("cut")
  c.dataset = f"tfds:cycle_gan/{pair}"
  c.netG, c.netD, c.norm = "resnet_9blocks", "basic", "instance"
  c.no_antialias = c.no_antialias_up = False
  c.init_type, c.init_gain = "xavier", 0.02
  c.no_dropout = True
  c.gan_mode = "lsgan"
  c.lambda_GAN, c.lambda_NCE = 1.0, 1.0
  c.nce_idt, c.flip_equivariance = True, False
  c.nce_layers = (0, 4, 8, 12, 16)
  c.nce_T, c.num_patches, c.netF_nc = 0.07, 256, 256
  c.batch_size = 1
  c.lr, c.beta1 = 2e-4, 0.5
  c.load_size, c.crop_size = 286, 256
  c.n_epochs, c.n_epochs_decay = 200, 200
  c.checkpoint_every_steps = 2000
  c.sample_every_steps = 500
  c.eval_every_steps = 0
  return c
