"""CycleGAN on the built-in demo seasons (summer <-> winter landscapes, unpaired), sized for a CPU.

Command (no download, no GPU needed):
  jaxgan train --config cyclegan_demo --workdir runs/demo
  jaxgan evaluate --workdir runs/demo
  jaxgan translate --workdir runs/demo --input my_summer_pictures/ --output winter/

Recipe: the paper's CycleGAN (ResNet generators and PatchGANs with instance
norm, LSGAN, cycle weights 10/10, identity 0.5, image pools of 50, Adam beta1
0.5) at 64x64 (72 -> random crop 64 + flip) with 6 residual blocks and narrower
networks (ngf = ndf = 16), batch 1, 3,000 steps (constant lr for the first
half, then linear decay), and an exponential moving average of the generators'
weights (ema_decay 0.999, which translate and evaluate use; not in the
reference code). Tuned for a short CPU run, measured on the demo data (AtoB /
BtoA L1 after the run; docs/benchmarks.md has the whole history): lr 4e-4
instead of 2e-4 (1,500 steps: 0.067 / 0.068 -> 0.062 / 0.065); at 2,000 steps
with a 2-layer PatchGAN 0.055 / 0.062, with an average of the weights 0.052 /
0.056; 3,000 steps and the paper's 3-layer PatchGAN with it 0.043 / 0.046.
The anti-aliased resampling of the CUT generator (blur-pool down, bilinear up)
was worse (0.058 / 0.064 at 2,000 steps) and slower; a U-Net generator (unet_64,
ngf 32) was worse (0.127 / 0.111) and slower; crops of 48 were faster but no
better. The demo test split is aligned (each winter image is the same scene as
its summer image), so evaluate can score the translation.

Result: measured 2026-12-02 on a 2-core x86-64 CPU (AMD EPYC, AVX-512), jax
0.10.2, the command above from an empty cache: 4 min 40 s wall including
compile and three evaluations (4 min 31 s for the same computation before the
EMA was debiased; one run during a slow spell of the machine, 9 instead of 12
img/s, took 6 min 0 s); `jaxgan evaluate`
on the 50 aligned test scenes, L1 / PSNR / SSIM on [0, 1]:
  summer->winter (AtoB): 0.043 / 21.5 dB / 0.637
    copy input 0.330 / 7.6 / 0.455; mean image 0.074 / 18.8 / 0.461; oracle 0.014 / 31.4 / 0.884
  winter->summer (BtoA): 0.046 / 22.8 dB / 0.624
    copy input 0.330 / 7.6 / 0.455; mean image 0.083 / 18.2 / 0.433; oracle 0.015 / 34.1 / 0.889
-- 41% / 44% below the mean image's L1, closing 51% / 54% of the gap to the oracle
(seeds 1 and 2: 49-51%). Sample grids: the seasons change in the right places
(overcast sky, snow, the far ridge, frosted woods); trees come out as dark
smudges, and a faint grid texture is left in the flat snow and sky.
"""
from jaxgan.config import get_cyclegan_base_config


def get_config():
  c = get_cyclegan_base_config()
  c.dataset = "demo:seasons"
  c.demo_train_size = 400
  c.demo_test_size = 50
  c.netG = "resnet_6blocks"
  c.ngf, c.ndf = 16, 16
  c.lr = 4e-4
  c.netD, c.n_layers_D = "n_layers", 3
  c.load_size, c.crop_size = 72, 64
  c.batch_size = 1
  c.pool_size = 50
  c.num_train_steps = 3000
  c.ema_decay = 0.999
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.sample_every_steps = 250
  c.eval_every_steps = 1000
  return c
