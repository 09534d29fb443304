"""Write notebooks/quickstart.ipynb and notebooks/custom_loop.ipynb (nbformat 4, no outputs).

    python scripts/make_notebooks.py

The notebooks are committed; this script is how they are kept tidy (edit the
cells here, run it, commit both). Each notebook has one code cell tagged
``parameters`` that ``tests/test_notebooks.py`` replaces with tiny sizes.
"""
from __future__ import annotations

import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The project publishes no repository URL, so the notebooks clone nothing: on Colab the user uploads jaxgan
# (a wheel from `pip wheel --no-deps .`, or the source folder zipped) and the install cell pip-installs it.
OPEN_ON_COLAB = ("On Colab (or any Jupyter): upload this notebook, then upload jaxgan beside it -- a wheel "
                 "built with `pip wheel --no-deps .` in jaxgan's folder, or that folder as `jaxgan.zip` -- and "
                 "run the install cell, which pip-installs it. Where jaxgan is installed already, nothing is "
                 "needed.")

INSTALL = '''# Install jaxgan (on Colab: from the wheel or jaxgan.zip you uploaded). Skipped where jaxgan is importable.
import glob, importlib.util, subprocess, sys, zipfile
from pathlib import Path

if importlib.util.find_spec("jaxgan") is None:
  wheels = sorted(glob.glob("jaxgan-*.whl"))
  if not wheels and Path("jaxgan.zip").exists() and not Path("jaxgan_src").exists():
    zipfile.ZipFile("jaxgan.zip").extractall("jaxgan_src")
  sources = [str(p.parent) for p in sorted(Path("jaxgan_src").glob("**/pyproject.toml"),
                                                  key=lambda p: len(p.parts))] if not wheels else []
  if not wheels and not sources:
    raise SystemExit("jaxgan is not installed: upload a jaxgan wheel (pip wheel --no-deps . in jaxgan's folder) "
                     "or jaxgan's folder as jaxgan.zip next to this notebook, then run this cell again")
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", (wheels or sources)[-1 if wheels else 0]],
                 check=True)
  importlib.invalidate_caches()
import jaxgan
print("jaxgan", jaxgan.__version__, "from", Path(jaxgan.__file__).parent)'''


