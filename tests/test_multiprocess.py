"""Multi-host training for real: two `jaxgan train` processes on localhost equal one 4-device process,
and a SIGTERM to one of them stops both at the same step.

Each process is started as a user would start one host of a job: the README's
command (``jaxgan train --config ... --workdir ... --coordinator_address
127.0.0.1:PORT --num_processes 2 --process_id I``) in the environment a user has
(none of the variables tests/conftest.py sets for the suite: the calibration and
the compiled-program cache are on, in a cache folder of the test's own), with 2
fake CPU devices and gloo collectives; together they hold the same 4 devices as
the single-process run. The resumed pair joins through an Open MPI environment
instead of the flags (JAX's cluster detection), the other documented way. Both runs train pix2pix (BatchNorm over the global
batch, dropout off) for a few steps and write one checkpoint; the test restores
both and compares every array and every step's losses. Each process reads its
own block of each global batch, so every device sees the same images as in the
one-process run: equal up to float summation order.

Preemption: only process 1 gets SIGTERM; both must stop at one agreed step,
save it together and exit 0, and the resumed pair must end bit-identical to the
pair that never stopped (the same run the first test compares).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgan import checkpoint, inference, reporting
from conftest import user_environment

ROOT = Path(__file__).resolve().parents[1]
# Enough steps that a signal lands mid-run; resnet_1blocks + a 1-layer PatchGAN compile fastest.
STEPS = 10
OVERRIDES = {"netG": "resnet_1blocks", "ngf": 8, "ndf": 8, "n_layers_D": 1, "load_size": 36, "crop_size": 32,
             "demo_train_size": 16, "demo_test_size": 2, "batch_size": 4, "num_train_steps": STEPS,
             "log_every_steps": 1, "checkpoint_every_steps": STEPS, "sample_every_steps": STEPS,
             "eval_batches": 1, "no_dropout": True, "norm": "batch"}
TOL = 1e-5
EXACT_STEPS = 4   # steps whose losses must agree to TOL (see the comparison)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _jaxgan() -> list[str]:
  """The installed ``jaxgan`` program, as the README runs it (``python -m jaxgan`` where it is not installed)."""
  script = Path(sys.executable).with_name("jaxgan")
  return [str(script)] if script.is_file() else [sys.executable, "-m", "jaxgan"]


def _command(workdir: Path, *extra: str) -> list[str]:
  return [*_jaxgan(), "train", "--config", str(ROOT / "configs" / "pix2pix_demo.py"),
          "--workdir", str(workdir), *[f"--config.{k}={v}" for k, v in OVERRIDES.items()], *extra]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
  """The pair's own JAXGAN_CACHE_DIR: calibration and compiled programs start empty, as on a new machine."""
  return tmp_path_factory.mktemp("jaxgan_cache")


def _env(devices: int, cache: Path, **extra: str) -> dict:
  env = user_environment(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAXGAN_CACHE_DIR=str(cache),
                         XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
  for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
              "OMPI_MCA_orte_hnp_uri", "JAX_COORDINATOR_PORT"):
    if key not in extra:
      env.pop(key, None)
  return env


def _open_mpi_env(port: int, rank: int) -> dict:
  """What ``mpirun -np 2`` gives rank ``rank`` on one host (JAX's Open MPI detection reads these)."""
  return {"OMPI_MCA_orte_hnp_uri": "4096.0;tcp://127.0.0.1:1", "OMPI_COMM_WORLD_SIZE": "2",
          "OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_LOCAL_RANK": str(rank),
          "JAX_COORDINATOR_PORT": str(port)}


