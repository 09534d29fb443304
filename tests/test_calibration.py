"""jaxgan.calibration: the per-processor choice of layer forms, measured once and read from the cache."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxgan import calibration
from jaxgan.models import fast_ops as F
from jaxgan.models import layers


@pytest.fixture(autouse=True)
def _calibration_on(monkeypatch):
  monkeypatch.setenv(calibration.ENV, "1")
  yield
  calibration.set_choices(None)


def _timings(plain_wins=()):
  return {f: {"fast_s": 1.0, "plain_s": 0.5 if f in plain_wins else 2.0} for f in calibration.FAMILIES}


def test_measures_once_then_reads_the_cache(tmp_path):
  calls = []
  first = calibration.ensure(tmp_path, measure=lambda: calls.append(1) or _timings({"conv_transpose"}))
  assert first["source"] == "measured" and calls == [1]
  assert first["choices"] == {"conv": True, "conv_transpose": False, "pad": True, "instance_norm": True,
                              "conv_wgrad": True}
  saved = json.loads((tmp_path / calibration.FILE_NAME).read_text())
  assert saved[calibration.machine_key()]["choices"] == first["choices"]
  calibration.set_choices(None)

  def fail():
    raise AssertionError("measured again although the cache holds this machine")

  second = calibration.ensure(tmp_path, measure=fail)
  assert second["source"] == "cache" and second["choices"] == first["choices"]
  assert not calibration.choice("conv_transpose") and calibration.choice("conv")


def test_a_near_tie_keeps_the_default_form(tmp_path):
  """Either way round: the fast form where it is the default, the plain kernel gradients (no taps)."""
  calibration.set_choices(None)
  assert [calibration.choice(f) for f in calibration.FAMILIES] == [True, True, True, True, False]
  for fast_s, plain_s in ((1.0, 0.95), (0.95, 1.0)):
    timings = {f: {"fast_s": fast_s, "plain_s": plain_s} for f in calibration.FAMILIES}
    out = calibration.ensure(tmp_path / str(fast_s), measure=lambda t=timings: t)
    assert out["source"] == "measured" and out["choices"] == calibration.DEFAULTS, (fast_s, out["choices"])


def test_the_choice_reaches_the_layers(tmp_path, monkeypatch):
  """With the plain transposed conv chosen, ConvTranspose2d traces the plain form (and the fast one not)."""
  calibration.ensure(tmp_path, measure=lambda: _timings({"conv_transpose"}))
  assert jax.default_backend() == "cpu"
  assert layers.fast_ops_enabled("conv") and not layers.fast_ops_enabled("conv_transpose")

  def boom(*a, **k):
    raise AssertionError("the fast transposed conv was used")

  monkeypatch.setattr(F, "conv_transpose_fast", boom)
  mod = layers.ConvTranspose2d(features=4, kernel_size=3, stride=2, padding=1, output_padding=1)
  x = np.ones((1, 5, 5, 3), np.float32)
  params = mod.init(jax.random.PRNGKey(0), x)
  assert mod.apply(params, x).shape == (1, 10, 10, 4)
  with layers.fast_ops(True):   # an explicit setting overrides the calibration
    with pytest.raises(AssertionError, match="fast transposed conv"):
      mod.apply(params, x)


def test_each_form_is_traced_with_its_choice_set():
  """The measurement traces the conv_wgrad case once per form, the custom backward included
  (which JAX traces after the forward has returned): taps as matmuls, or XLA's convolution."""
  calibration.set_choices({"conv_wgrad": False})
  f = jax.value_and_grad(lambda x, k: F.conv2d_valid(x, k).sum(), argnums=(0, 1))
  x, k = np.ones((1, 8, 8, 20), np.float32), np.ones((3, 3, 20, 20), np.float32)
  hlo = {fast: jax.jit(calibration._with_choice("conv_wgrad", fast, f)).lower(x, k).as_text() for fast in (True, False)}
  assert hlo[True].count("dot_general") >= 9 and "dot_general" not in hlo[False]
  assert calibration.choices() == {"conv_wgrad": False}     # the installed choice is restored


def test_a_corrupt_file_is_measured_again_and_replaced(tmp_path):
  path = tmp_path / calibration.FILE_NAME
  path.write_text("{ not json")
  out = calibration.ensure(tmp_path, measure=lambda: _timings({"pad"}))
  assert out["source"] == "measured" and out["choices"]["pad"] is False
  assert json.loads(path.read_text())[calibration.machine_key()]["choices"]["pad"] is False


def test_an_unwritable_folder_keeps_the_result_for_this_process(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")          # a file where the folder should be
  out = calibration.ensure(blocker / "cache", measure=lambda: _timings({"instance_norm"}))
  assert out["source"] == "measured" and not calibration.choice("instance_norm")
  assert blocker.read_text() == "x"


def test_switched_off_uses_the_defaults_and_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv(calibration.ENV, "0")
  out = calibration.ensure(tmp_path, measure=lambda: pytest.fail("measured although switched off"))
  assert out["source"] == "default"
  assert {f: calibration.choice(f) for f in calibration.FAMILIES} == calibration.DEFAULTS
  assert not (tmp_path / calibration.FILE_NAME).exists()


def test_the_real_measurement_times_every_family():
  timings = calibration.measure_families(reps=2)
  assert set(timings) == set(calibration.FAMILIES)
  for t in timings.values():
    assert t["fast_s"] > 0 and t["plain_s"] > 0


def test_the_cli_calibrates_before_a_command_that_runs_the_networks(tmp_path, monkeypatch):
  from jaxgan import cli
  monkeypatch.setenv("JAXGAN_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(calibration, "measure_families", lambda: _timings({"pad"}))
  status = cli.main(["evaluate", "--workdir", str(tmp_path / "no-such-run")])
  assert status == 1    # the run is missing; the calibration happened first
  saved = json.loads((tmp_path / "cache" / calibration.FILE_NAME).read_text())
  assert saved[calibration.machine_key()]["choices"]["pad"] is False
  monkeypatch.setattr(calibration, "measure_families", lambda: pytest.fail("measured again"))
  assert cli.main(["prepare", "--help"]) == 0   # commands that build no network do not calibrate
