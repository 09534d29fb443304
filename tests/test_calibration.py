"""jaxgan.cpu.calibration: the per-processor choice of layer forms, measured once and read from the cache."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxgan.cpu import calibration
from jaxgan.cpu import fast_ops as F
from jaxgan.models import layers
from jaxgan.models.forms import DEFAULT, FAMILIES, PLAIN, LayerForms


@pytest.fixture(autouse=True)
def _calibration_on(monkeypatch):
  monkeypatch.setenv(calibration.ENV, "1")


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

  def fail():
    raise AssertionError("measured again although the cache holds this machine")

  second = calibration.ensure(tmp_path, measure=fail)
  assert second["source"] == "cache" and second["choices"] == first["choices"]
  forms = calibration.resolve_forms("auto", cache_dir=tmp_path, measure=fail)
  assert not forms.use_fast("conv_transpose") and forms.use_fast("conv")


def test_a_near_tie_keeps_the_default_form(tmp_path):
  """Either way round: the fast form where it is the default, the plain kernel gradients (no taps)."""
  assert [DEFAULT.use_fast(f) for f in FAMILIES] == [True, True, True, True, False]
  for fast_s, plain_s in ((1.0, 0.95), (0.95, 1.0)):
    timings = {f: {"fast_s": fast_s, "plain_s": plain_s} for f in calibration.FAMILIES}
    out = calibration.ensure(tmp_path / str(fast_s), measure=lambda t=timings: t)
    assert out["source"] == "measured", out
    assert out["choices"] == {f: DEFAULT.use_fast(f) for f in FAMILIES}, (fast_s, out["choices"])


def test_the_choice_reaches_the_layers(tmp_path, monkeypatch):
  """With the plain transposed conv chosen, ConvTranspose2d built with those forms traces the plain form;
  built with the fast forms it traces the fast one (the value of the module decides, nothing else)."""
  forms = calibration.resolve_forms("auto", cache_dir=tmp_path, measure=lambda: _timings({"conv_transpose"}))
  assert jax.default_backend() == "cpu"
  assert forms.use_fast("conv") and not forms.use_fast("conv_transpose")

  def boom(*a, **k):
    raise AssertionError("the fast transposed conv was used")

  monkeypatch.setattr(F, "conv_transpose_fast", boom)
  mod = layers.ConvTranspose2d(features=4, kernel_size=3, stride=2, padding=1, output_padding=1, forms=forms)
  x = np.ones((1, 5, 5, 3), np.float32)
  params = mod.init(jax.random.PRNGKey(0), x)
  assert mod.apply(params, x).shape == (1, 10, 10, 4)
  with pytest.raises(AssertionError, match="fast transposed conv"):
    mod.clone(forms=DEFAULT).apply(params, x)


def test_auto_is_plain_off_cpu_and_explicit_values_are_kept(tmp_path):
  fail = lambda *a: pytest.fail("measured")  # noqa: E731
  assert calibration.resolve_forms("auto", platform="gpu", cache_dir=tmp_path, measure=fail) == PLAIN
  assert calibration.resolve_forms("pad=plain", cache_dir=tmp_path, measure=fail) == LayerForms.parse("pad=plain")


def test_kernel_gradient_forms_are_chosen_per_layer_shape(tmp_path):
  """conv_wgrad is decided at each conv shape the step runs, each shape measured once per processor:
  a shape where the taps win gets them although the family's probe tied."""
  big, small = "66x66x256:3x3>256:s1p0", "18x18x64:3x3>64:s1p0"
  calls = []

  def measure(shapes):
    calls.append(list(shapes))
    return {s: {"fast_s": 0.08 if s == big else 1.0, "plain_s": 0.15 if s == big else 1.0} for s in shapes}

  tie = lambda: {f: {"fast_s": 1.0, "plain_s": 1.0} for f in FAMILIES}  # noqa: E731
  forms = calibration.resolve_forms("auto", shapes=[big, small], cache_dir=tmp_path, measure=tie,
                                    measure_shapes=measure)
  assert forms.use_fast("conv_wgrad", big) and not forms.use_fast("conv_wgrad", small)
  assert not forms.use_fast("conv_wgrad") and calls == [[big, small]]
  again = calibration.resolve_forms("auto", shapes=[big], cache_dir=tmp_path, measure=tie,
                                    measure_shapes=lambda s: pytest.fail(f"measured again: {s}"))
  assert again.use_fast("conv_wgrad", big) and LayerForms.parse(forms.spec()) == forms


def test_the_step_conv_shapes_are_the_layers_where_the_kernel_gradient_form_matters():
  from jaxgan import models
  g = models.define_G(3, 3, 8, "resnet_1blocks", norm="instance")
  d = models.define_D(3, 8, "basic", norm="instance")
  x = np.zeros((1, 32, 32, 3), np.float32)
  keys = calibration.step_conv_shapes(lambda: (g.init(jax.random.PRNGKey(0), x), d.init(jax.random.PRNGKey(0), x)))
  # the residual block's 3x3 at H/4 after reflection padding, the 7x7 stem on 3 channels, the PatchGAN's
  # padded stride-1 4x4 (32 -> 16 -> 8 -> 4 then stride 1), the 7x7 head (8 -> 3: too few inputs for the
  # swapped form); not the strided convs (phase kernels of <= 4 taps) nor the PatchGAN's 4x4 -> 1 logits
  assert keys == sorted(["10x10x32:3x3>32:s1p0", "38x38x3:7x7>8:s1p0", "38x38x8:7x7>3:s1p0",
                         "4x4x32:4x4>64:s1p1"]), keys


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
  assert out["source"] == "measured" and not out["choices"]["instance_norm"]
  assert blocker.read_text() == "x"


def test_switched_off_uses_the_defaults_and_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv(calibration.ENV, "0")
  out = calibration.ensure(tmp_path, measure=lambda: pytest.fail("measured although switched off"))
  assert out["source"] == "default" and out["choices"] == {}
  assert calibration.resolve_forms("auto", cache_dir=tmp_path, measure=lambda: pytest.fail("measured")) == DEFAULT
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
