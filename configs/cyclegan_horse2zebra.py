"""CycleGAN on horse <-> zebra (and the other unpaired sets): the paper's set-up (Zhu et al. 2017).

Data: TFDS ``cycle_gan/<pair>``, prepared once as ArrayRecord (the format
jaxgan reads; TensorFlow is needed for this step only); training then reads it
without TensorFlow. Another pair is a config argument:

  pip install -e ".[tfds]"
  jaxgan prepare tfds:cycle_gan/horse2zebra        # [--data_dir DIR], then --config.tfds_data_dir=DIR
  jaxgan train --config cyclegan_horse2zebra --workdir runs/horse2zebra
  jaxgan prepare tfds:cycle_gan/monet2photo
  jaxgan train --config cyclegan_horse2zebra:monet2photo --workdir runs/monet2photo
  jaxgan translate --workdir runs/horse2zebra --input my_horses/ --output zebras/

Pairs: apple2orange, summer2winter_yosemite, horse2zebra, monet2photo,
cezanne2photo, ukiyoe2photo, vangogh2photo, maps, cityscapes, facades,
iphone2dslr_flower. A local copy in the reference layout works too:
``--config.dataset=folder:datasets/horse2zebra``.

Recipe: ResNet 9-block generators and 70x70 PatchGANs with instance norm,
LSGAN loss, cycle weights 10/10, identity 0.5, image pools of 50, Adam 2e-4 /
beta1 0.5, batch 1, resize 286 -> random crop 256 + flip, 100 epochs constant +
100 epochs of linear decay (an epoch is max(|A|, |B|) steps, 1334 for horse2zebra).

Result: not run here (the dataset needs TensorFlow to prepare and the 267k
steps would take weeks on the 2-core development CPU). Use
the cyclegan_demo recipe for a run that finishes in minutes.
"""
from jaxgan.config import get_cyclegan_base_config

PAIRS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
         "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower")


def get_config(pair: str = "horse2zebra"):
  if pair not in PAIRS:
    raise ValueError(f"unknown cycle_gan pair {pair!r}; choose one of: {', '.join(PAIRS)}")
  c = get_cyclegan_base_config()
  c.dataset = f"tfds:cycle_gan/{pair}"
  c.netG = "resnet_9blocks"
  c.netD = "basic"
  c.norm = "instance"
  c.no_dropout = True
  c.gan_mode = "lsgan"
  c.lambda_A = c.lambda_B = 10.0
  c.lambda_identity = 0.5
  c.pool_size = 50
  c.batch_size = 1
  c.load_size, c.crop_size = 286, 256
  c.n_epochs, c.n_epochs_decay = 100, 100
  c.checkpoint_every_steps = 2000
  c.sample_every_steps = 500
  c.eval_every_steps = 0
  return c
