"""The `jaxgan` command end to end (train -> checkpoint -> translate -> evaluate) and every bad input."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxgan import checkpoint, cli

ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
# Same tiny settings as tests/test_train.py (one compile per network per pytest process).
TINY = {"ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32, "demo_train_size": 12,
        "demo_test_size": 2, "batch_size": 2, "num_train_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 2, "sample_every_steps": 0, "eval_batches": 1}
PIX2PIX = {"netG": "unet_32"}
CYCLEGAN = {"netG": "resnet_6blocks", "pool_size": 3, "input_nc": 1, "output_nc": 1}   # grayscale


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", CACHE)


def run_cli(*args: str) -> int:
  return cli.main([str(a) for a in args])


def train_args(recipe: str, workdir: Path, extra: dict) -> list[str]:
  overrides = [f"--config.{k}={v}" for k, v in {**TINY, **extra}.items()]
  return ["train", "--config", str(ROOT / "configs" / f"{recipe}.py"), "--workdir", str(workdir), *overrides]


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("p2p") / "run"
  os.environ.setdefault("JAXGAN_CACHE_DIR", CACHE)
  assert run_cli(*train_args("pix2pix_demo", workdir, PIX2PIX)) == 0
  return workdir


@pytest.fixture(scope="module")
def cyclegan_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cyc") / "run"
  assert run_cli(*train_args("cyclegan_demo", workdir, CYCLEGAN)) == 0
  return workdir


def write_image(path: Path, h: int, w: int, channels: int = 3, seed: int = 0) -> Path:
  rng = np.random.default_rng(seed)
  arr = rng.integers(0, 256, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(arr).save(path)
  return path


def read_scalar_tags(event_dir: Path) -> set[str]:
  """Tags in TensorBoard event files (TFRecord framing, parsed with tensorboardX's protobufs)."""
  from tensorboardX.proto import event_pb2
  tags = set()
  for f in event_dir.glob("events.out.tfevents.*"):
    raw = f.read_bytes()
    pos = 0
    while pos + 12 <= len(raw):
      (length,) = struct.unpack("<Q", raw[pos:pos + 8])
      event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      tags.update(v.tag for v in event.summary.value)
  return tags


# ------------------------------------------------------------------ end to end


def test_pix2pix_train_writes_checkpoints_logs_and_page(pix2pix_run):
  assert checkpoint.list_steps(pix2pix_run) == [2, 4]
  tags = read_scalar_tags(pix2pix_run / "tensorboard")
  for tag in ("train/G_GAN", "train/G_L1", "train/D_real", "train/D_fake", "train/lr", "train/images_per_second",
              "eval/l1", "eval/psnr", "eval/ssim"):
    assert tag in tags, (tag, sorted(tags))
  assert any(t.startswith("samples/real_A_fake_B_real_B") for t in tags)
  page = (pix2pix_run / "web" / "index.html").read_text()
  assert "step 4" in page and page.count("<img") == 3 * 2      # 2 sample rows x (real_A | fake_B | real_B)
  for src in page.split("src='")[1:]:
    assert (pix2pix_run / "web" / src.split("'")[0]).is_file()
  saved = json.loads((pix2pix_run / "eval.json").read_text())
  assert saved["step"] == 4


def test_pix2pix_translate_keeps_each_size(pix2pix_run, tmp_path):
  inputs = tmp_path / "in"
  sizes = {"a": (32, 32), "tall": (45, 20), "wide": (33, 70), "b": (32, 32)}
  for i, (name, (h, w)) in enumerate(sizes.items()):
    write_image(inputs / f"{name}.{'jpg' if name == 'b' else 'png'}", h, w, seed=i)
  out = tmp_path / "out"
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs, "--output", out, "--batch_size", 3) == 0
  assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "tall.png", "wide.png"]
  for name, (h, w) in sizes.items():
    img = Image.open(out / f"{name}.png")
    assert img.size == (w, h) and img.mode == "RGB"
  # One file alone gives the same result as in a batch (reference test-time behaviour, per-image keys).
  single = tmp_path / "single"
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs / "a.png", "--output", single) == 0
  np.testing.assert_array_equal(np.asarray(Image.open(single / "a.png")), np.asarray(Image.open(out / "a.png")))