class _Pair:
  """Two `jaxgan train` processes of one job; each one's stdout+stderr is collected line by line.

  ``via="flags"``: the README's command; ``via="openmpi"``: no flags, the job read from an Open MPI environment.
  """

  def __init__(self, workdir: Path, cache: Path, via: str = "flags"):
    port = _free_port()
    if via == "flags":
      runs = [(_command(workdir, "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                        "--process_id", str(i)), _env(2, cache)) for i in range(2)]
    else:
      runs = [(_command(workdir), _env(2, cache, **_open_mpi_env(port, i))) for i in range(2)]
    self.procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True) for cmd, env in runs]
    self.lines: list[list[str]] = [[], []]
    self.step_1 = threading.Event()   # process 0 printed "step 1/"
    self._readers = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(2)]
    for t in self._readers:
      t.start()

  def _read(self, i: int) -> None:
    for line in self.procs[i].stdout:
      self.lines[i].append(line)
      if i == 0 and line.startswith("step 1/"):
        self.step_1.set()

  def output(self, i: int) -> str:
    return "".join(self.lines[i])

  def wait(self, timeout: float, what: str) -> list[str]:
    """Both exit 0 within ``timeout`` seconds (else both are killed and the test fails); their outputs."""
    try:
      for p in self.procs:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      pass
    finally:
      hung = [i for i, p in enumerate(self.procs) if p.poll() is None]
      for p in self.procs:
        if p.poll() is None:
          p.kill()
          p.wait()
      for t in self._readers:
        t.join(timeout=10)
    logs = "\n".join(f"--- process {i}:\n{self.output(i)[-3000:]}" for i in range(2))
    assert not hung, f"{what}: process(es) {hung} still running after {timeout:.0f} s (hung), killed\n{logs}"
    codes = [p.returncode for p in self.procs]
    assert codes == [0, 0], f"{what}: exit codes {codes}\n{logs}"
    return [self.output(i) for i in range(2)]


def _leaves(workdir: Path) -> list:
  return jax.tree_util.tree_flatten_with_path(jax.device_get(inference.load_for_inference(workdir)[0]))[0]


@pytest.fixture(scope="module")
def straight_pair(tmp_path_factory, cache_dir) -> tuple[Path, list[str]]:
  """A two-process run of STEPS steps that nothing interrupts: its workdir and the processes' outputs."""
  workdir = tmp_path_factory.mktemp("multiprocess") / "two_processes"
  return workdir, _Pair(workdir, cache_dir).wait(400, "two processes")


