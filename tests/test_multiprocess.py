"""Multi-host training for real: two `jaxgan train` processes on localhost equal one 4-device process.

Each process is started as a user would start one host of a job
(``--coordinator_address 127.0.0.1:PORT --num_processes 2 --process_id I``) with
2 fake CPU devices and gloo collectives; together they hold the same 4 devices
as the single-process run. Both runs train pix2pix (BatchNorm over the global
batch, dropout off) for a few steps and write one checkpoint; the test restores
both and compares every array. Each process reads its own shard of the data, so
the global batch is the same set of images in another order: equal up to float
summation order.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from jaxgan import checkpoint, inference

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3
OVERRIDES = {"netG": "unet_32", "ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 36, "crop_size": 32,
             "demo_train_size": 16, "demo_test_size": 2, "batch_size": 4, "num_train_steps": STEPS,
             "log_every_steps": 1, "checkpoint_every_steps": STEPS, "sample_every_steps": STEPS,
             "eval_batches": 1, "no_dropout": True}
TOL = 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir: Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "jaxgan", "train", "--config", str(ROOT / "configs" / "pix2pix_demo.py"),
          "--workdir", str(workdir), *[f"--config.{k}={v}" for k, v in OVERRIDES.items()], *extra]


def _env(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  env.setdefault("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
  for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"):
    env.pop(key, None)
  return env


def _wait(procs: list[subprocess.Popen], timeout: float = 400) -> list[str]:
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, f"{p.args}\nexit {p.returncode}:\n{out[-4000:]}"
  return outputs


def test_two_processes_equal_one_process_with_four_devices(tmp_path):
  port = _free_port()
  multi = tmp_path / "two_processes"
  procs = [subprocess.Popen(_command(multi, "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                                     "--process_id", str(i)),
                            env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  single = tmp_path / "one_process"
  outputs = _wait(procs) + _wait([subprocess.Popen(_command(single), env=_env(4), cwd=ROOT, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True)])

  # Each run reports its devices; only process 0 of the pair prints progress and writes logs.
  assert "4 device(s)" in outputs[0] and "4 device(s)" in outputs[2]
  assert "step 1/" not in outputs[1] and f"step {STEPS}/" in outputs[0]
  assert (multi / "eval.json").is_file() and (multi / "web" / "index.html").is_file()
  assert checkpoint.list_steps(multi) == checkpoint.list_steps(single) == [STEPS]

  state_multi, config_multi, _ = inference.load_for_inference(multi)
  state_single, _, _ = inference.load_for_inference(single)
  assert int(state_multi.step) == int(state_single.step) == STEPS
  assert bool(config_multi.no_dropout)
  leaves_m = jax.tree_util.tree_flatten_with_path(jax.device_get(state_multi))[0]
  leaves_s = jax.tree.leaves(jax.device_get(state_single))
  assert len(leaves_m) == len(leaves_s)
  for (path, x), y in zip(leaves_m, leaves_s):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape, jax.tree_util.keystr(path)
    np.testing.assert_allclose(x, y, rtol=TOL, atol=TOL, err_msg=jax.tree_util.keystr(path))
  # The runs trained: Adam counted STEPS updates in both (compared equal above).
  counts = [int(x) for p, x in leaves_m if "count" in jax.tree_util.keystr(p)]
  assert counts and all(c == STEPS for c in counts), counts
