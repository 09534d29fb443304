"""A run's XLA:CPU layer forms are decided once, logged, recorded in the checkpoints and reused.

Resume, ``translate`` and ``evaluate`` of a workdir build the networks with the forms it was trained
with, whatever the calibration file of the machine they meet says (or when it is gone).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
import pytest

from jaxgan import checkpoint, cli, inference, nets, train
from jaxgan.cpu import calibration
from jaxgan.models.forms import FAMILIES, LayerForms

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32, "demo_train_size": 8,
        "demo_test_size": 2, "batch_size": 2, "log_every_steps": 1, "checkpoint_every_steps": 2,
        "sample_every_steps": 0, "eval_batches": 1, "netG": "unet_32"}

if not jax.config.jax_compilation_cache_dir:   # as tests/test_train.py: reruns load the tiny programs
  os.environ.setdefault("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
  cli.enable_compilation_cache()


def tiny_config(steps: int):
  config = cli.load_config_file(str(ROOT / "configs" / "pix2pix_demo.py"))
  return cli.apply_overrides(config, [(k, str(v)) for k, v in {**TINY, "num_train_steps": steps}.items()])


def _form_lines(caplog) -> list[str]:
  return [r.getMessage() for r in caplog.records if r.getMessage().startswith("layer forms: ")]


def test_a_workdir_keeps_its_layer_forms_whatever_the_calibration_says(tmp_path, monkeypatch, caplog):
  cache = tmp_path / "cache"
  monkeypatch.setenv(calibration.ENV, "1")
  monkeypatch.setattr(calibration, "default_dir", lambda: str(cache))
  # This machine's calibration, per layer shape of the step: the plain transposed conv everywhere, the tap
  # kernel gradients everywhere, the CPU conv form at every conv shape but the first.
  measured = []

  def measure(shapes):
    measured.extend(shapes)
    first_conv = min(s for s in shapes if s.startswith("conv@"))
    plain_wins = lambda s: s.startswith("conv_transpose@") or s == first_conv  # noqa: E731
    return {s: {"fast_s": 1.0, "plain_s": 0.5} if plain_wins(s) else {"fast_s": 0.1, "plain_s": 1.0} for s in shapes}

  monkeypatch.setattr(calibration, "measure_families", lambda: pytest.fail("measured at probe shapes"))
  monkeypatch.setattr(calibration, "measure_layer_shapes", measure)
  caplog.set_level(logging.INFO, logger="jaxgan.train")
  workdir = tmp_path / "run"
  train.train_and_evaluate(tiny_config(2), workdir)
  (line,) = _form_lines(caplog)
  assert "conv=fast (1 shapes opposite)" in line and "conv_transpose=plain" in line, line
  assert "conv_wgrad=fast" in line, line
  assert {"conv", "conv_transpose", "conv_wgrad"} <= {s.split("@")[0] for s in measured}, measured
  ckpt = checkpoint.Checkpointer(workdir)
  spec = ckpt.read_meta(2)["config"]["layer_forms"]
  ckpt.close()
  forms = LayerForms.parse(spec)
  assert not forms.use_fast("conv_transpose") and forms.use_fast("conv_wgrad")
  assert forms.shapes == (("conv", min(measured)[len("conv@"):]),) and not forms.use_fast(*forms.shapes[0])

  # Another machine, or the calibration file deleted: it would choose every fast form, no taps.
  (cache / calibration.FILE_NAME).unlink()
  monkeypatch.setattr(calibration, "measure_layer_shapes", lambda shapes: pytest.fail(f"measured {shapes}"))
  caplog.clear()
  train.train_and_evaluate(tiny_config(4), workdir)
  (line,) = _form_lines(caplog)
  assert "conv_transpose=plain" in line and "recorded in the workdir" in line, line
  ckpt = checkpoint.Checkpointer(workdir)
  assert ckpt.read_meta(4)["config"]["layer_forms"] == spec
  ckpt.close()

  # translate / evaluate of the workdir: the networks are built with the recorded forms.
  built = []
  real = nets.layer_forms
  monkeypatch.setattr(nets, "layer_forms", lambda config: built.append(real(config)) or built[-1])
  state, config, step = inference.load_for_inference(workdir)
  assert step == 4 and config.layer_forms == spec
  inference.evaluate(config, state, max_batches=1)
  assert built and set(built) == {forms}
