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
