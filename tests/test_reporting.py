"""jaxgan.reporting.read_scalars: the logged scalars read back, with a resumed run's restart honoured."""
from __future__ import annotations

import time

import ml_collections

from jaxgan import reporting


def _config():
  return ml_collections.ConfigDict({"model": "pix2pix", "dataset": "demo:facades", "use_wandb": False})


def test_read_scalars_returns_each_tag_by_step_and_drops_what_a_resume_rewrites(tmp_path):
  assert reporting.read_scalars(tmp_path) == {}
  first = reporting.Reporter(tmp_path, _config())
  for step in (10, 20, 30):
    first.scalars(step, {"G": float(step), "D": 1.0}, prefix="train/")
  first.close()
  time.sleep(1.1)   # event file names carry the second they were created in
  resumed = reporting.Reporter(tmp_path, _config(), start_step=20)   # as a run resumed from step 20
  resumed.scalars(30, {"G": -30.0}, prefix="train/")
  resumed.close()
  scalars = reporting.read_scalars(tmp_path)
  assert scalars["train/G"] == [(10, 10.0), (30, -30.0)]   # step 20 and the old 30 were purged
  assert scalars["train/D"] == [(10, 1.0)]


def test_reporter_does_not_import_torch_and_torch_stays_importable(tmp_path):
  """tensorboardX imports PyTorch when installed (1-2 s of each CLI start); the Reporter keeps it out."""
  import importlib.util
  import subprocess
  import sys

  import pytest
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed: nothing to keep out")
  code = "\n".join([
      "import sys, ml_collections",
      "from jaxgan import reporting",
      "c = ml_collections.ConfigDict({'model': 'pix2pix', 'dataset': 'demo:facades', 'use_wandb': False})",
      "r = reporting.Reporter(sys.argv[1], c); r.scalars(1, {'G': 2.0}); r.close()",
      "assert 'torch' not in sys.modules, 'the Reporter imported torch'",
      "assert reporting.read_scalars(sys.argv[1])['G'] == [(1, 2.0)]",
      "import torch; print(torch.zeros(2).sum().item())"])
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "0.0"