def test_two_processes_equal_one_process_with_four_devices(tmp_path, straight_pair, cache_dir):
  multi, outputs = straight_pair
  single = tmp_path / "one_process"
  # The one-process reference uses the fixed layer forms that a multi-process run uses (jaxgan.cpu.calibration):
  # the comparison is of the parallelism, not of this processor's choice of equal-math forms.
  proc = subprocess.Popen(_command(single), env=_env(4, cache_dir, JAXGAN_CALIBRATION="0"), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    outputs = outputs + [proc.communicate(timeout=400)[0]]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, outputs[-1][-4000:]

  # Each run reports its devices; only process 0 of the pair prints progress and writes logs.
  assert "4 device(s)" in outputs[0] and "4 device(s)" in outputs[2]
  assert "step 1/" not in outputs[1] and f"step {STEPS}/" in outputs[0]
  assert (multi / "eval.json").is_file() and (multi / "web" / "index.html").is_file()
  # The job evaluates once: process 0 alone, while process 1 waits at a barrier (not a collective).
  assert "waiting while process 0 evaluates" in outputs[1] and "waiting while process 0" not in outputs[0]
  assert checkpoint.list_steps(multi) == checkpoint.list_steps(single) == [STEPS]

  state_multi, config_multi, _ = inference.load_for_inference(multi)
  state_single, _, _ = inference.load_for_inference(single)
  assert int(state_multi.step) == int(state_single.step) == STEPS
  assert bool(config_multi.no_dropout)
  leaves_m = jax.tree_util.tree_flatten_with_path(jax.device_get(state_multi))[0]
  leaves_s = jax.tree.leaves(jax.device_get(state_single))
  assert len(leaves_m) == len(leaves_s)
  # Every step's losses (the per-step scalars of TensorBoard): the first steps equal to TOL, which any wrong
  # averaging over devices or processes breaks from step 2 on (it changes the first update). After that the
  # two programs may part by float noise: a LeakyReLU input within rounding of 0 on the demo's flat label maps
  # takes the other slope (seen at step 5 with this seed), and Adam turns the near-zero gradients it touches
  # into updates of up to lr, so later losses agree to 1e-3 and parameters and BatchNorm statistics to 2 lr
  # per step (seen: 29% of elements beyond 1e-5 after 10 steps, the worst 4.3e-4 with lr 2e-4); Adam's
  # moments (the last gradients) are compared by shape only.
  scalars = [reporting.read_scalars(w) for w in (multi, single)]
  for tag in ("train/D", "train/G", "train/G_L1"):
    steps = [[s for s, _ in r[tag]] for r in scalars]
    assert steps[0] == steps[1] == list(range(1, STEPS + 1)), tag
    got, want = ([v for _, v in r[tag]] for r in scalars)
    np.testing.assert_allclose(got[:EXACT_STEPS], want[:EXACT_STEPS], rtol=TOL, err_msg=tag)
    np.testing.assert_allclose(got, want, rtol=1e-3, err_msg=tag)
  bound = 2 * float(config_multi.lr) * STEPS
  for (path, x), y in zip(leaves_m, leaves_s):
    x, y, name = np.asarray(x, np.float64), np.asarray(y, np.float64), jax.tree_util.keystr(path)
    assert x.shape == y.shape, name
    if ".mu[" in name or ".nu[" in name:
      continue
    if name.startswith((".params", ".ema", ".batch_stats")):
      np.testing.assert_allclose(x, y, rtol=0, atol=bound, err_msg=name)
    else:
      np.testing.assert_allclose(x, y, rtol=TOL, atol=TOL, err_msg=name)
  # The runs trained: Adam counted STEPS updates in both (compared equal above).
  counts = [int(x) for p, x in leaves_m if "count" in jax.tree_util.keystr(p)]
  assert counts and all(c == STEPS for c in counts), counts


def test_sigterm_to_one_process_stops_both_at_one_step_and_resume_is_exact(tmp_path, straight_pair, cache_dir):
  workdir = tmp_path / "preempted"
  pair = _Pair(workdir, cache_dir)
  if not pair.step_1.wait(timeout=400):
    pair.wait(1, "before step 1")
    raise AssertionError("the pair ended before step 1:\n" + pair.output(0)[-3000:])
  pair.procs[1].send_signal(signal.SIGTERM)   # process 1 only, as a pod's scheduler may reach one host first
  outputs = pair.wait(120, "after SIGTERM to process 1")   # the old loop hung here: one saved, one stepped on

  stopped = checkpoint.list_steps(workdir)
  assert len(stopped) == 1 and 1 < stopped[0] < STEPS, (stopped, outputs[0][-3000:])
  stop = stopped[0]
  for i in range(2):   # both report the agreed step; process 0 stopped without a signal of its own
    assert f"process {i} of 2: stopping at step {stop} with all processes (SIGTERM on process 1)" in outputs[i]
    assert "checkpoint saved" in outputs[i]
  assert "SIGTERM received" in outputs[1] and "SIGTERM received" not in outputs[0]
  assert f"stopping at step {stop} (SIGTERM on process 1)" in outputs[0]

  outputs = _Pair(workdir, cache_dir, via="openmpi").wait(400, "resumed pair (joined from an Open MPI environment)")
  assert f"resuming at step {stop}" in outputs[0] and f"step {STEPS}/" in outputs[0]
  assert "4 device(s)" in outputs[0] and "step 1/" not in outputs[1]   # one job of two processes, not two runs
  assert checkpoint.list_steps(workdir)[-1] == STEPS
  resumed, straight = _leaves(workdir), _leaves(straight_pair[0])
  assert len(resumed) == len(straight)
  for (path, x), (_, y) in zip(resumed, straight):   # bit-identical: same processes, data order and steps
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
