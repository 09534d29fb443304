"""Hyper-parameters of every recipe and the one table of valid choices.

Owns: the defaults (:func:`get_base_config`, :func:`get_cyclegan_base_config`,
ml_collections ConfigDicts whose keys follow the option names of the reference
PyTorch project where one exists: ``netG``, ``lambda_L1``, ``n_epochs_decay``,
...): the shared keys here, each objective's own keys (``CONFIG_KEYS``) and its
defaults of shared ones (``CONFIG_DEFAULTS``) in its module, so a config of
``model=M`` holds the shared keys and M's; a key of another objective is
refused by :func:`validate` naming its owner (saved configs of older versions,
which hold every objective's keys, still load and resume: only configs being
validated for a new run are checked), the valid values of every choice key (:data:`CHOICES`, read by the CLI's
help and errors, the models, the data layer and the PyTorch import), the
grammar of generator names (:func:`parse_netG`, :func:`generator_stride`) and
:func:`validate`, the one check of a whole config. Recipes in ``configs/``
(installed as ``jaxgan.configs``) start from the base configs and override
what differs. Nothing here computes with JAX, but importing this module imports
JAX all the same: through :mod:`jaxgan.objectives` (the model names) and the
package's ``__init__``.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import ml_collections

from jaxgan import objectives

MODELS = objectives.RegisteredNames()   # config.model: the registry's names, read live (jaxgan/objectives.py)

GENERATORS = ("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks")   # named; also unet_<N>, resnet_<n>blocks
DISCRIMINATORS = ("basic", "n_layers", "pixel")
NORMS = ("batch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan", "wgangp")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
PREPROCESS = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DTYPES = ("float32", "bfloat16")
DATA_DTYPES = ("auto", "uint8", "uint16", "float32")   # what a batch ships (jaxgan/data/pipeline.py)
DIRECTIONS = ("AtoB", "BtoA")
DATASET_KINDS = ("demo", "folder", "tfds")   # dataset="<kind>:..."; each has a backend in jaxgan/data/
DEMO_DATASETS = ("facades", "seasons")       # dataset="demo:<name>" (jaxgan/data/demo.py)

# Keys with a fixed set of values (netG has a grammar instead: parse_netG).
CHOICES: dict[str, Sequence[str]] = {
    "model": MODELS, "netD": DISCRIMINATORS, "norm": NORMS, "gan_mode": GAN_MODES, "init_type": INIT_TYPES,
    "preprocess": PREPROCESS, "dtype": DTYPES, "direction": DIRECTIONS, "data_dtype": DATA_DTYPES,
    "matmul_precision": ("default", "high", "highest"),
}
POSITIVE_KEYS = ("input_nc", "output_nc", "ngf", "ndf", "batch_size", "load_size", "crop_size", "n_layers_D",
                 "epoch_count")
NON_NEGATIVE_KEYS = ("lr", "lambda_L1", "lambda_A", "lambda_B", "lambda_identity", "lambda_gp", "pool_size",
                     "n_epochs", "n_epochs_decay", "init_gain", "log_every_steps",
                     "checkpoint_every_steps", "sample_every_steps", "eval_every_steps", "keep_checkpoints",
                     "fid_every_steps", "bn_group_size")

# Keys recipes may leave out; ``--config.KEY`` may still set them (name -> type, default).
OPTIONAL_KEYS: dict[str, tuple[type, Any]] = {
    "demo_seed": (int, 0),            # built-in demo data: generator seed
    "demo_train_size": (int, 400),    # images per domain in the demo train split
    "demo_test_size": (int, 50),      # images in the demo test split
    "demo_image_size": (int, 0),      # side of the generated images (0: load_size for train, else crop_size)
    "data_threads": (int, 0),         # Grain reader threads per process (0: automatic, see num_workers)
    "data_dtype": (str, "auto"),      # batches ship uint8/uint16 pixels (auto: the data's depth) or float32
    "prefetch_batches": (int, 4),     # batches read ahead
    "wandb_project": (str, "jaxgan"),  # the W&B project when use_wandb
    "sample_rows": (int, 4),          # images per sample grid
    "eval_mode": (bool, False),       # evaluate with running BatchNorm statistics and no dropout
    "bn_group_size": (int, 0),        # norm=batch: training statistics over consecutive groups of this many
                                      # images of the global batch (0: the whole batch; 1: each image alone, the
                                      # papers' batch 1 and the test mode, at any batch size and device count)
    "matmul_precision": (str, "default"),   # float32 convs/dots inside the step and translate: default | high |
                                      # highest (TPU: bf16 | bf16_3x | float32 products; Ampere+ GPU: TF32 |
                                      # TF32 | float32; CPU: float32 always). docs/precision.md measures them
    "layer_forms": (str, "auto"),     # XLA:CPU layer forms (jaxgan.models.forms): auto (this CPU's measured
                                      # choice, plain on GPU/TPU; decided when training starts and recorded
                                      # in the checkpoints), plain, fast, default or "conv=fast,pad=plain,..."
    "fid_every_steps": (int, 0),      # FID/KID of the test split every N steps and at the end (0: off); needs
                                      # the FID weights in $JAXGAN_FID_WEIGHTS or the cache (jaxgan.fid_io)
}

_RESNET = re.compile(r"resnet_(\d+)blocks")
_UNET = re.compile(r"unet_(\d+)")
NETG_HELP = ("resnet_9blocks, resnet_6blocks (resnet_<n>blocks), unet_256, unet_128 or unet_<N> with N a power "
             "of two >= 32")


def parse_netG(netG: str) -> tuple[str, int]:
  """``("resnet", n_blocks)`` or ``("unet", num_downs)``; ValueError for an unknown name."""
  m = _RESNET.fullmatch(str(netG))
  if m and int(m.group(1)) >= 1:
    return "resnet", int(m.group(1))
  m = _UNET.fullmatch(str(netG))
  if m:
    size = int(m.group(1))
    if size >= 32 and size & (size - 1) == 0:
      return "unet", size.bit_length() - 1
  raise ValueError(f"netG must be {NETG_HELP}; got {netG!r}")


def generator_stride(netG: str) -> int:
  """H and W of a generator's input must be multiples of this: 4 for ResNet, 2**num_downs for U-Net."""
  kind, n = parse_netG(netG)
  return 4 if kind == "resnet" else 2 ** n


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
  """ValueError naming ``name`` and the valid values unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Check every choice and range of a whole config; ValueError naming the key and the valid values."""
  for key, choices in CHOICES.items():
    if key in config:
      check_choice(f"config.{key}", config[key], choices)
  check_objective_keys(config)
  try:
    parse_netG(str(config.netG))
  except ValueError:
    raise ValueError(f"config.netG={config.netG!r} is not valid; choose one of: {NETG_HELP}") from None
  for key in POSITIVE_KEYS:
    if key in config and int(config[key]) < 1:
      raise ValueError(f"config.{key}={config[key]} must be >= 1")
  for key in NON_NEGATIVE_KEYS:
    if key in config and float(config[key]) < 0:
      raise ValueError(f"config.{key}={config[key]} must be >= 0")
  if int(config.get("num_workers", -1)) < -1:
    raise ValueError(f"config.num_workers={config.num_workers} must be -1 (automatic), 0 or more")
  group = int(config.get("bn_group_size", 0))
  if group > 0 and int(config.batch_size) % min(group, int(config.batch_size)):
    raise ValueError(f"config.bn_group_size={group} must divide config.batch_size={config.batch_size} "
                     "(BatchNorm statistics over groups of that many images)")
  if "layer_forms" in config:
    from jaxgan.models.forms import LayerForms   # pylint: disable=import-outside-toplevel  (no JAX in it)
    LayerForms.parse(str(config.layer_forms))    # ValueError naming the value and the families
  if int(config.crop_size) > int(config.load_size) and "crop" in str(config.preprocess):
    raise ValueError(f"config.crop_size={config.crop_size} is larger than config.load_size={config.load_size}")
  dataset = str(config.dataset)
  kind, _, name = dataset.partition(":")
  if kind not in DATASET_KINDS or not name:
    raise ValueError(f"config.dataset={dataset!r}: expected demo:<name>, folder:PATH or tfds:NAME[/CONFIG]")
  if kind == "demo" and name not in DEMO_DATASETS:
    raise ValueError(f"config.dataset={dataset!r}: unknown demo dataset; choose one of: "
                     + ", ".join("demo:" + d for d in DEMO_DATASETS))


