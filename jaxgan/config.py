"""Default hyper-parameters shared by every recipe (ml_collections ConfigDict).

The keys follow the option names of the reference PyTorch project where one
exists (``netG``, ``lambda_L1``, ``n_epochs_decay``, ...). Recipes in
``configs/`` start from :func:`get_base_config` and override what differs.
"""
from __future__ import annotations

import ml_collections

MODELS = ("pix2pix", "cyclegan")
GENERATORS = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan", "wgangp")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DTYPES = ("float32", "bfloat16")


def get_base_config() -> ml_collections.ConfigDict:
  """Every key a run may set, with the reference project's defaults (pix2pix flavour)."""
  c = ml_collections.ConfigDict()
  c.model = "pix2pix"
  # Data.
  c.dataset = "demo:facades"
  c.load_size = 286
  c.crop_size = 256
  c.preprocess = "resize_and_crop"
  c.no_flip = False
  c.direction = "AtoB"          # which side of a paired dataset is the input
  c.input_nc = 3
  c.output_nc = 3
  c.skip_bad_images = False
  c.num_workers = 0             # Grain worker processes (0: read in the main process)
  c.max_dataset_size = -1       # cap on examples per domain; -1 = all
  # Networks.
  c.netG = "unet_256"
  c.netD = "basic"
  c.n_layers_D = 3
  c.ngf = 64
  c.ndf = 64
  c.norm = "batch"
  c.no_dropout = False
  c.init_type = "normal"
  c.init_gain = 0.02
  # Objective.
  c.gan_mode = "vanilla"
  c.lambda_L1 = 100.0
  c.lambda_A = 10.0
  c.lambda_B = 10.0
  c.lambda_identity = 0.5
  c.lambda_gp = 10.0            # gradient penalty weight, gan_mode=wgangp only
  c.pool_size = 0
  # Optimisation and schedule.
  c.batch_size = 1
  c.lr = 2e-4
  c.beta1 = 0.5
  c.adam_eps = 1e-8             # Adam's epsilon (the reference's, torch's default)
  c.n_epochs = 100
  c.n_epochs_decay = 100
  c.steps_per_epoch = -1        # -1: set by the training loop from the dataset size
  c.num_train_steps = -1        # > 0: exactly this many steps, decay over the second half
  c.seed = 0
  # Numerics and memory.
  c.dtype = "float32"           # compute dtype; params, optimiser state and losses stay float32
  c.remat = False
  # Loop.
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.log_every_steps = 100
  c.sample_every_steps = 500
  c.eval_every_steps = 0        # 0: evaluate only at the end
  c.eval_batches = -1
  c.use_wandb = False
  return c


def get_cyclegan_base_config() -> ml_collections.ConfigDict:
  """The reference CycleGAN defaults on top of :func:`get_base_config`."""
  c = get_base_config()
  c.model = "cyclegan"
  c.dataset = "demo:seasons"
  c.netG = "resnet_9blocks"
  c.norm = "instance"
  c.no_dropout = True
  c.gan_mode = "lsgan"
  c.pool_size = 50
  return c
