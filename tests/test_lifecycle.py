"""A run's life from the first line of `main` to its last write: one writer per workdir, readers beside a
rotating trainer, signals during start-up, full and read-only disks, a failed multi-host start.

Each test drives the real command (``cli.main`` in this process, or ``python -m jaxgan`` where the process's
own signal handling is the point) on the tiny pix2pix settings of tests/test_train.py, so that one pytest
process compiles each program once. Failures that need root or hardware (a full disk, a read-only mount)
are simulated by making the write raise the OSError the system would raise.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxgan import checkpoint, cli, inference, parallel, preemption, train
from jaxgan.workdir_lock import LOCK_NAME, WorkdirBusyError, WorkdirLock

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32, "demo_train_size": 12,
        "demo_test_size": 2, "batch_size": 2, "num_train_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 2, "sample_every_steps": 0, "eval_batches": 1, "netG": "unet_32"}

if not jax.config.jax_compilation_cache_dir:   # as tests/test_train.py: reruns load the tiny programs
  os.environ.setdefault("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
  cli.enable_compilation_cache()


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache"))


def train_args(workdir: Path, **extra) -> list[str]:
  return ["train", "--config", str(ROOT / "configs" / "pix2pix_demo.py"), "--workdir", str(workdir),
          *[f"--config.{k}={v}" for k, v in {**TINY, **extra}.items()]]


def tiny_config(**extra):
  config = cli.load_config_file(str(ROOT / "configs" / "pix2pix_demo.py"))
  return cli.apply_overrides(config, [(k, str(v)) for k, v in {**TINY, **extra}.items()])


def error_lines(err: str) -> list[str]:
  return [line for line in err.splitlines() if "error:" in line]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
  """A finished 4-step run (checkpoints at steps 2 and 4) that nothing interfered with."""
  workdir = tmp_path_factory.mktemp("lifecycle") / "reference"
  train.train_and_evaluate(tiny_config(), workdir)
  return workdir


# ----------------------------------------------------------------------------- one writer per workdir


def test_second_train_on_a_busy_workdir_is_refused_at_once_and_the_first_finishes_exactly(tmp_path, trained,
                                                                                        monkeypatch, capsys):
  workdir = tmp_path / "run"
  second = {}
  real_save = checkpoint.Checkpointer.save

  def save_then_start_another(self, step, *args, **kwargs):
    if not second:   # while the first run is at its first save, the same command starts again
      t = time.perf_counter()
      second["rc"] = cli.main(train_args(workdir))
      second["seconds"] = time.perf_counter() - t
      second["err"] = capsys.readouterr().err
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_start_another)
  first = train.train_and_evaluate(tiny_config(), workdir)
  assert second["rc"] == 1, second["err"][-2000:]
  (line,) = error_lines(second["err"])
  assert "in use by another `jaxgan train`" in line and f"pid {os.getpid()}" in line
  assert f"host {socket.gethostname()}" in line and "started 20" in line
  assert "Traceback" not in second["err"] and second["seconds"] < 60   # refused before building anything
  # The first run was not disturbed: bit-identical to the reference run, and it released the lock.
  reference, _, _ = inference.load_for_inference(trained)
  assert first.step == 4 and checkpoint.list_steps(workdir) == [2, 4]
  for x, y in zip(jax.tree.leaves(jax.device_get(first.state)), jax.tree.leaves(jax.device_get(reference))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (workdir / LOCK_NAME).read_text() == ""
  WorkdirLock(workdir).acquire().release()


def test_held_lock_refuses_and_names_the_holder(tmp_path):
  with WorkdirLock(tmp_path, command="jaxgan train --workdir x") as held:
    assert held.held
    with pytest.raises(WorkdirBusyError, match=rf"pid {os.getpid()}, started .* UTC \(jaxgan train --workdir x\)"):
      WorkdirLock(tmp_path).acquire()
  WorkdirLock(tmp_path).acquire().release()   # released on exit


def test_stale_lock_of_a_killed_run_is_taken_over_with_a_log_line(tmp_path, caplog):
  code = ("import os, signal, sys; from jaxgan.workdir_lock import WorkdirLock; "
          "WorkdirLock(sys.argv[1], command='jaxgan train (killed)').acquire(); os.kill(os.getpid(), signal.SIGKILL)")
  proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, timeout=120)
  assert proc.returncode == -signal.SIGKILL
  record = json.loads((tmp_path / LOCK_NAME).read_text())   # what kill -9 left behind
  assert record["command"] == "jaxgan train (killed)" and record["pid"] != os.getpid()
  with caplog.at_level("WARNING", logger="jaxgan.workdir_lock"):
    lock = WorkdirLock(tmp_path).acquire()
  try:
    assert lock.taken_over == record
    assert f"taking over the stale lock {tmp_path / LOCK_NAME}" in caplog.text
    assert f"pid {record['pid']}" in caplog.text and "its process is gone" in caplog.text
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
  finally:
    lock.release()


# ----------------------------------------------------------------------------- readers beside a trainer


def _rotate_during_first_read(monkeypatch, workdir: Path, calls: list):
  """The first read of a step's meta finds that a trainer saved a newer step and rotated the listed ones away."""
  real = checkpoint.Checkpointer.read_meta
  steps = checkpoint.list_steps(workdir)

  def read_meta(self, step):
    if not calls:
      ckpt_dir = checkpoint.checkpoint_dir(workdir)
      shutil.copytree(ckpt_dir / str(steps[-1]), ckpt_dir / "6")   # "step 6 saved"
      for s in steps:                                                # "steps 2 and 4 rotated away"
        shutil.rmtree(ckpt_dir / str(s))
    calls.append(step)
    return real(self, step)

  monkeypatch.setattr(checkpoint.Checkpointer, "read_meta", read_meta)