def check_objective_keys(config: ml_collections.ConfigDict) -> None:
  """ValueError naming the key and its objective when ``config`` holds a key that only other objectives declare
  (e.g. ``pool_size``, CycleGAN's, in a pix2pix config)."""
  found = objectives.foreign_keys(config)
  if found:
    key, owners = found[0]
    others = ", ".join(f"config.{k}" for k, _ in found[1:])
    raise ValueError(
        f"config.{key} is a key of model {' and '.join(owners)}, not of model {config.get('model')!r}: remove it "
        f"from the recipe / --config overrides, or set config.model={owners[0]}"
        + (f" (also: {others})" if others else ""))


def key_default(config: ml_collections.ConfigDict, key: str) -> Any:
  """The value whose type parses ``--config.KEY=VALUE``: the config's own value, an optional key's default,
  or the default in ``config.model``'s ``CONFIG_KEYS``. ValueError naming the owner for another objective's
  key; KeyError for a key no one declares."""
  if key in config:
    return config[key]
  if key in OPTIONAL_KEYS:
    return OPTIONAL_KEYS[key][1]
  model = str(config.get("model", ""))
  own = objectives.config_keys(model) if model in objectives.OBJECTIVES else {}
  if key in own:
    return own[key]
  owners = objectives.key_owners().get(key)
  if owners:
    raise ValueError(f"config.{key} is a key of model {' and '.join(owners)}, not of model {model!r}: "
                     f"set config.model={owners[0]} to use it")
  raise KeyError(key)