def quickstart() -> nbformat.NotebookNode:
  cells = [
      new_markdown_cell(f"""# jaxgan quickstart

{OPEN_ON_COLAB}

Train CycleGAN (or pix2pix) on jaxgan's built-in demo data -- generated on the fly, nothing to
download -- look at the samples and the loss curves, score the model against its baselines,
and translate a picture of your own. On a CPU this is the 5-minute demo recipe; on a GPU or
TPU the run is made larger.

The same from a terminal:

```bash
pip install -e ".[test]"
jaxgan train --config cyclegan_demo --workdir runs/demo
jaxgan evaluate --workdir runs/demo
jaxgan translate --workdir runs/demo --input my_photos/ --output winter/
```"""),
      new_code_cell(f'''# Parameters (the test suite replaces this cell with tiny sizes).
MODEL = "cyclegan"          # "cyclegan": summer <-> winter (demo:seasons); "pix2pix": label map -> facade (demo:facades)
WORKDIR = "runs/quickstart"
OVERRIDES = {{}}              # config keys set last, e.g. {{"num_train_steps": 300}}
SCALE_TO_ACCELERATOR = True  # on a GPU/TPU: larger images, wider networks, more steps than the CPU demo
TRY_PRETRAINED = True        # download and import the authors' horse2zebra CycleGAN (needs the network)''', metadata={"tags": ["parameters"]}),
      new_markdown_cell("## Install"),
      new_code_cell(INSTALL),
      new_markdown_cell("## The accelerator"),
      new_code_cell('''import jax

BACKEND = jax.default_backend()
print(f"JAX {jax.__version__}, backend {BACKEND!r}: {jax.device_count()} device(s)", jax.devices())'''),
      new_markdown_cell("""## Train

The recipes come with jaxgan, as the package `jaxgan.configs` (the repository's `configs/`
folder; on the command line: `--config cyclegan_demo`); every key can be changed before training
(on the command line: `--config.KEY=VALUE`). `train_and_evaluate` writes checkpoints, TensorBoard
logs and sample grids into `WORKDIR`, and resumes when `WORKDIR` already holds a checkpoint."""),
      new_code_cell('''from jaxgan.configs import cyclegan_demo, pix2pix_demo   # the recipes, installed with jaxgan

config = (cyclegan_demo if MODEL == "cyclegan" else pix2pix_demo).get_config()
if SCALE_TO_ACCELERATOR and BACKEND != "cpu":   # a bigger run where there is compute for it
  if MODEL == "cyclegan":
    config.update(dict(load_size=128, crop_size=128, ngf=64, ndf=64, netG="resnet_9blocks", demo_train_size=1000,
                       num_train_steps=5000, sample_every_steps=1000, eval_every_steps=2500))
  else:
    config.update(dict(load_size=128, crop_size=128, ngf=64, ndf=64, netG="unet_128", demo_train_size=1000,
                       num_train_steps=5000, sample_every_steps=1000, eval_every_steps=2500))
config.update(OVERRIDES)
print(f"{config.model} on {config.dataset}: {config.netG}, ngf {config.ngf}, {config.crop_size}px, "
      f"batch {config.batch_size}, {config.num_train_steps} steps")'''),
      new_code_cell('''import time
from jaxgan import train

t0 = time.perf_counter()
result = train.train_and_evaluate(config, WORKDIR)
print(f"trained to step {result.step} in {time.perf_counter() - t0:.0f} s")'''),
      new_markdown_cell(f"""## Sample grids

Fixed test images over training (the columns: `real_A | fake_B | rec_A | real_B | fake_A |
rec_B` for CycleGAN, `real_A | fake_B | real_B` for pix2pix); `{{WORKDIR}}/web/index.html` shows
the same page."""),
      new_code_cell('''import json
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

web = Path(WORKDIR) / "web"
entries = sorted(json.loads((web / "samples.json").read_text()), key=lambda e: e["step"])

def sample_grid(entry) -> np.ndarray:
  rows = [np.concatenate([np.asarray(Image.open(web / src).convert("RGB")) for _, src in row], axis=1)
          for row in entry["rows"]]
  return np.concatenate(rows, axis=0)

shown = entries if len(entries) <= 2 else [entries[0], entries[-1]]
fig, axes = plt.subplots(1, len(shown), figsize=(7 * len(shown), 6), squeeze=False)
for ax, entry in zip(axes[0], shown):
  ax.imshow(sample_grid(entry), interpolation="nearest")
  ax.set_title(f"step {entry['step']}: " + " | ".join(name for name, _ in entry["rows"][0]))
  ax.axis("off")
plt.show()'''),
      new_markdown_cell("## Loss curves"),
      new_code_cell('''from jaxgan import reporting

scalars = reporting.read_scalars(WORKDIR)
losses = {t[len("train/"):]: v for t, v in scalars.items()
          if t.startswith("train/") and t not in ("train/lr", "train/images_per_second")}
groups = {"generator": [k for k in losses if k.startswith(("G", "cycle", "idt"))],
          "discriminator": [k for k in losses if k.startswith("D")]}
fig, axes = plt.subplots(1, 2, figsize=(13, 3.5))
for ax, (title, keys) in zip(axes, groups.items()):
  for k in keys:
    steps, values = zip(*losses[k])
    ax.plot(steps, values, label=k)
  ax.set_title(f"{title} losses"); ax.set_xlabel("step"); ax.legend(fontsize=8)
plt.show()'''),
      new_markdown_cell("""## Evaluate

L1 / PSNR / SSIM on the 50 test pairs (the demo test split is aligned, so even the unpaired
CycleGAN is scored against ground truth), next to three baselines: returning the input unchanged,
predicting the mean target image for every input, and the *oracle* -- a second rendering of the
same scene with other texture noise, about the best any model could do. A model that learned
the task sits well below the mean image and close to the oracle."""),
      new_code_cell('''from IPython.display import Markdown, display
from jaxgan import inference

state, trained_config, step = inference.load_for_inference(WORKDIR)
results = inference.evaluate(trained_config, state)
directions = [("A->B", "")] + ([("B->A", "BtoA_")] if trained_config.model == "cyclegan" else [])
lines = ["| direction | prediction | L1 | PSNR dB | SSIM |", "|---|---|---|---|---|"]
for label, prefix in directions:
  for name, key in (("model", ""), ("copy input", "copy_input_"), ("mean image", "mean_image_"),
                    ("oracle", "oracle_")):
    cells = [f"{results[prefix + key + m]:.3f}" if prefix + key + m in results else "n/a"
             for m in ("l1", "psnr", "ssim")]
    lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
display(Markdown(f"step {step}, {results['num_images']} test images\\n\\n" + "\\n".join(lines)))'''),
      new_markdown_cell("""## Translate your own picture

On Colab you are asked for an image file; elsewhere a demo test image stands in. The model
was trained on small images, so the picture is shown to it at the training size (the CLI,
`jaxgan translate`, keeps each image's own size instead)."""),
      new_code_cell('''from jaxgan import cyclegan, pix2pix, data
from jaxgan.data import demo

upload_dir = Path(WORKDIR) / "upload"
upload_dir.mkdir(parents=True, exist_ok=True)
try:
  from google.colab import files   # only on Colab
  names = list(files.upload())
  picture = upload_dir / Path(names[0]).name
  os.replace(names[0], picture)
except ImportError:
  picture = upload_dir / "example.png"
  if trained_config.model == "cyclegan":
    Image.fromarray(demo.seasons_example(7, style="summer", split="test", size=160)).save(picture)
  else:
    Image.fromarray(demo.facades_example(7, split="test", size=160)[0]).save(picture)

def translate_picture(path, state, config, direction="AtoB"):
  """(input, output) uint8 images: ``path`` resized to the training size and translated."""
  side = int(config.crop_size)
  image = Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC)
  x = np.asarray(image, np.float32)[None] / 127.5 - 1.0
  model = cyclegan if config.model == "cyclegan" else pix2pix
  kwargs = {"direction": direction} if config.model == "cyclegan" else {}
  y = np.asarray(model.translate(state, x, config=config, **kwargs))[0]
  return np.asarray(image), np.round((np.clip(y, -1, 1) + 1) * 127.5).astype(np.uint8)

shown = translate_picture(picture, state, trained_config)
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, im, title in zip(axes, shown, ("input", "translated (A->B)")):
  ax.imshow(im); ax.set_title(title); ax.axis("off")
plt.show()'''),
      new_markdown_cell("""## A pretrained model

`jaxgan pretrained NAME --workdir DIR` downloads one of the authors' released PyTorch models
and imports it into a jaxgan workdir (`jaxgan import-torch FILE.pth --workdir DIR` does the same for
a `.pth` you already have). This cell is skipped when the download fails (offline), or when this
version of jaxgan has no `pretrained` command."""),
      new_code_cell('''def has_command(name: str) -> bool:
  return subprocess.run([sys.executable, "-m", "jaxgan", name, "--help"], capture_output=True).returncode == 0

pretrained_dir = Path(WORKDIR).parent / "horse2zebra"
if not TRY_PRETRAINED:
  print("skipped (TRY_PRETRAINED is False)")
elif not has_command("pretrained"):
  print("skipped: this jaxgan has no `jaxgan pretrained` command")
else:
  if not (pretrained_dir / "checkpoints").is_dir():
    proc = subprocess.run([sys.executable, "-m", "jaxgan", "pretrained", "horse2zebra", "--workdir",
                           str(pretrained_dir), "--timeout", "20"], capture_output=True, text=True)
    print(proc.stderr.strip().splitlines()[0] if proc.returncode else proc.stderr.strip())
  if (pretrained_dir / "checkpoints").is_dir():
    h2z_state, h2z_config, _ = inference.load_for_inference(pretrained_dir)
    shown = translate_picture(picture, h2z_state, h2z_config)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, im, title in zip(axes, shown, ("input", "horse2zebra (the authors' model)")):
      ax.imshow(im); ax.set_title(title); ax.axis("off")
    plt.show()
  else:
    print("skipped: the download did not succeed (offline?); the message above says how to fetch it by hand")'''),
  ]
  return _notebook(cells)


