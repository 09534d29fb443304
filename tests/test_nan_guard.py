"""Nothing non-finite is saved, and a run whose checkpoints were all set aside is not silently restarted.

The lr=1e10 run of issue 27 (the user's command, in-process): it stops naming the step and a finite
checkpoint, which `evaluate` and `translate` then use; a train after every checkpoint was moved to
unreadable_checkpoints/ refuses until --restart_from_scratch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxgan import checkpoint, cli, inference

ROOT = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
# The tiny settings of tests/test_cli.py and tests/test_train.py (one compile of each network per process).
TINY = {"netG": "unet_32", "ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32,
        "demo_train_size": 12, "demo_test_size": 2, "batch_size": 2, "num_train_steps": 4, "log_every_steps": 1,
        "checkpoint_every_steps": 2, "sample_every_steps": 0, "eval_batches": 1}


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch):
  monkeypatch.setenv("JAXGAN_CACHE_DIR", CACHE)


def _train(workdir: Path, *flags: str, **overrides) -> int:
  items = {**TINY, **overrides}
  return cli.main(["train", "--config", str(ROOT / "configs" / "pix2pix_demo.py"), "--workdir", str(workdir),
                   *flags, *(f"--config.{k}={v}" for k, v in items.items())])


def _finite(tree) -> bool:
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
  return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.floating))


def _restore(workdir: Path, step: int):
  return inference.load_for_inference(workdir, step)[0]


def test_lr_1e10_stops_naming_a_finite_checkpoint_that_evaluate_and_translate_use(tmp_path, capsys):
  workdir = tmp_path / "run"
  assert _train(workdir, lr=1e10, checkpoint_every_steps=1, keep_checkpoints=3, num_train_steps=12,
                log_every_steps=4) == 1
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert "non-finite" in err and "at step " in err and "Try a lower --config.lr" in err
  steps = checkpoint.list_steps(workdir)
  assert steps, err
  for step in steps:                                  # every kept checkpoint is finite, params to Adam's state
    assert _finite(_restore(workdir, step)), f"step {step} holds NaN/inf"
  assert f"the last good checkpoint is step {steps[-1]} in {workdir / 'checkpoints'} (checked finite" in err
  stopped_at = int(err.split("at step ")[1].split()[0].rstrip(":"))
  assert steps[-1] < stopped_at                       # the bad step was not saved
  assert cli.main(["evaluate", "--workdir", str(workdir), "--batches", "1"]) == 0
  results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert results["step"] == steps[-1]
  assert all(math.isfinite(v) for k, v in results.items() if isinstance(v, float)), results
  Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "in.png")
  assert cli.main(["translate", "--workdir", str(workdir), "--input", str(tmp_path / "in.png"),
                   "--output", str(tmp_path / "out")]) == 0
  assert f"checkpoint step {steps[-1]}" in capsys.readouterr().err
  assert Image.open(tmp_path / "out" / "in.png").size == (32, 32)


def _tiny_state(value: float):
  return {"params": {"G": jnp.full((3, 4), value)}, "opt_state": {"G": (jnp.int32(1), jnp.ones((3, 4)))}}


def test_save_refuses_a_non_finite_state_and_rotation_keeps_the_newest_finite(tmp_path):
  meta = {"config": {"model": "pix2pix"}}
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  with pytest.raises(checkpoint.NonFiniteStateError, match=r"refusing to save step 1 .*params/G: 12 NaN.*"
                     r"no checkpoint was kept"):
    ckpt.save(1, _tiny_state(float("nan")), meta=meta)
  for step in (1, 2, 3):
    ckpt.save(step, _tiny_state(float(step)), meta=meta)
  bad = _tiny_state(1.0)
  bad["opt_state"]["G"] = (jnp.int32(1), jnp.ones((3, 4)).at[0, 0].set(jnp.inf))
  with pytest.raises(checkpoint.NonFiniteStateError, match=r"step 4 .*opt_state/G: 1 inf.*last good checkpoint is "
                     r"step 3 .*\(checked finite"):
    ckpt.save(4, bad, meta=meta)
  ckpt.close()
  assert checkpoint.list_steps(tmp_path) == [2, 3]   # nothing of step 4; the rotation kept the newest good one
  assert not (checkpoint.checkpoint_dir(tmp_path) / "4").exists()
  assert checkpoint.nonfinite_summary(bad) == {"opt_state/G": "1 inf"}
  assert bool(checkpoint.all_finite(_tiny_state(0.0))) and not bool(checkpoint.all_finite(bad))


def test_train_refuses_after_every_checkpoint_was_set_aside_unless_told_to_restart(tmp_path, capsys):
  workdir = tmp_path / "run"
  assert _train(workdir, num_train_steps=2) == 0
  for f in (workdir / "checkpoints" / "2" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"\0garbage")
  capsys.readouterr()
  # The run that finds them unreadable moves them aside and says how to start over.
  assert _train(workdir) == 1
  assert "--restart_from_scratch" in capsys.readouterr().err
  assert (workdir / checkpoint.QUARANTINE_SUBDIR / "2" / "state").is_dir()
  # The next one refuses at once, in one line, writing nothing.
  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
  assert _train(workdir) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unreadable" in err[0] and "--restart_from_scratch" in err[0], err
  assert str(workdir / checkpoint.QUARANTINE_SUBDIR) in err[0] and "(2)" in err[0]
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
  # Told to, it trains from step 0 and keeps what was set aside.
  assert _train(workdir, "--restart_from_scratch") == 0
  assert checkpoint.list_steps(workdir) == [2, 4]
  assert (workdir / checkpoint.QUARANTINE_SUBDIR / "2" / "state").is_dir()
  assert _train(workdir, "--restart_from_scratch", num_train_steps=6) == 0   # readable now: resumes as always
  assert checkpoint.list_steps(workdir)[-1] == 6


def test_restart_from_scratch_in_the_run_that_finds_them_unreadable(tmp_path):
  from jaxgan import train
  workdir = tmp_path / "run"
  assert _train(workdir, num_train_steps=2) == 0
  shutil.rmtree(workdir / "checkpoints" / "2" / "state")
  config = cli.apply_overrides(cli.load_config_file(str(ROOT / "configs" / "pix2pix_demo.py")),
                               [(k, str(v)) for k, v in TINY.items()])
  result = train.train_and_evaluate(config, workdir, restart_from_scratch=True)
  assert result.step == 4 and int(result.state.step) == 4
  assert checkpoint.list_steps(workdir) == [2, 4]
  assert (workdir / checkpoint.QUARANTINE_SUBDIR / "2").is_dir()
  assert jax.tree_util.tree_leaves(result.state.params)


def test_a_resumed_train_skips_a_non_finite_checkpoint_of_an_older_version(tmp_path, caplog):
  meta = {"config": {"model": "pix2pix"}, "batch_shapes": {}}
  ckpt = checkpoint.Checkpointer(tmp_path, keep=3)
  ckpt.save(1, _tiny_state(1.0), meta=meta)
  ckpt.save(2, _tiny_state(float("nan")), meta=meta, checked_finite=True)   # as saves were before the check
  ckpt.close()
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  assert reader.restore_newest(None, lambda m: _tiny_state(0.0))[0] == 2     # translate/evaluate: as asked
  trainer = checkpoint.Checkpointer(tmp_path, keep=3)
  with caplog.at_level("WARNING"):
    step, state, _ = trainer.restore_newest(None, lambda m: _tiny_state(0.0), quarantine=True, require_finite=True)
  trainer.close()
  assert step == 1 and _finite(state)
  assert "holds non-finite values (params/G: 12 NaN)" in caplog.text
  assert checkpoint.list_steps(tmp_path) == [1] and (tmp_path / checkpoint.QUARANTINE_SUBDIR / "2").is_dir()
