"""pix2pix on Google Maps, aerial photo -> map: the paper's set-up (Isola et al. 2017).

Data: the reference project's copy (1096 train / 1098 val side-by-side
aerial|map images at 600x600 per side), e.g. with the authors' script
``bash datasets/download_pix2pix_dataset.sh maps``, giving ``datasets/maps/{train,val}/``.
Set ``--config.direction=BtoA`` for map -> aerial photo.

Command:
  jaxgan train --config pix2pix_maps --workdir runs/maps
  jaxgan evaluate --workdir runs/maps --split val

Recipe: as the pix2pix_facades recipe (U-Net 256, batch norm, PatchGAN,
vanilla GAN + 100 x L1, batch 1, 286 -> 256 crops), 100 + 100 epochs
(219,200 steps).

Result: not run here (no copy of the dataset on the development machine).
"""
from jaxgan.config import get_base_config


def get_config():
  c = get_base_config()
  c.model = "pix2pix"
  c.dataset = "folder:datasets/maps"
  c.direction = "AtoB"
  c.netG = "unet_256"
  c.norm = "batch"
  c.gan_mode = "vanilla"
  c.lambda_L1 = 100.0
  c.batch_size = 1
  c.load_size, c.crop_size = 286, 256
  c.n_epochs, c.n_epochs_decay = 100, 100
  c.checkpoint_every_steps = 5000
  c.sample_every_steps = 1000
  c.eval_every_steps = 20000
  return c
