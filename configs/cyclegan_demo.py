"""CycleGAN on the built-in demo seasons (summer <-> winter landscapes, unpaired), sized for a CPU.

Command (no download, no GPU needed):
  jaxgan train --config configs/cyclegan_demo.py --workdir runs/demo
  jaxgan evaluate --workdir runs/demo
  jaxgan translate --workdir runs/demo --input my_summer_pictures/ --output winter/

Recipe: the paper's CycleGAN (ResNet generators and PatchGANs with instance
norm, LSGAN, cycle weights 10/10, identity 0.5, image pools, Adam 2e-4 /
beta1 0.5) at 64x64 (72 -> random crop 64 + flip) with 6 residual blocks and
narrower networks (ngf = ndf = 16), batch 1, 1,500 steps (constant lr for the first half,
then linear decay). The demo test split is aligned (each winter image is the
same scene as its summer image), so evaluate can score the translation.

Result: measured 2026-11-25 on a 2-core x86-64 CPU, jax 0.10.2, the command above; 3 min 43 s
wall for the whole run including compile and three evaluations; `jaxgan evaluate`
on the 50 aligned test scenes, metrics on [0, 1] images:
  summer->winter (AtoB): L1 0.095, PSNR 15.5 dB, SSIM 0.318
  winter->summer (BtoA): L1 0.111, PSNR 16.2 dB, SSIM 0.257
  copying the input:     L1 0.343, PSNR  7.4 dB, SSIM 0.315
(A run of the previous code, differing only in float rounding, took 3 min 00 s and reached
AtoB 0.093 / 15.8 / 0.322 and BtoA 0.088 / 17.8 / 0.329: GAN runs this short vary.)
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
