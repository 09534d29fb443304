"""CycleGAN on the built-in demo seasons (summer <-> winter landscapes, unpaired), sized for a CPU.

Command (no download, no GPU needed):
  jaxgan train --config configs/cyclegan_demo.py --workdir runs/demo
  jaxgan evaluate --workdir runs/demo
  jaxgan translate --workdir runs/demo --input my_summer_pictures/ --output winter/

Recipe: the paper's CycleGAN (ResNet generators and PatchGANs with instance
norm, LSGAN, cycle weights 10/10, identity 0.5, image pools, Adam 2e-4 /
beta1 0.5) at 64x64 (72 -> random crop 64 + flip) with 6 residual blocks and
narrower networks, batch 1, RESULT_STEPS steps (constant lr for the first half,
then linear decay). The demo test split is aligned (each winter image is the
same scene as its summer image), so evaluate can score the translation.

Result: RESULT
"""
from jaxgan.config import get_cyclegan_base_config


def get_config():
  c = get_cyclegan_base_config()
  c.dataset = "demo:seasons"
  c.demo_train_size = 400
  c.demo_test_size = 50
  c.netG = "resnet_6blocks"
  c.ngf, c.ndf = 16, 16
  c.n_layers_D = 3
  c.load_size, c.crop_size = 72, 64
  c.batch_size = 1
  c.pool_size = 50
  c.num_train_steps = 1500
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.sample_every_steps = 250
  c.eval_every_steps = 500
  return c
