"""pix2pix on CMP Facades, labels -> photo: the paper's set-up (Isola et al. 2017, Sec. 4).

Data: the reference project's copy of the dataset (400 train / 100 val / 106 test
side-by-side photo|labels images; A is the photo, B the label map, so the
direction is BtoA), e.g. with the authors' script
``bash datasets/download_pix2pix_dataset.sh facades`` from
https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix, giving
``datasets/facades/{train,val,test}/``.

Command:
  jaxgan train --config pix2pix_facades --workdir runs/facades
  jaxgan evaluate --workdir runs/facades

Recipe: U-Net 256 with batch norm and dropout, 70x70 PatchGAN conditioned on
the input, vanilla GAN loss + 100 x L1, Adam 2e-4 / beta1 0.5, batch 1,
resize 286 -> random crop 256 + flip, 100 epochs constant + 100 epochs of
linear decay (80,000 steps).

Result: not run here (no copy of the dataset on the 2-core CPU machine this
project was developed on; at its measured pix2pix speed the 80k steps would
take days). Use the pix2pix_demo recipe for a run that finishes in minutes.
"""
from jaxgan.config import get_base_config


def get_config():
  c = get_base_config()
  c.model = "pix2pix"
  c.dataset = "folder:datasets/facades"
  c.direction = "BtoA"
  c.netG = "unet_256"
  c.norm = "batch"
  c.gan_mode = "vanilla"
  c.lambda_L1 = 100.0
  c.batch_size = 1
  c.load_size, c.crop_size = 286, 256
  c.n_epochs, c.n_epochs_decay = 100, 100
  c.checkpoint_every_steps = 2000
  c.sample_every_steps = 400
  c.eval_every_steps = 10000
  return c