def test_cyclegan_grayscale_translate_both_directions_and_evaluate(cyclegan_run, tmp_path, capsys):
  inputs = tmp_path / "in"
  write_image(inputs / "x.png", 36, 28, channels=1)
  for direction in ("AtoB", "BtoA"):
    out = tmp_path / direction
    assert run_cli("translate", "--workdir", cyclegan_run, "--input", inputs, "--output", out,
                   "--direction", direction) == 0
    img = Image.open(out / "x.png")
    assert img.mode == "L" and img.size == (28, 36)
  capsys.readouterr()
  assert run_cli("evaluate", "--workdir", cyclegan_run) == 0
  line = capsys.readouterr().out.strip().splitlines()[-1]
  result = json.loads(line)
  assert result == json.loads((cyclegan_run / "eval.json").read_text())
  assert result["step"] == 4 and result["paired"] is True and result["num_images"] == 2
  for prefix in ("", "copy_input_", "BtoA_", "BtoA_copy_input_", "oracle_", "BtoA_oracle_"):
    assert 0.0 <= result[prefix + "l1"] <= 1.0
    assert 0.0 < result[prefix + "psnr"] <= 100.0
    assert -1.0 <= result[prefix + "ssim"] <= 1.0
  # The oracle (the demo's second rendering of each target) is far closer than the input.
  assert result["oracle_l1"] < 0.3 * result["copy_input_l1"]
  assert result["BtoA_oracle_l1"] < 0.3 * result["BtoA_copy_input_l1"]


def test_pix2pix_evaluate_json(pix2pix_run, capsys):
  capsys.readouterr()
  assert run_cli("evaluate", "--workdir", pix2pix_run, "--step", 2) == 0
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert result["step"] == 2 and result["split"] == "test"
  assert set(result) >= {"l1", "psnr", "ssim", "copy_input_l1", "copy_input_psnr", "copy_input_ssim", "num_images",
                         "oracle_l1", "oracle_psnr", "oracle_ssim"}
  assert "BtoA_oracle_l1" not in result and result["oracle_l1"] < 0.3 * result["copy_input_l1"]
  assert 0 <= result["l1"] <= 1 and -1 <= result["ssim"] <= 1 and result["psnr"] > 0


# ------------------------------------------------------------------ bad input


def test_missing_workdir_and_workdir_without_checkpoints(tmp_path, capsys):
  assert run_cli("evaluate", "--workdir", tmp_path / "nope") == 1
  assert "does not exist" in capsys.readouterr().err
  (tmp_path / "empty").mkdir()
  write_image(tmp_path / "img.png", 32, 32)
  assert run_cli("translate", "--workdir", tmp_path / "empty", "--input", tmp_path / "img.png",
                 "--output", tmp_path / "out") == 1
  assert "no checkpoints in" in capsys.readouterr().err
  assert not (tmp_path / "empty" / "checkpoints").exists()


