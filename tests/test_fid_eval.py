"""FID of a trained model: ``jaxgan evaluate --fid`` and ``config.fid_every_steps``, end to end.

A tiny grayscale CycleGAN trained on a folder dataset whose test domains differ in size
(3 A images, 4 B images: the unpaired test split repeats A to B's length). The
FID weights are pytorch-fid's model with random weights (``tests/fid_reference.py``).
evaluate --fid must score every test image once, exactly as ``jaxgan translate``
then ``jaxgan fid`` on the written folders (the CUT protocol by hand). A Frechet
distance of 2048-d statistics takes a minute or more on this CPU, so what the
commands pass to ``frechet_distance`` is recorded and compared (its numerics
are tested in ``tests/test_fid.py``); KID is computed for real.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxgan import cli, fid, fid_eval, fid_io

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "ndf": 8, "n_layers_D": 2, "load_size": 32, "crop_size": 32, "batch_size": 2,
        "num_train_steps": 4, "log_every_steps": 1, "checkpoint_every_steps": 4, "sample_every_steps": 0,
        "netG": "resnet_6blocks", "pool_size": 3, "input_nc": 1, "output_nc": 1, "fid_every_steps": 2}
# (the network of tests/test_cli.py's CycleGAN: grayscale, which FID sees replicated to RGB)

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  from fid_reference import reference  # pylint: disable=import-outside-toplevel
  return reference(tmp_path_factory)


class Recorder:
  """Stands in for ``fid.frechet_distance``: records its arguments, returns a distinct number per call."""

  def __init__(self):
    self.calls = []

  def __call__(self, mu1, sigma1, mu2, sigma2):
    self.calls.append((np.asarray(mu1), np.asarray(mu2)))
    return float(len(self.calls))


@pytest.fixture
def recorder(monkeypatch):
  rec = Recorder()
  monkeypatch.setattr(fid, "frechet_distance", rec)
  return rec


def _dataset(root: Path) -> Path:
  from fid_reference import write_images  # pylint: disable=import-outside-toplevel
  for name, n, seed in (("trainA", 4, 1), ("trainB", 4, 2), ("testA", 3, 3), ("testB", 4, 4)):
    write_images(root / name, n, seed, mode="L")
  for i, path in enumerate(sorted((root / "testB").iterdir())):   # names unlike testA's: an unpaired split
    path.rename(root / "testB" / f"b{i}.png")
  return root


def run(capsys, *args) -> tuple[int, dict | None, str]:
  capsys.readouterr()
  rc = cli.main([str(a) for a in args])
  out, err = capsys.readouterr()
  return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 and out.strip() else None), err


@pytest.fixture(scope="module")
def trained(ref, tmp_path_factory):
  """The tiny run, with FID during training (weights from $JAXGAN_FID_WEIGHTS); and the Frechet calls it made."""
  root = tmp_path_factory.mktemp("fid_eval")
  data = _dataset(root / "data")
  workdir = root / "run"
  overrides = [f"--config.{k}={v}" for k, v in {**TINY, "dataset": f"folder:{data}"}.items()]
  mp = pytest.MonkeyPatch()
  rec = Recorder()
  mp.setattr(fid, "frechet_distance", rec)
  mp.setenv(fid_io.ENV_WEIGHTS, ref.npz)
  mp.setattr(fid_eval, "DEFAULT_BATCH_SIZE", 4)   # the batch of the other FID tests: one compiled network
  mp.setenv("JAXGAN_CACHE_DIR", os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache"))
  try:
    assert cli.main(["train", "--config", str(ROOT / "configs" / "cyclegan_demo.py"), "--workdir", str(workdir),
                     *overrides]) == 0
  finally:
    mp.undo()
  return workdir, data, rec


def test_fid_during_training_reaches_eval_json_tensorboard_and_page(trained):
  workdir, _, rec = trained
  assert len(rec.calls) == 4   # steps 2 and 4, both directions
  history = [json.loads(line) for line in (workdir / "eval_history.jsonl").read_text().splitlines()]
  assert [h["step"] for h in history] == [2, 4]
  final = json.loads((workdir / "eval.json").read_text())
  assert final["step"] == 4 and final["fid"] == 3.0 and final["BtoA_fid"] == 4.0
  for key in ("kid", "kid_std", "BtoA_kid", "BtoA_kid_std"):
    assert np.isfinite(final[key])
  assert "fid = 3" in (workdir / "web" / "index.html").read_text()
  from test_cli import read_scalar_tags  # pylint: disable=import-outside-toplevel
  assert {"eval/fid", "eval/kid", "eval/BtoA_fid", "eval/BtoA_kid_std"} <= read_scalar_tags(workdir / "tensorboard")


def test_evaluate_fid_equals_translate_then_fid(trained, ref, recorder, tmp_path, capsys):
  workdir, data, _ = trained
  rc, result, err = run(capsys, "evaluate", "--workdir", workdir, "--fid", "--fid_weights", ref.npz,
                        "--fid_batch_size", 4)
  assert rc == 0, err
  assert result == json.loads((workdir / "eval.json").read_text())
  assert (result["fid"], result["BtoA_fid"]) == (1.0, 2.0) and result["num_images"] == 4
  (fake_b, real_b), (fake_a, real_a) = recorder.calls
  recorder.calls.clear()

  # the protocol by hand: translate each test image, then jaxgan fid on the folders
  for direction, src in (("AtoB", "testA"), ("BtoA", "testB")):
    assert run(capsys, "translate", "--workdir", workdir, "--input", data / src, "--output", tmp_path / direction,
               "--direction", direction)[0] == 0
  for name, folder in (("fakeB", tmp_path / "AtoB"), ("realB", data / "testB"), ("fakeA", tmp_path / "BtoA"),
                       ("realA", data / "testA")):
    rc, out, err = run(capsys, "fid", folder, tmp_path / f"{name}.npz", "--save-stats", "--weights", ref.npz,
                       "--batch-size", 4)
    assert rc == 0, err
  stats = {n: np.load(tmp_path / f"{n}.npz")["mu"] for n in ("fakeB", "realB", "fakeA", "realA")}
  assert len(os.listdir(tmp_path / "AtoB")) == 3 and len(os.listdir(tmp_path / "BtoA")) == 4
  for got, name in ((fake_b, "fakeB"), (real_b, "realB"), (fake_a, "fakeA"), (real_a, "realA")):
    np.testing.assert_allclose(got, stats[name], rtol=1e-4, atol=1e-4 * np.abs(stats[name]).max())
  rc, out, err = run(capsys, "fid", tmp_path / "AtoB", data / "testB", "--weights", ref.npz, "--batch-size", 4)
  assert rc == 0 and out["images_1"] == 3 and out["images_2"] == 4, err
  assert out["kid"] == pytest.approx(result["kid"], rel=1e-4, abs=1e-7)


def test_evaluate_fid_without_weights_fails_before_evaluating(trained, tmp_path, capsys, monkeypatch):
  workdir, _, _ = trained
  from test_fid_cli import _closed_port  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(fid_io, "WEIGHTS_URL", f"http://127.0.0.1:{_closed_port()}/{fid.FID_WEIGHTS_FILENAME}")
  monkeypatch.setenv(fid_io.ENV_CACHE_DIR, str(tmp_path / "cache"))
  monkeypatch.delenv(fid_io.ENV_WEIGHTS, raising=False)
  before = (workdir / "eval.json").read_text()
  rc, _, err = run(capsys, "evaluate", "--workdir", workdir, "--fid")
  assert rc == 1 and "no FID Inception weights" in err and "--fid_weights FILE" in err
  assert (workdir / "eval.json").read_text() == before


def test_paired_split_scores_each_pair_once(trained, ref, recorder, tmp_path, monkeypatch):
  """An aligned test split (pix2pix data, or name-matched folders): fake B of every A against every real B."""
  import shutil  # pylint: disable=import-outside-toplevel
  from jaxgan import inference  # pylint: disable=import-outside-toplevel
  workdir, data, _ = trained
  paired = tmp_path / "paired"
  for side in ("trainA", "trainB", "testA"):
    shutil.copytree(data / side, paired / side)
  shutil.copytree(data / "testA", paired / "testB")   # the same names as testA: aligned pairs
  state, config, _ = inference.load_for_inference(workdir)
  with config.unlocked():
    config.dataset = f"folder:{paired}"
  sizes = []
  real_kid = fid.kid
  monkeypatch.setattr(fid, "kid", lambda f1, f2: sizes.append((len(f1), len(f2))) or real_kid(f1, f2))
  extractor = fid.FeatureExtractor(fid.load_params(ref.npz), batch_size=4)
  out = fid_eval.model_fid(config, state, extractor)
  assert set(out) == {"fid", "kid", "kid_std", "BtoA_fid", "BtoA_kid", "BtoA_kid_std"}
  assert sizes == [(3, 3), (3, 3)]
  (_, real_b), (_, real_a) = recorder.calls
  np.testing.assert_allclose(real_a, real_b, rtol=1e-6)   # testB is a copy of testA
