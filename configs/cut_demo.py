"""CUT on the built-in demo seasons (summer -> winter landscapes, unpaired), sized for a CPU.

Command (no download, no GPU needed):
  jaxgan train --config cut_demo --workdir runs/cut_demo
  jaxgan evaluate --workdir runs/cut_demo
  jaxgan translate --workdir runs/cut_demo --input my_summer_pictures/ --output winter/

Recipe: the authors' CUT losses (LSGAN, PatchNCE with lambda_NCE 1 and the identity term on layers
0,4,8,12,16, 256 patches, netF_nc 256, nce_T 0.07, ResNet generator and PatchGAN with instance norm)
at 64x64 (72 -> random crop 64 + flip) with 6 residual blocks and narrower networks (ngf = ndf = 16),
batch 1, 3,000 steps (constant lr for the first half, then linear decay), lr 4e-4 and an average of
G's weights (ema_decay 0.999), as the cyclegan_demo recipe, and the plain strided/transposed
resampling (no_antialias, no_antialias_up) instead of the authors' anti-aliased one: at this size the
anti-aliased PatchGAN won outright (D 0.005, G_GAN 0.99 from step 1,000) and the translation got worse
than the mean image (L1 0.085 at step 1,000, 0.163 at 2,000), at half the speed (4 against 8 img/s).
The demo test split is aligned (each winter image is the same scene as its summer image), so evaluate
can score the translation (AtoB only: CUT has one generator).

Result: measured 2026-12-05 on the 2-core development CPU, jax 0.10.2, the command above (two runs
sharing the 2 cores: 14 min wall each, about 4 img/s; alone about 8 img/s), `jaxgan evaluate`'s
metrics on the 50 aligned test scenes, L1 / PSNR / SSIM on [0, 1], summer->winter (AtoB):
  step 1,000: 0.057; 2,000: 0.046; 3,000: 0.042 / 22.1 dB / 0.669
    copy input 0.330 / 7.6 / 0.455; mean image 0.074 / 18.8 / 0.461; oracle 0.014 / 31.4 / 0.884
-- 44% below the mean image's L1 (cyclegan_demo: 41%, with two generators). The same recipe with lr
2e-4 and a 2-layer PatchGAN: 0.045 (39%).
"""
from jaxgan.config import get_base_config


def get_config():
  c = get_base_config("cut")
  c.dataset = "demo:seasons"
  c.demo_train_size = 400
  c.demo_test_size = 50
  c.netG = "resnet_6blocks"
  c.ngf, c.ndf = 16, 16
  c.netD, c.n_layers_D = "n_layers", 3
  c.no_antialias = c.no_antialias_up = True   # the anti-aliased networks lost at 64x64 (docstring)
  c.lr = 4e-4
  c.load_size, c.crop_size = 72, 64
  c.batch_size = 1
  c.num_train_steps = 3000
  c.ema_decay = 0.999
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.sample_every_steps = 250
  c.eval_every_steps = 1000
  return c
