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


def test_every_family_is_chosen_per_layer_shape(tmp_path):
  """Each layer shape of the step is decided by its own measurement, once per processor: a shape where
  the taps win gets them although the family's probe would tie; an instance norm where the plain form
  wins gets it beside one where the CPU form wins; each family takes the form most of its shapes chose."""
  big, small = "conv_wgrad@66x66x256:3x3>256:s1p0", "conv_wgrad@18x18x64:3x3>64:s1p0"
  norm_a, norm_b, norm_c = "instance_norm@64x64x256", "instance_norm@256x256x64", "instance_norm@128x128x128"
  wins = {big: "fast", small: "tie", norm_a: "plain", norm_b: "plain", norm_c: "fast"}
  calls = []

  def measure(shapes):
    calls.append(list(shapes))
    return {s: {"fast": {"fast_s": 0.08, "plain_s": 0.15}, "plain": {"fast_s": 0.2, "plain_s": 0.1},
                "tie": {"fast_s": 1.0, "plain_s": 1.0}}[wins[s]] for s in shapes}

  fail = lambda *a: pytest.fail("measured at the probe shapes")  # noqa: E731
  forms = calibration.resolve_forms("auto", shapes=list(wins), cache_dir=tmp_path, measure=fail,
                                    measure_shapes=measure)
  assert forms.use_fast("conv_wgrad", big[11:]) and not forms.use_fast("conv_wgrad", small[11:])
  assert not forms.use_fast("instance_norm") and forms.use_fast("instance_norm", norm_c[14:])
  assert not forms.use_fast("instance_norm", norm_a[14:]) and calls == [list(wins)]
  assert forms.use_fast("conv") and forms.use_fast("pad")     # families the step does not run: the default
  again = calibration.resolve_forms("auto", shapes=[big, norm_c], cache_dir=tmp_path, measure=fail,
                                    measure_shapes=lambda s: pytest.fail(f"measured again: {s}"))
  assert again.use_fast("conv_wgrad", big[11:]) and again.use_fast("instance_norm", norm_c[14:])
  assert LayerForms.parse(forms.spec()) == forms


def test_the_step_layer_shapes_are_every_layer_the_networks_run():
  from jaxgan import models
  g = models.define_G(3, 3, 8, "resnet_1blocks", norm="instance")
  d = models.define_D(3, 8, "basic", norm="instance")
  x = np.zeros((1, 32, 32, 3), np.float32)
  keys = calibration.step_layer_shapes(lambda: (g.init(jax.random.PRNGKey(0), x), d.init(jax.random.PRNGKey(0), x)))
  by_family = {f: sorted(k.split("@", 1)[1] for k in keys if k.startswith(f + "@")) for f in FAMILIES}
  # conv_wgrad: the residual block's 3x3 at H/4 after reflection padding, the 7x7 stem on 3 channels, the
  # PatchGAN's padded stride-1 4x4 (32 -> 16 -> 8 -> 4 then stride 1), the 7x7 head (8 -> 3: too few
  # inputs for the swapped form); not the strided convs (phase kernels of <= 4 taps) nor the PatchGAN's
  # 4x4 -> 1 logits
  assert by_family["conv_wgrad"] == sorted(["10x10x32:3x3>32:s1p0", "38x38x3:7x7>8:s1p0", "38x38x8:7x7>3:s1p0",
                                            "4x4x32:4x4>64:s1p1"]), keys
  assert set(by_family["conv_wgrad"]) < set(by_family["conv"]) and "32x32x3:4x4>8:s2p1" in by_family["conv"]
  # the two up-sampling layers, the stem's and head's 3-pixel and the block's 1-pixel reflection padding,
  # and every instance norm (the PatchGAN's first layer has none)
  assert by_family["conv_transpose"] == ["16x16x16:3x3>8:s2p1o1", "8x8x32:3x3>16:s2p1o1"], keys
  assert by_family["pad"] == ["32x32x3:p3", "32x32x8:p3", "8x8x32:p1"], keys
  assert "8x8x32" in by_family["instance_norm"] and "16x16x16" in by_family["instance_norm"], keys
  assert "16x16x8" not in by_family["instance_norm"], keys


def test_the_real_per_shape_measurement_times_every_family():
  shapes = ["conv@10x10x8:3x3>8:s1p0", "conv_wgrad@10x10x8:3x3>8:s1p0", "conv_transpose@5x5x8:3x3>4:s2p1o1",
            "pad@8x8x4:p1", "instance_norm@8x8x4"]
  timings = calibration.measure_layer_shapes(shapes, reps=1)
  assert set(timings) == set(shapes)
  assert all(t["fast_s"] > 0 and t["plain_s"] > 0 for t in timings.values())
  with pytest.raises(ValueError, match="not a conv shape key"):
    calibration.measure_layer_shapes(["conv@8x8x4"])


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


def test_the_cli_measures_nothing_before_a_command(tmp_path, monkeypatch):
  """The forms are decided where they are used (train, per layer shape, after any job join; translate and
  evaluate read them from the workdir): a command that fails on its input has measured and written nothing."""
  from jaxgan import cli
  monkeypatch.setenv("JAXGAN_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(calibration, "measure_families", lambda: pytest.fail("measured at the probe shapes"))
  monkeypatch.setattr(calibration, "measure_layer_shapes", lambda s: pytest.fail(f"measured {s}"))
  assert cli.main(["evaluate", "--workdir", str(tmp_path / "no-such-run")]) == 1
  assert cli.main(["translate", "--workdir", str(tmp_path / "no-such-run"), "--input", str(tmp_path),
                   "--output", str(tmp_path / "out")]) in (1, 2)
  assert not (tmp_path / "cache" / calibration.FILE_NAME).exists()


def test_a_clear_winner_ends_the_rounds_early_and_a_busy_machine_is_warned_about(tmp_path, monkeypatch, caplog):
  assert calibration._clear({"fast": [0.1, 0.12], "plain": [1.2, 1.3]})       # pylint: disable=protected-access
  assert not calibration._clear({"fast": [0.1], "plain": [1.2]})              # pylint: disable=protected-access
  assert not calibration._clear({"fast": [0.1, 0.7], "plain": [1.2, 1.3]})    # pylint: disable=protected-access
  monkeypatch.setattr(calibration.os, "getloadavg", lambda: (99.0, 99.0, 99.0))
  with caplog.at_level("WARNING", logger=calibration.__name__):
    calibration.shape_choices(["pad@8x8x4:p1"], cache_dir=tmp_path,
                              measure=lambda s: {k: {"fast_s": 1.0, "plain_s": 1.0} for k in s})
  assert any("busy" in r.getMessage() and calibration.FILE_NAME in r.getMessage() for r in caplog.records)
  caplog.clear()
  monkeypatch.setattr(calibration.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
  with caplog.at_level("WARNING", logger=calibration.__name__):
    calibration.shape_choices(["pad@8x8x4:p2"], cache_dir=tmp_path,
                              measure=lambda s: {k: {"fast_s": 1.0, "plain_s": 1.0} for k in s})
  assert not any("busy" in r.getMessage() for r in caplog.records)
