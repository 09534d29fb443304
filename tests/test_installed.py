"""jaxgan's recipes travel with the package: ``--config NAME`` from any folder, in an installed (non-editable) copy.

The notebooks are run against the same installed copy, from an empty folder, in tests/test_notebooks.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from installed import ROOT, TINY_CYCLEGAN_DEMO, env, installed_jaxgan
from jaxgan.commands import UsageError, config_args

CACHE = os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")   # the one the other tests use


def test_recipes_by_name_from_any_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)                     # no configs/ here
  assert config_args.recipe_names() == sorted(p.stem for p in (ROOT / "configs").glob("[!_]*.py"))
  assert config_args.load_config_file("cyclegan_demo").model == "cyclegan"
  assert config_args.load_config_file("pix2pix_demo.py").model == "pix2pix"   # NAME.py when no such file here
  assert config_args.load_config_file("cyclegan_horse2zebra:monet2photo").dataset == "tfds:cycle_gan/monet2photo"
  with pytest.raises(UsageError, match="horse2zebra"):
    config_args.load_config_file("cyclegan_horse2zebra:cats2dogs")
  with pytest.raises(UsageError, match=r"no recipe or file named 'cyclegan_dmo'; did you mean --config cyclegan_demo\?"
                     r".*pix2pix_facades"):
    config_args.load_config_file("cyclegan_dmo")
  with pytest.raises(UsageError, match="no such file 'sub/cyclegan_demo.py'"):   # a path is never a recipe name
    config_args.load_config_file("sub/cyclegan_demo.py")
  (tmp_path / "pix2pix_demo.py").write_text(
      "from jaxgan.config import get_base_config\n\ndef get_config():\n  c = get_base_config()\n"
      "  c.ngf = 7\n  return c\n")
  assert config_args.load_config_file("pix2pix_demo.py").ngf == 7               # a file here wins over the name
  assert config_args.load_config_file(str(ROOT / "configs" / "pix2pix_demo.py")).ngf != 7   # paths still work


def test_installed_jaxgan_trains_a_recipe_by_name_from_an_empty_folder(tmp_path):
  """The issue's command with the console script of ``pip install .`` (not editable), outside the checkout."""
  site = installed_jaxgan()
  cwd = tmp_path / "empty"
  cwd.mkdir()
  where = subprocess.run([sys.executable, "-c", "import jaxgan, jaxgan.configs; print(jaxgan.__file__); "
                          "print(jaxgan.configs.__file__)"], cwd=cwd, env=env(site), capture_output=True, text=True,
                         timeout=120)
  assert where.returncode == 0, where.stderr
  assert all(Path(line).is_relative_to(site) for line in where.stdout.split()), where.stdout   # not the checkout
  assert sorted(p.stem for p in (site / "jaxgan" / "configs").glob("[!_]*.py")) == config_args.recipe_names()
  assert list(site.glob("jaxgan-*.dist-info/licenses/LICENSE"))                  # the license file is shipped
  overrides = [f"--config.{k}={v}" for k, v in TINY_CYCLEGAN_DEMO.items()]
  proc = subprocess.run([str(site / "bin" / "jaxgan"), "train", "--config", "cyclegan_demo", "--workdir", "W",
                         *overrides], cwd=cwd, env=env(site, JAXGAN_CACHE_DIR=CACHE),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (cwd / "W" / "checkpoints" / "2").is_dir()
  assert json.loads((cwd / "W" / "eval.json").read_text())
  # translate and evaluate of that workdir, as a user runs them (the same plain environment)
  from PIL import Image
  (cwd / "photos").mkdir()
  Image.new("RGB", (24, 16), (200, 40, 10)).save(cwd / "photos" / "p.jpg")
  jaxgan = lambda *a: subprocess.run([str(site / "bin" / "jaxgan"), *a], cwd=cwd,   # noqa: E731
                                     env=env(site, JAXGAN_CACHE_DIR=CACHE), capture_output=True, text=True,
                                     timeout=300)
  proc = jaxgan("translate", "--workdir", "W", "--input", "photos", "--output", "out", "--direction", "BtoA")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert Image.open(cwd / "out" / "p.png").size == (24, 16)
  proc = jaxgan("evaluate", "--workdir", "W")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])["num_images"] >= 1
