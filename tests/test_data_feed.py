"""Feeding the devices: uint8 batches made [-1, 1] inside the step, and the loop's data-wait logging."""
from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
import pytest

from jaxgan import images, parallel, pix2pix, reporting, train
from jaxgan.data import create_pipeline, pipeline as pipeline_lib

from test_train import tiny_config   # its settings (and so its compiled programs)


def test_pipeline_batches_are_uint8_and_the_step_equals_feeding_floats():
  # The config, batch and compiled step of tests/test_train.py's pix2pix runs (shared compiles).
  config = ml_collections.ConfigDict(tiny_config("pix2pix_demo").to_dict())
  pipe = create_pipeline(config, split="train")
  config.steps_per_epoch = pipe.steps_per_epoch
  batch = next(pipe.iterator())
  assert batch["A"].dtype == batch["B"].dtype == np.uint8                   # 4x fewer bytes than float32
  floats = images.batch_to_float(batch)                                      # the host's reference arithmetic
  assert floats["A"].dtype == np.float32 and -1 <= floats["A"].min() < floats["A"].max() <= 1
  np.testing.assert_array_equal(np.asarray(jax.jit(images.to_model_range)(batch["A"])), floats["A"])   # bit for bit
  mesh = parallel.make_mesh()
  state = train.init_state(pix2pix, config, batch, int(config.seed))
  step = train.compiled_train_step(pix2pix, config, mesh)                  # donates its state: one copy each
  copy = lambda: parallel.replicate(jax.tree.map(lambda x: jax.numpy.array(x, copy=True), state), mesh)  # noqa: E731
  from_pixels = step(copy(), parallel.shard_batch(batch, mesh))
  from_floats = step(copy(), parallel.shard_batch(floats, mesh))
  for a, b in zip(jax.tree_util.tree_leaves(from_pixels), jax.tree_util.tree_leaves(from_floats)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ValueError, match="int32"):
    images.to_model_range(batch["A"].astype(np.int32))


def test_the_loop_logs_the_fraction_of_time_spent_waiting_for_data(tmp_path, monkeypatch):
  real_next = pipeline_lib.PipelineIterator.__next__

  def slow_next(self):
    time.sleep(0.4)   # a pipeline much slower than the tiny step
    return real_next(self)

  logged, written = [], []
  real_scalars = reporting.Reporter.scalars
  monkeypatch.setattr(reporting.Reporter, "scalars",
                      lambda self, step, values, prefix="": (logged.append((step, prefix, dict(values))),
                                                            real_scalars(self, step, values, prefix))[1])
  real_write = reporting.Progress.write
  monkeypatch.setattr(reporting.Progress, "write", lambda self, m: (written.append(m), real_write(self, m))[1])
  monkeypatch.setattr(pipeline_lib.PipelineIterator, "__next__", slow_next)
  train.train_and_evaluate(tiny_config("pix2pix_demo"), tmp_path)          # 4 steps, logged after each
  waits = [v["data_wait_fraction"] for _, prefix, v in logged if prefix == "train/"]
  assert len(waits) == 4 and all(0 <= w <= 1 for w in waits)
  assert waits[0] == 0 and waits[-1] > 0.2, waits   # step 1 had its batch; step 4 waited 0.4 s for one
  warnings = [m for m in written if "waited for data" in m]
  assert len(warnings) == 1 and "--config.num_workers" in warnings[0], written