def _corrupt_state(workdir: Path, step: int) -> None:
  for f in (workdir / "checkpoints" / str(step) / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage")


def test_corrupt_or_half_written_checkpoint(pix2pix_run, tmp_path, capsys, caplog):
  workdir = tmp_path / "copy"
  shutil.copytree(pix2pix_run, workdir)
  half = workdir / "checkpoints" / "6.orbax-checkpoint-tmp-99"     # a save killed midway
  (half / "state").mkdir(parents=True)
  _corrupt_state(workdir, 4)
  capsys.readouterr()
  assert run_cli("evaluate", "--workdir", workdir, "--batches", 1) == 0
  captured = capsys.readouterr()
  assert json.loads(captured.out.strip().splitlines()[-1])["step"] == 2       # fell back to the previous one
  assert "checkpoint step 4 is unreadable" in captured.err + caplog.text    # logged to stderr by the CLI
  _corrupt_state(workdir, 2)
  assert run_cli("evaluate", "--workdir", workdir) == 1
  err = capsys.readouterr().err
  assert "no readable checkpoint" in err and str(workdir / "checkpoints" / "2") in err
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4", half.name]   # nothing deleted


def test_translate_refuses_bad_inputs_and_outputs(pix2pix_run, tmp_path, capsys):
  inputs = tmp_path / "in"
  write_image(inputs / "rgb.png", 32, 32)
  gray = write_image(inputs / "gray.png", 32, 32, channels=1)
  out = tmp_path / "out"
  # Wrong channel count: clear message naming the file, nothing written.
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs, "--output", out) == 1
  err = capsys.readouterr().err
  assert str(gray) in err and "1 channel" in err and "3" in err
  assert not list(out.glob("*.png"))
  # Output equal to the input folder.
  before = (inputs / "rgb.png").read_bytes()
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs, "--output", inputs) == 1
  assert "input folder" in capsys.readouterr().err
  assert (inputs / "rgb.png").read_bytes() == before
  # Output is a file / below a file: not writable.
  blocker = tmp_path / "file.txt"
  blocker.write_text("keep me")
  for bad in (blocker, blocker / "sub"):
    assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs / "rgb.png", "--output", bad) == 1
    assert str(blocker) in capsys.readouterr().err
  assert blocker.read_text() == "keep me"
  # An existing output is not replaced without --overwrite.
  out.mkdir(exist_ok=True)
  (out / "rgb.png").write_bytes(b"earlier result")
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs / "rgb.png", "--output", out) == 1
  assert "--overwrite" in capsys.readouterr().err
  assert (out / "rgb.png").read_bytes() == b"earlier result"
  # pix2pix has one direction; missing input.
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", inputs / "rgb.png", "--output", tmp_path / "o2",
                 "--direction", "BtoA") == 1
  assert "AtoB" in capsys.readouterr().err
  assert run_cli("translate", "--workdir", pix2pix_run, "--input", tmp_path / "nothing.png",
                 "--output", tmp_path / "o3") == 1
  assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_translate_unwritable_output(pix2pix_run, tmp_path, capsys):
  locked = tmp_path / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  write_image(tmp_path / "x.png", 32, 32)
  try:
    assert run_cli("translate", "--workdir", pix2pix_run, "--input", tmp_path / "x.png", "--output", locked) == 1
    assert "not writable" in capsys.readouterr().err
  finally:
    locked.chmod(0o700)


def test_unknown_keys_and_bad_values_are_refused(tmp_path, capsys):
  base = ["train", "--config", str(ROOT / "configs/pix2pix_demo.py"), "--workdir", str(tmp_path / "w")]
  assert run_cli(*base, "--config.nfg=8") == 2
  err = capsys.readouterr().err
  assert "unknown config key" in err and "ngf" in err and "Valid keys:" in err
  assert run_cli(*base, "--config.norm=layer") == 2
  assert "batch, instance, none" in capsys.readouterr().err
  assert run_cli(*base, "--config.netG=unet_100") == 2
  assert "resnet_9blocks" in capsys.readouterr().err
  assert run_cli(*base, "--config.batch_size=two") == 2
  assert "expected an integer" in capsys.readouterr().err
  assert run_cli(*base, "--config.no_flip=maybe") == 2
  assert "true or false" in capsys.readouterr().err
  assert run_cli(*base, "--config.dataset=demo:cats") == 2
  assert "demo:facades" in capsys.readouterr().err
  assert run_cli("train", "--config", str(tmp_path / "missing.py"), "--workdir", str(tmp_path / "w")) == 2
  assert "no such file" in capsys.readouterr().err
  assert run_cli("evaluate", "--workdir", str(tmp_path), "--config.ngf=3") == 2
  assert not (tmp_path / "w").exists()


def test_config_values_parse_by_type():
  config = cli.load_config_file(str(ROOT / "configs/cyclegan_demo.py"))
  cli.apply_overrides(config, [("lr", "1e-3"), ("no_flip", "true"), ("num_train_steps", "2e3"),
                               ("dataset", "folder:/data/x"), ("demo_seed", "3")])
  assert config.lr == 1e-3 and config.no_flip is True and config.num_train_steps == 2000
  assert config.dataset == "folder:/data/x" and config.demo_seed == 3