def custom_loop() -> nbformat.NotebookNode:
  cells = [
      new_markdown_cell(f"""# jaxgan in your own training loop

{OPEN_ON_COLAB}

jaxgan's objectives are pure functions: `init(rng, config, batch)`, `train_step(state, batch,
config=...)` and `translate(state, images, config=...)`. This notebook uses them without
jaxgan's data pipeline, training loop or checkpoints: your own numpy data iterator, your own
`jax.jit`, your own logging, and checkpoints written with Orbax directly."""),
      new_code_cell(f'''# Parameters (the test suite replaces this cell with tiny sizes).
SIZE = 64             # image side; the U-Net is unet_SIZE
NGF = 32              # generator / discriminator width
N_LAYERS_D = 3        # PatchGAN depth (3: 70x70 patches)
BATCH = 4
STEPS = 600
N_TRAIN = 400         # training pairs
LOG_EVERY = 50
CHECKPOINT_EVERY = 200
CYCLEGAN_STEPS = 200  # the CycleGAN section at the end
CYCLEGAN_NGF = 16
CYCLEGAN_NETG = "resnet_6blocks"
WORKDIR = "runs/custom_loop"''', metadata={"tags": ["parameters"]}),
      new_code_cell(INSTALL),
      new_markdown_cell("""## Your data: numpy arrays

Any `uint8` arrays `[N, H, W, C]` will do; here they are jaxgan's demo facades (a label map as
A, the facade as B). A batch is a dict `{"A": ..., "B": ...}` of float32 NHWC images in [-1, 1]."""),
      new_code_cell('''import numpy as np
from jaxgan.data import demo

def facade_arrays(n: int, split: str):
  pairs = [demo.facades_example(i, split=split, size=SIZE) for i in range(n)]
  return np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])

train_A, train_B = facade_arrays(N_TRAIN, "train")
test_A, test_B = facade_arrays(8, "test")

def to_model(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) / 127.5 - 1.0

def paired_batches(A, B, batch_size: int, seed: int):
  """Endless random batches; each pair gets the same random horizontal flip."""
  rng = np.random.default_rng(seed)
  while True:
    idx = rng.integers(0, len(A), batch_size)
    flip = rng.random(batch_size) < 0.5
    a = np.where(flip[:, None, None, None], A[idx, :, ::-1], A[idx])
    b = np.where(flip[:, None, None, None], B[idx, :, ::-1], B[idx])
    yield {"A": to_model(a), "B": to_model(b)}

print("train", train_A.shape, train_B.shape, "test", test_A.shape)'''),
      new_markdown_cell("""## The config: networks, optimiser, losses

`jaxgan.config.get_base_config()` is the reference pix2pix recipe (`get_cyclegan_base_config()`
the CycleGAN one). The optimiser is Adam with the schedule of the reference (constant, then
linear decay over the second half of `num_train_steps`); its settings and the losses' kinds and
weights are config keys, read when the step is traced -- change them before `jax.jit`."""),
      new_code_cell('''from jaxgan import config as jaxgan_config

config = jaxgan_config.get_base_config()
config.netG, config.ngf, config.ndf = f"unet_{SIZE}", NGF, NGF
config.netD, config.n_layers_D = "n_layers", N_LAYERS_D   # "basic" is n_layers 3
config.norm = "instance"            # train and test see the same statistics
config.batch_size = BATCH
config.num_train_steps = STEPS      # the learning-rate schedule's length
# The optimiser: Adam(lr, beta1, eps) with the reference schedule.
config.lr, config.beta1, config.adam_eps = 2e-4, 0.5, 1e-8
# The losses: GAN loss kind and the weight of L1 to the target.
config.gan_mode = "vanilla"         # or "lsgan", or "wgangp" (+ config.lambda_gp)
config.lambda_L1 = 100.0'''),
      new_markdown_cell("""## Jit the step

The state holds the step, both networks' parameters (and BatchNorm statistics), both optimiser
states and the PRNG key. Bind the config with `functools.partial`, and donate the old state so
its buffers are reused."""),
      new_code_cell('''import functools
import jax
from jaxgan import pix2pix

batches = paired_batches(train_A, train_B, BATCH, seed=0)
state = pix2pix.init(jax.random.PRNGKey(0), config, next(batches))
train_step = jax.jit(functools.partial(pix2pix.train_step, config=config), donate_argnums=0)
n_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
print(f"{n_params:,} parameters; state fields:", [f for f in state.__dataclass_fields__])'''),
      new_markdown_cell("""## Checkpoints with Orbax

The state is a pytree, so Orbax saves it as it is. Restoring needs its structure: the state
just built serves as the template. When `WORKDIR` already holds checkpoints, the loop resumes from the newest."""),
      new_code_cell('''from pathlib import Path
import orbax.checkpoint as ocp

checkpoints = ocp.CheckpointManager(Path(WORKDIR).absolute() / "checkpoints",
                                    options=ocp.CheckpointManagerOptions(max_to_keep=2))
start = 0
if checkpoints.latest_step() is not None:
  start = checkpoints.latest_step()
  state = checkpoints.restore(start, args=ocp.args.StandardRestore(state))
  print("resumed at step", start)'''),
      new_markdown_cell("## The loop, with your own logging"),
      new_code_cell('''import time

history = []
batches = paired_batches(train_A, train_B, BATCH, seed=start)   # a fresh stream when resuming
t0 = time.perf_counter()
for step in range(start + 1, STEPS + 1):
  state, metrics = train_step(state, next(batches))
  if step % LOG_EVERY == 0 or step == STEPS:
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    history.append({"step": step, **metrics})
    rate = (step - start) * BATCH / (time.perf_counter() - t0)
    print(f"step {step:5d}  G_GAN {metrics['G_GAN']:.3f}  G_L1 {metrics['G_L1']:.2f}  D {metrics['D']:.3f}  "
          f"lr {metrics['lr']:.2e}  {rate:.1f} img/s")
  if step % CHECKPOINT_EVERY == 0 or step == STEPS:
    checkpoints.save(step, args=ocp.args.StandardSave(state))
checkpoints.wait_until_finished()
print("checkpoints:", checkpoints.all_steps())'''),
      new_code_cell('''import matplotlib.pyplot as plt

if history:
  steps = [h["step"] for h in history]
  fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
  for k in ("G_GAN", "D"):
    axes[0].plot(steps, [h[k] for h in history], label=k)
  axes[1].plot(steps, [h["G_L1"] for h in history], label="G_L1 (x lambda_L1)")
  for ax in axes:
    ax.set_xlabel("step"); ax.legend()
  plt.show()'''),
      new_markdown_cell("""## Translate, score, and check the checkpoint

`translate` uses the reference's test-time behaviour (each image's own normalisation
statistics; dropout on). The L1 of the translation is compared with predicting the mean test
photo for every input; a restored checkpoint translates exactly as the state in memory."""),
      new_code_cell('''fake_B = np.asarray(pix2pix.translate(state, to_model(test_A), config=config))
target = to_model(test_B)
l1 = float(np.abs(fake_B - target).mean()) / 2                   # on [0, 1] images
mean_l1 = float(np.abs(target.mean(0) - target).mean()) / 2
print(f"test L1 {l1:.3f} (mean image {mean_l1:.3f})")

restored = checkpoints.restore(checkpoints.latest_step(), args=ocp.args.StandardRestore(state))
again = np.asarray(pix2pix.translate(restored, to_model(test_A), config=config))
print("restored checkpoint translates identically:", np.array_equal(again, fake_B))

show = lambda x: np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8)
rows = [np.concatenate([test_A[i], show(fake_B[i]), test_B[i]], axis=1) for i in range(4)]
plt.figure(figsize=(6, 8)); plt.imshow(np.concatenate(rows, axis=0), interpolation="nearest")
plt.title("label map | translation | target"); plt.axis("off"); plt.show()'''),
      new_markdown_cell("""## The same loop for CycleGAN

Unpaired batches (summer and winter landscapes of different scenes); the step updates both
generators, queries the image pools and updates both discriminators. The cycle and identity
weights are `lambda_A`, `lambda_B` and `lambda_identity`."""),
      new_code_cell('''from jaxgan import cyclegan

summer = np.stack([demo.seasons_example(2 * i, style="summer", size=SIZE) for i in range(N_TRAIN // 2)])
winter = np.stack([demo.seasons_example(2 * i + 1, style="winter", size=SIZE) for i in range(N_TRAIN // 2)])

def unpaired_batches(A, B, batch_size: int, seed: int):
  rng = np.random.default_rng(seed)
  while True:
    yield {"A": to_model(A[rng.integers(0, len(A), batch_size)]),
           "B": to_model(B[rng.integers(0, len(B), batch_size)])}

cg_config = jaxgan_config.get_cyclegan_base_config()
cg_config.netG, cg_config.ngf, cg_config.ndf = CYCLEGAN_NETG, CYCLEGAN_NGF, CYCLEGAN_NGF
cg_config.netD, cg_config.n_layers_D = "n_layers", N_LAYERS_D
cg_config.batch_size, cg_config.num_train_steps = 1, CYCLEGAN_STEPS
cg_config.lambda_A = cg_config.lambda_B = 10.0   # cycle-consistency weights
cg_config.lambda_identity = 0.5                  # identity loss, relative to lambda_A / lambda_B
cg_batches = unpaired_batches(summer, winter, 1, seed=0)
cg_state = cyclegan.init(jax.random.PRNGKey(1), cg_config, next(cg_batches))
cg_step = jax.jit(functools.partial(cyclegan.train_step, config=cg_config), donate_argnums=0)
for step in range(1, CYCLEGAN_STEPS + 1):
  cg_state, cg_metrics = cg_step(cg_state, next(cg_batches))
print({k: round(float(v), 3) for k, v in jax.device_get(cg_metrics).items()})

test_summer = to_model(np.stack([demo.seasons_example(i, style="summer", split="test", size=SIZE) for i in range(4)]))
winterised = np.asarray(cyclegan.translate(cg_state, test_summer, config=cg_config, direction="AtoB"))
plt.figure(figsize=(8, 4))
plt.imshow(np.concatenate([np.concatenate([show(test_summer[i]), show(winterised[i])], axis=0) for i in range(4)],
                          axis=1), interpolation="nearest")
plt.title("summer (top) -> winter (bottom)"); plt.axis("off"); plt.show()'''),
  ]
  return _notebook(cells)


def _notebook(cells) -> nbformat.NotebookNode:
  for i, cell in enumerate(cells):
    cell.id = f"cell-{i:02d}"   # stable ids: regenerating changes only the cells that changed
  nb = new_notebook(cells=cells)
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
  nb.metadata["language_info"] = {"name": "python"}
  nb.metadata["accelerator"] = "GPU"
  nb.metadata["colab"] = {"provenance": []}
  return nb


def main() -> int:
  out = os.path.join(ROOT, "notebooks")
  os.makedirs(out, exist_ok=True)
  for name, build in (("quickstart.ipynb", quickstart), ("custom_loop.ipynb", custom_loop)):
    nb = build()
    nbformat.validate(nb)
    path = os.path.join(out, name)
    with open(path, "w", encoding="utf-8") as f:
      nbformat.write(nb, f)
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
