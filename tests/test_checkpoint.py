"""jaxgan.checkpoint: Orbax save/restore of state + Grain iterator + config, safety on bad checkpoints."""
from __future__ import annotations

import shutil

import flax
import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

from jaxgan import checkpoint

flags.FLAGS.mark_as_parsed()


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: dict
  rng: jax.Array


def _state(step: int, width: int = 3) -> _State:
  return _State(step=jnp.int32(step), params={"G": {"kernel": jnp.full((2, width), float(step))}},
                rng=jax.random.PRNGKey(step))


def _iterator():
  return iter(grain.MapDataset.range(40).shuffle(seed=3).batch(2).to_iter_dataset())


CONFIG = {"model": "cyclegan", "netG": "resnet_6blocks", "netD": "basic", "norm": "instance", "input_nc": 3,
          "output_nc": 3, "ngf": 8, "ndf": 8, "n_layers_D": 2, "pool_size": 4, "num_train_steps": 10}


def _meta(config=None):
  return {"config": dict(config or CONFIG), "batch_shapes": {"A": [2, 32, 32, 3], "B": [2, 32, 32, 3]}}


def _save_steps(workdir, steps, keep=5, it=None):
  ckpt = checkpoint.Checkpointer(workdir, keep=keep)
  for s in steps:
    ckpt.save(s, _state(s), meta=_meta(), data_iterator=it)
  ckpt.close()


def test_round_trip_restores_state_and_iterator_position(tmp_path):
  it = _iterator()
  for _ in range(3):
    next(it)
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  ckpt.save(3, _state(3), meta=_meta(), data_iterator=it)
  # The saved position is the one at save time, even though the save is asynchronous.
  expected_next = [np.asarray(next(it)) for _ in range(2)]
  ckpt.close()

  fresh = _iterator()
  reader = checkpoint.Checkpointer(tmp_path, keep=2)
  step, state, meta = reader.restore_newest(CONFIG, lambda m: _state(0), data_iterator=fresh)
  reader.close()
  assert step == 3 and int(state.step) == 3
  np.testing.assert_array_equal(state.params["G"]["kernel"], np.full((2, 3), 3.0))
  np.testing.assert_array_equal(state.rng, jax.random.PRNGKey(3))
  assert meta["config"] == CONFIG and meta["batch_shapes"]["A"] == [2, 32, 32, 3]
  for want in expected_next:
    np.testing.assert_array_equal(np.asarray(next(fresh)), want)


def test_keeps_only_the_last_n(tmp_path):
  _save_steps(tmp_path, [1, 2, 3, 4], keep=2)
  assert checkpoint.list_steps(tmp_path) == [3, 4]


def test_half_written_step_is_ignored(tmp_path):
  _save_steps(tmp_path, [2])
  tmp = checkpoint.checkpoint_dir(tmp_path) / "4.orbax-checkpoint-tmp-1234"
  (tmp / "state").mkdir(parents=True)
  (tmp / "state" / "partial").write_bytes(b"\0" * 10)
  ckpt = checkpoint.Checkpointer(tmp_path, read_only=True)
  step, state, _ = ckpt.restore_newest(CONFIG, lambda m: _state(0))
  assert step == 2 and int(state.step) == 2


def _corrupt(workdir, step):
  state_dir = checkpoint.checkpoint_dir(workdir) / str(step) / "state"
  for f in state_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")


def test_corrupt_newest_falls_back_and_training_moves_it_aside(tmp_path, caplog):
  _save_steps(tmp_path, [2, 4])
  _corrupt(tmp_path, 4)
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  with caplog.at_level("WARNING"):
    step, state, _ = reader.restore_newest(CONFIG, lambda m: _state(0))
  assert step == 2 and int(state.step) == 2
  assert "step 4" in caplog.text
  assert (checkpoint.checkpoint_dir(tmp_path) / "4").is_dir()   # read-only: nothing moved

  trainer = checkpoint.Checkpointer(tmp_path)
  step, _, _ = trainer.restore_newest(CONFIG, lambda m: _state(0), quarantine=True)
  assert step == 2
  assert trainer.steps() == [2]
  assert (tmp_path / checkpoint.QUARANTINE_SUBDIR / "4" / "state").is_dir()   # moved, not deleted
  trainer.save(4, _state(4), meta=_meta())   # the step can be written again
  trainer.close()
  assert checkpoint.list_steps(tmp_path) == [2, 4]


def test_all_corrupt_is_a_clear_error_naming_the_directory(tmp_path):
  _save_steps(tmp_path, [2])
  (checkpoint.checkpoint_dir(tmp_path) / "2" / "meta" / "metadata").write_text("{not json")
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  with pytest.raises(checkpoint.CheckpointError, match=r"no readable checkpoint.*\n.*2[/\\]meta"):
    reader.restore_newest(CONFIG, lambda m: _state(0))


def test_config_mismatch_names_keys_and_both_values(tmp_path):
  _save_steps(tmp_path, [2])
  other = dict(CONFIG, ngf=16, netG="resnet_9blocks", num_train_steps=99)
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  with pytest.raises(checkpoint.ConfigMismatchError) as e:
    reader.restore_newest(other, lambda m: _state(0))
  msg = str(e.value)
  assert "ngf: checkpoint has 8, config has 16" in msg
  assert "netG: checkpoint has 'resnet_6blocks', config has 'resnet_9blocks'" in msg
  assert "num_train_steps" not in msg


def test_schedule_changes_are_allowed():
  changed = dict(CONFIG, num_train_steps=1000, lr=1e-3, n_epochs=3)
  assert checkpoint.config_differences(CONFIG, changed) == []
  assert checkpoint.config_differences(CONFIG, dict(CONFIG, pool_size=50)) == [
      "pool_size: checkpoint has 4, config has 50"]


def test_shape_mismatch_is_refused_not_treated_as_corrupt(tmp_path):
  _save_steps(tmp_path, [2])
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  with pytest.raises(checkpoint.ConfigMismatchError, match=r"only in the checkpoint: .*kernel \(2, 3\)"):
    reader.restore_newest(CONFIG, lambda m: _state(0, width=5))
  assert checkpoint.list_steps(tmp_path) == [2]


def test_read_only_without_checkpoints_is_a_clear_error(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoints in"):
    checkpoint.Checkpointer(tmp_path / "missing", read_only=True)
  assert not (tmp_path / "missing").exists()
  (checkpoint.checkpoint_dir(tmp_path)).mkdir(parents=True)
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoints in"):
    checkpoint.Checkpointer(tmp_path, read_only=True).restore_newest(CONFIG, lambda m: _state(0))


def test_explicit_step(tmp_path):
  _save_steps(tmp_path, [2, 4])
  reader = checkpoint.Checkpointer(tmp_path, read_only=True)
  step, state, _ = reader.restore_newest(CONFIG, lambda m: _state(0), step=2)
  assert step == 2 and int(state.step) == 2
  with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint for step 3 .*available: \[2, 4\]"):
    reader.restore_newest(CONFIG, lambda m: _state(0), step=3)
  shutil.rmtree(tmp_path)