def test_evaluate_while_a_trainer_rotates_reads_the_newest_step(tmp_path, trained, monkeypatch, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  calls: list = []
  _rotate_during_first_read(monkeypatch, workdir, calls)
  assert cli.main(["evaluate", "--workdir", str(workdir), "--batches", "1"]) == 0, capsys.readouterr().err
  assert calls[0] == 4 and calls[-1] == 6   # listed 4, found it gone, listed again
  assert "l1" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert not (workdir / checkpoint.QUARANTINE_SUBDIR).exists()


def test_a_vanished_step_is_not_set_aside_as_unreadable(tmp_path, trained, monkeypatch):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  calls: list = []
  _rotate_during_first_read(monkeypatch, workdir, calls)
  ckpt = checkpoint.Checkpointer(workdir)   # the writer's restore path, which sets unreadable steps aside
  try:
    rep = parallel.replicated_sharding(parallel.make_mesh())
    step, _, _ = ckpt.restore_newest(None, lambda m: checkpoint.abstract_state_for(m, rep), quarantine=True)
  finally:
    ckpt.close()
  assert step == 6 and not (workdir / checkpoint.QUARANTINE_SUBDIR).exists()


# ----------------------------------------------------------------------------- signals during start-up


def _sigterm_caught(pid: int) -> bool:
  """Whether process ``pid`` has a handler for SIGTERM (bit 15 of SigCgt in /proc/PID/status)."""
  try:
    status = Path(f"/proc/{pid}/status").read_text()
  except OSError:
    return False
  mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
  return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc to see the handler installed")
def test_sigterm_at_start_up_exits_zero_with_one_line(tmp_path):
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen([sys.executable, "-m", "jaxgan", *train_args(workdir)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while not _sigterm_caught(proc.pid) and proc.poll() is None and time.time() < deadline:
      time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)   # as soon as the program can catch it
    out, err = proc.communicate(timeout=120)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert "jaxgan train: stopped by SIGTERM during start-up" in err and "nothing was lost" in err
  assert "Traceback" not in err and checkpoint.list_steps(workdir) == []


def test_sigterm_while_restoring_exits_zero_and_keeps_the_checkpoints(tmp_path, trained, monkeypatch, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  before = checkpoint.list_steps(workdir)
  real = checkpoint.Checkpointer.restore

  def restore(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)   # the scheduler's notice arrives mid-restore
    return real(self, *args, **kwargs)

  monkeypatch.setattr(checkpoint.Checkpointer, "restore", restore)
  got = []
  previous = signal.signal(signal.SIGTERM, lambda *a: got.append(a))   # never let a SIGTERM end pytest
  try:
    rc = cli.main(train_args(workdir, num_train_steps=8))
  finally:
    signal.signal(signal.SIGTERM, previous)
  err = capsys.readouterr().err
  assert rc == 0, err[-3000:]
  assert "stopped by SIGTERM during start-up (restoring the checkpoint)" in err
  assert checkpoint.list_steps(workdir) == before and not got   # nothing trained or written; handled by jaxgan
  assert signal.getsignal(signal.SIGTERM) is not None and preemption._EARLY is None


# ----------------------------------------------------------------------------- full and read-only disks


def test_full_disk_at_a_checkpoint_save_is_one_line_naming_what_was_kept(tmp_path, monkeypatch, capsys):
  import orbax.checkpoint as ocp
  workdir = tmp_path / "run"
  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 4:   # the final save: the disk is full
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.directory / "4.orbax-checkpoint-tmp"))
    return real(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  assert cli.main(train_args(workdir)) == 1
  err = capsys.readouterr().err
  (line,) = error_lines(err)
  assert f"cannot write checkpoint step 4 to {workdir / 'checkpoints' / '4'}: No space left on device" in line
  assert f"step 2 in {workdir / 'checkpoints'}, is kept" in line and "Traceback" not in err
  assert checkpoint.list_steps(workdir) == [2]
  WorkdirLock(workdir).acquire().release()   # the lock was released on the way out


def test_background_write_failures_are_recognised():
  tensorstore_error = ValueError('RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database at local file "/w/": '
                                 "Failed to write 877920 bytes to file 7: No space left on device "
                                 "[os_error_code='28']")
  assert checkpoint.write_failure(tensorstore_error) == os.strerror(errno.ENOSPC)
  wrapped = RuntimeError("commit failed")
  wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system", "/w/checkpoints/4")
  assert checkpoint.write_failure(wrapped) == "Read-only file system"
  assert checkpoint.write_failure(ValueError("shape mismatch")) is None


def test_evaluate_on_a_read_only_workdir_prints_its_json_then_one_line(tmp_path, trained, monkeypatch, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)

  def read_only(path, data):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path) + ".tmp")

  monkeypatch.setattr(inference, "write_json", read_only)
  assert cli.main(["evaluate", "--workdir", str(workdir), "--batches", "1"]) == 1
  captured = capsys.readouterr()
  assert "psnr" in json.loads(captured.out.strip().splitlines()[-1])   # the metrics reached stdout
  (line,) = error_lines(captured.err)
  assert f"cannot write {workdir / 'eval.json'}: Read-only file system; the metrics were printed above" in line
  assert "Traceback" not in captured.err