def with_model(config: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
  """``config`` switched to objective ``model``: the old objective's own keys that ``model`` does not declare
  are dropped, ``model``'s own keys that are missing get their defaults; shared keys are kept as they are."""
  check_choice("config.model", model, MODELS)
  old = str(config.get("model", ""))
  drop = set(objectives.config_keys(old)) if old in objectives.OBJECTIVES else set()
  new = objectives.config_keys(model)
  values = {k: v for k, v in config.to_dict().items() if k not in drop or k in new}
  values["model"] = model
  for key, default in new.items():
    values.setdefault(key, default)
  return ml_collections.ConfigDict(values)


def get_base_config(model: str = "pix2pix") -> ml_collections.ConfigDict:
  """Every key a run of ``model`` may set: the shared keys with the reference project's defaults, the
  objective's defaults of them (its ``CONFIG_DEFAULTS``) and its own keys (its ``CONFIG_KEYS``)."""
  objective = objectives.get(model)
  c = ml_collections.ConfigDict()
  c.model = model               # the objective (jaxgan/objectives.py): pix2pix, cyclegan, ...
  # Data.
  c.dataset = "demo:facades"    # demo:<name>, folder:PATH or tfds:NAME[/CONFIG] (docs/data.md)
  c.load_size = 286             # training images are resized to this (preprocess), then cropped
  c.crop_size = 256             # training crop; test images are resized whole to it
  c.preprocess = "resize_and_crop"   # the reference's --preprocess
  c.no_flip = False             # True: no random horizontal flip in training
  c.direction = "AtoB"          # which side of a paired dataset is the input
  c.input_nc = 3                # channels of A (the input): 1 gray, 3 RGB, 4 RGBA, more for multispectral
  c.output_nc = 3               # channels of B (the target)
  c.skip_bad_images = False     # True: skip unreadable images with a warning instead of stopping
  c.num_workers = -1            # Grain worker processes: -1 sized to the host (jaxgan.data.pipeline.data_parallelism),
                                # 0 read in the training process (threads), N processes
  c.max_dataset_size = -1       # cap on examples per domain; -1 = all
  # Networks.
  c.netG = "unet_256"           # generator: resnet_<n>blocks or unet_<N>
  c.netD = "basic"              # discriminator: basic (70x70 PatchGAN), n_layers (n_layers_D deep), pixel
  c.n_layers_D = 3              # PatchGAN depth for netD=n_layers
  c.ngf = 64                    # generator width (filters of the first conv)
  c.ndf = 64                    # discriminator width
  c.norm = "batch"              # batch, instance or none
  c.no_dropout = False          # True: no dropout in the generator
  c.init_type = "normal"        # weight initialisation
  c.init_gain = 0.02            # its scale (normal: the standard deviation)
  c.no_antialias = True         # False: CUT's anti-aliased down/upsampling (blur-pool) in G's and D's strided layers
  c.no_antialias_up = True      # False: CUT's anti-aliased upsampling (fixed blur + 3x3 conv) in G
  # Objective (the objective's own keys are added from its CONFIG_KEYS below).
  c.gan_mode = "vanilla"        # GAN loss: vanilla (cross-entropy), lsgan (least squares), wgangp
  c.lambda_gp = 10.0            # gradient penalty weight, gan_mode=wgangp only
  # Optimisation and schedule.
  c.batch_size = 1              # the global batch over all devices and hosts
  c.lr = 2e-4                   # Adam learning rate (constant for n_epochs, then linear decay)
  c.beta1 = 0.5                 # Adam beta1
  c.adam_eps = 1e-8             # Adam's epsilon (the reference's, torch's default)
  c.n_epochs = 100              # epochs at the initial learning rate
  c.n_epochs_decay = 100        # epochs of linear decay to 0 after them
  c.epoch_count = 1             # the epoch the schedule starts at (reference --epoch_count; continue/fine-tune)
  c.steps_per_epoch = -1        # -1: set by the training loop from the dataset size
  c.num_train_steps = -1        # > 0: exactly this many steps, decay over the second half
  c.seed = 0                    # parameters, data order, dropout and pool draws
  # Numerics and memory.
  c.dtype = "float32"           # compute dtype; params, optimiser state and losses stay float32
  c.remat = False               # rematerialise generator blocks (less memory, more compute)
  c.ema_decay = 0.0             # > 0: keep an exponential moving average of the generators' weights; translate,
                                # evaluate and the sample grids use it (0: off, the reference)
  # Loop.
  c.checkpoint_every_steps = 1000   # and at the end and on SIGTERM
  c.keep_checkpoints = 3        # newest checkpoints kept
  c.log_every_steps = 100       # losses, lr, images/s to TensorBoard and the console
  c.sample_every_steps = 500    # sample grids (TensorBoard, WORKDIR/web/index.html)
  c.eval_every_steps = 0        # 0: evaluate only at the end
  c.eval_batches = -1           # batches per evaluation (-1: the whole split)
  c.use_wandb = False           # also log to Weights & Biases (wandb_project)
  for key, value in dict(getattr(objective, "CONFIG_DEFAULTS", {})).items():
    if key not in c:
      raise ValueError(f"{objective.__name__}.CONFIG_DEFAULTS sets {key!r}, which is not a shared config key; "
                       "declare it in CONFIG_KEYS")
    c[key] = value
  for key, value in objectives.config_keys(model).items():
    if key in c:
      raise ValueError(f"{objective.__name__}.CONFIG_KEYS declares {key!r}, a shared config key; set its "
                       "default in CONFIG_DEFAULTS instead")
    c[key] = value
  return c


def get_cyclegan_base_config() -> ml_collections.ConfigDict:
  """The reference CycleGAN defaults: ``get_base_config("cyclegan")``."""
  return get_base_config("cyclegan")
