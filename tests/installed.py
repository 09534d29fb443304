"""jaxgan installed as a user gets it from ``pip install .`` (not editable), for the tests that need that.

:func:`installed_jaxgan` copies the files a build reads (pyproject.toml,
setup.py, README.md, LICENSE, jaxgan/, configs/) to a temporary folder and runs
``pip install --no-deps --no-build-isolation --no-index --target SITE`` on the
copy: offline, a few seconds, nothing written into this checkout. The
dependencies are this interpreter's. Run anything with ``env(site)``
(``PYTHONPATH=SITE``, so ``import jaxgan`` finds the installed copy before the
editable one) from a folder outside the checkout; ``SITE/bin/jaxgan`` is the
installed console script. Built once per pytest process.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "jaxgan", "configs")
_SITE: list[Path] = []
# A seconds-long run of the cyclegan_demo recipe, the same in the quickstart notebook's test and in
# `jaxgan train` of tests/test_installed.py (the two share the compiled programs through the cache).
TINY_CYCLEGAN_DEMO = dict(netG="resnet_1blocks", ngf=4, ndf=4, netD="n_layers", n_layers_D=1, load_size=16,
                          crop_size=16, demo_train_size=6, demo_test_size=2, num_train_steps=2, log_every_steps=1,
                          sample_every_steps=2, eval_every_steps=0, checkpoint_every_steps=2)


def installed_jaxgan() -> Path:
  """The ``--target`` folder of a non-editable install of this checkout (built on the first call)."""
  if _SITE:
    return _SITE[0]
  base = Path(tempfile.mkdtemp(prefix="jaxgan-installed-"))
  src = base / "src"
  src.mkdir()
  for name in BUILD_INPUTS:
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif (ROOT / name).is_file():
      shutil.copy2(ROOT / name, src / name)
  site = base / "site"
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                         "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
                        capture_output=True, text=True, timeout=300, cwd=base)
  assert proc.returncode == 0, f"pip install --target failed:\n{proc.stdout}\n{proc.stderr}"
  shutil.rmtree(src)
  _SITE.append(site)
  return site


def env(site: Path, **extra: str) -> dict[str, str]:
  """A user's environment (without the variables tests/conftest.py set for the suite: calibration and the
  compiled-program cache run as they do for users) with ``site`` alone on PYTHONPATH (the checkout is not
  reachable from it)."""
  from conftest import user_environment  # pylint: disable=import-outside-toplevel
  return user_environment(PYTHONPATH=str(site), **extra)