def test_full_disk_during_translate_names_the_file_and_what_was_kept(tmp_path, trained, monkeypatch, capsys):
  from PIL import Image
  from jaxgan import data
  inputs, out = tmp_path / "in", tmp_path / "out"
  inputs.mkdir()
  for i in range(3):
    Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(inputs / f"im{i}.png")
  real, saved = data.save_image, []

  def save_image(path, image):
    if len(saved) == 1:
      Path(path).write_bytes(b"\x89PNG half")   # the disk fills during the second image
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    saved.append(path)
    return real(path, image)

  monkeypatch.setattr(data, "save_image", save_image)
  rc = cli.main(["translate", "--workdir", str(trained), "--input", str(inputs), "--output", str(out),
                 "--batch_size", "1"])
  err = capsys.readouterr().err
  assert rc == 1, err[-2000:]
  (line,) = error_lines(err)
  assert f"cannot write {out / 'im1.png'}: No space left on device; 1 image(s) written before it are kept" in line
  assert sorted(p.name for p in out.iterdir()) == ["im0.png"]   # no half-written file left
  assert "Traceback" not in err


# ----------------------------------------------------------------------------- multi-host start-up


def test_a_failed_join_is_one_line_naming_the_cause(tmp_path, capsys):
  jax.devices()   # this pytest process has started its backend: joining a job is no longer possible
  with pytest.raises(parallel.DistributedStartError, match=r"^cannot join the multi-process job \(coordinator_"
                     r"address=127.0.0.1:1, num_processes=2, process_id=0\): JAX's backend is already running"):
    parallel.initialize_distributed("127.0.0.1:1", 2, 0)
  assert cli.main(train_args(tmp_path / "run") + ["--coordinator_address", "127.0.0.1:1", "--num_processes", "2",
                                                 "--process_id", "0"]) == 1
  err = capsys.readouterr().err
  (line,) = error_lines(err)
  assert line.startswith("jaxgan train: error: cannot join the multi-process job") and "Traceback" not in err
  assert not (tmp_path / "run").exists()   # refused before anything was written


def test_train_on_a_read_only_workdir_is_one_line(tmp_path, trained, monkeypatch, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  real_open, real_mkdir = os.open, os.mkdir

  def inside(path) -> bool:
    return str(os.path.abspath(os.fspath(path))).startswith(str(workdir))

  def ro_open(path, flags, *args, **kwargs):   # what a read-only mount answers (root ignores chmod)
    if inside(path) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
    return real_open(path, flags, *args, **kwargs)

  def ro_mkdir(path, *args, **kwargs):
    if inside(path):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
    return real_mkdir(path, *args, **kwargs)

  monkeypatch.setattr(os, "open", ro_open)
  monkeypatch.setattr(os, "mkdir", ro_mkdir)
  assert cli.main(train_args(workdir, num_train_steps=8)) == 1
  err = capsys.readouterr().err
  (line,) = error_lines(err)
  assert f"cannot write the lock file {workdir / LOCK_NAME}: Read-only file system; nothing was written" in line
  assert "Traceback" not in err
  monkeypatch.undo()
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