def test_every_recipe_loads_and_validates():
  for path in sorted((ROOT / "configs").glob("[!_]*.py")):
    config = cli.load_config_file(str(path))
    cli.validate_config(config)
    prefix = path.stem.split("_")[0]
    assert {"fastcut": "cut"}.get(prefix, prefix) == config.model   # FastCUT is a preset of the cut objective
    doc = (path.read_text().split('"""')[1])
    assert f"jaxgan train --config {path.stem} " in doc and "Result:" in doc   # by name: works from any folder
  monet = cli.load_config_file(str(ROOT / "configs/cyclegan_horse2zebra.py") + ":monet2photo")
  assert monet.dataset == "tfds:cycle_gan/monet2photo"
  with pytest.raises(cli.UsageError, match="horse2zebra"):
    cli.load_config_file(str(ROOT / "configs/cyclegan_horse2zebra.py") + ":cats2dogs")


def test_help_through_python_m():
  out = subprocess.run([sys.executable, "-m", "jaxgan", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
  assert out.returncode == 0
  for word in ("train", "translate", "evaluate", "--workdir"):
    assert word in out.stdout
  sub = subprocess.run([sys.executable, "-m", "jaxgan", "translate", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
  assert sub.returncode == 0 and "--direction" in sub.stdout and "--eval" in sub.stdout
  assert jax is not None


def test_run_values_that_cannot_work_are_refused_before_anything_is_written(tmp_path, capsys):
  """Issue 27: crop_size off the generator's stride, a non-finite or non-positive lr, num_train_steps=0."""
  base = ["train", "--config", str(ROOT / "configs/pix2pix_demo.py"), "--workdir", str(tmp_path / "w"),
          *(f"--config.{k}={v}" for k, v in {**TINY, **PIX2PIX}.items())]
  cases = [("crop_size=30", r"config\.crop_size=30 must be a multiple of 32, the stride of config\.netG='unet_32'"),
           ("lr=nan", r"config\.lr=nan must be a finite number"), ("lr=inf", r"config\.lr=inf must be"),
           ("lr=0", r"config\.lr=0\.0 must be > 0"), ("lr=-1e-4", r"config\.lr=-0\.0001 must be"),
           ("lambda_L1=nan", r"config\.lambda_L1=nan must be a finite number"),
           ("num_train_steps=0", r"config\.num_train_steps=0 .*use -1 for the epoch schedule.*positive number")]
  for override, message in cases:
    assert run_cli(*base, f"--config.{override}") == 2, override
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), (override, err)
    assert not (tmp_path / "w").exists(), override
  config = cli.load_config_file(str(ROOT / "configs/pix2pix_demo.py"))   # -1 keeps the epoch schedule
  assert cli.apply_overrides(config, [("num_train_steps", "-1"), ("crop_size", "512"), ("load_size", "542")])
  cyc = cli.load_config_file(str(ROOT / "configs/cyclegan_demo.py"))     # resnet: stride 4
  with pytest.raises(cli.UsageError, match=r"crop_size=30 must be a multiple of 4, the stride .*\(e\.g\. 28 or 32\)"):
    cli.apply_overrides(cyc, [("crop_size", "30")])
  assert cli.apply_overrides(cyc, [("preprocess", "scale_width")])   # rounds each image to the stride itself


def test_train_evaluate_and_translate_on_a_file_say_it_is_not_a_directory(tmp_path, capsys):
  file = tmp_path / "run"
  file.write_text("not a workdir")
  write_image(tmp_path / "img.png", 32, 32)
  assert run_cli("evaluate", "--workdir", file) == 1
  assert f"--workdir {file} is a file, not a directory" in capsys.readouterr().err
  assert run_cli("translate", "--workdir", file, "--input", tmp_path / "img.png", "--output", tmp_path / "out") == 1
  assert f"--workdir {file} is a file, not a directory" in capsys.readouterr().err
  assert not (tmp_path / "out").exists() and file.read_text() == "not a workdir"
  assert run_cli("train", "--config", str(ROOT / "configs/pix2pix_demo.py"), "--workdir", file) == 1
  assert f"--workdir {file} is a file, not a directory" in capsys.readouterr().err
  assert file.read_text() == "not a workdir"
