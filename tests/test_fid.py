"""jaxgan.fid against pytorch-fid's own code: the network, the folder statistics, the Frechet distance; KID.

The network test builds pytorch-fid's model with random weights (``tests/fid_reference.py``:
its ``fid_inception_v3`` with the download replaced, BatchNorm given random affine terms
and running statistics from a calibration batch), saves that state_dict as the weights
file, loads it into pytorch-fid's ``InceptionV3`` (its own strict ``load_state_dict``) and
into jaxgan, and compares. Features: within 1e-4 of the largest feature.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require_torch
from jaxgan import fid, fid_io

FEATURE_TOL = 1e-4


def _spd(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
  return np.cov(rng.normal(size=(n, d)) @ rng.normal(size=(d, d)), rowvar=False)


# ----------------------------------------------------------------------------- layers (torch only)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(40, 48), (320, 301), (299, 299), (1, 7)])
def test_resize_matches_torch_interpolate(shape):
  torch = require_torch()
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).random((2, *shape, 3), dtype=np.float32)
  ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear",
                      align_corners=False).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(np.asarray(fid.resize_bilinear(x)), ref, atol=2e-6)
  np.testing.assert_allclose(fid_io._to_batch([(x[0] * 255).astype(np.uint8), x[1]])[1], ref[1], atol=2e-6)


@pytest.mark.torch
def test_average_pool_leaves_padding_out():
  torch = require_torch()
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(1).normal(size=(2, 5, 7, 3)).astype(np.float32)
  ref = F.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3, stride=1, padding=1, count_include_pad=False)
  np.testing.assert_allclose(np.asarray(fid.avg_pool_3x3_exclude_pad(x)), ref.permute(0, 2, 3, 1).numpy(),
                             atol=1e-6)


# ----------------------------------------------------------------------------- the network against pytorch-fid


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  from fid_reference import reference  # pylint: disable=import-outside-toplevel
  return reference(tmp_path_factory)


@pytest.fixture(scope="module")
def params(ref):
  return fid.load_params(ref.pth)


@pytest.mark.torch
def test_features_match_pytorch_fid(ref, params):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
  expected = ref.features(images)
  spread = np.abs(expected - expected.mean(axis=0)).max()   # how much the features differ across images
  assert spread > 100 * FEATURE_TOL * np.abs(expected).max()
  got = fid.FeatureExtractor(params, batch_size=4)(images)   # one padded batch
  assert got.shape == (3, fid.FEATURE_DIM) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=FEATURE_TOL, atol=FEATURE_TOL * np.abs(expected).max())
  # the same from the .npz of the same keys, and in a padded partial batch
  again = fid.FeatureExtractor(fid.load_params(ref.npz), batch_size=4)(images[:2])
  np.testing.assert_allclose(again, got[:2], rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@pytest.mark.torch
def test_folder_statistics_match_pytorch_fid(ref, params, tmp_path):
  """mu and sigma of a folder (a padded partial batch included) as pytorch-fid computes them.

  (The Frechet distance of such 2048-d statistics is scipy's ``sqrtm`` of a 2048 x 2048
  matrix, a minute or more on this CPU: it is tested on smaller ones below.)"""
  from fid_reference import write_images  # pylint: disable=import-outside-toplevel
  files = write_images(tmp_path / "a", 5, seed=1)
  mu_ref, sigma_ref = ref.fid_score.calculate_activation_statistics(files, ref.model, batch_size=len(files),
                                                                    device="cpu", num_workers=0)
  extractor = fid.FeatureExtractor(params, batch_size=4)
  mu, sigma, feats = fid_io.statistics_of(str(tmp_path / "a"), lambda: extractor, batch_size=4)
  assert feats.shape == (len(files), fid.FEATURE_DIM) and mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(mu, mu_ref, atol=FEATURE_TOL * np.abs(mu_ref).max())
  np.testing.assert_allclose(sigma, sigma_ref, atol=FEATURE_TOL * np.abs(sigma_ref).max())


# ----------------------------------------------------------------------------- Frechet distance


def _pytorch_fid_frechet(fid_score, *args):
  """pytorch-fid's calculate_frechet_distance; on SciPy without ``sqrtm(disp=)`` (removed in 1.18), its
  ``sqrtm(A, disp=False)`` call is answered as the older SciPy did: ``(sqrtm(A), error estimate)``."""
  import inspect  # pylint: disable=import-outside-toplevel
  from scipy import linalg  # pylint: disable=import-outside-toplevel
  if "disp" in inspect.signature(linalg.sqrtm).parameters:
    return fid_score.calculate_frechet_distance(*args)

  class Linalg:
    @staticmethod
    def sqrtm(a, disp=True):
      x = linalg.sqrtm(a)
      return x if disp else (x, np.linalg.norm(x @ x - a, "fro") ** 2 / np.linalg.norm(a, "fro"))

  original, fid_score.linalg = fid_score.linalg, Linalg
  try:
    return fid_score.calculate_frechet_distance(*args)
  finally:
    fid_score.linalg = original


@pytest.mark.torch
def test_frechet_distance_matches_pytorch_fid(caplog):
  from fid_reference import import_pytorch_fid  # pylint: disable=import-outside-toplevel
  _, fid_score = import_pytorch_fid()
  rng = np.random.default_rng(0)
  well = (rng.normal(size=16), _spd(rng, 16, 200), rng.normal(size=16), _spd(rng, 16, 200))
  # rank-deficient covariances: 3 samples in 32 dimensions (sqrtm returns a complex result)
  few = [rng.normal(size=(3, 32)) for _ in range(2)]
  singular = (few[0].mean(0), np.cov(few[0], rowvar=False), few[1].mean(0), np.cov(few[1], rowvar=False))
  # a product without a square root (nilpotent): sqrtm is not finite, so both add eps * I
  nil = np.zeros((2, 2))
  nil[0, 1] = 1.0
  no_root = (np.zeros(2), nil, np.ones(2), np.eye(2))
  import warnings  # pylint: disable=import-outside-toplevel
  for case in (well, singular, no_root):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")   # SciPy's deprecation of sqrtm(disp=) in pytorch-fid's call
      theirs = _pytorch_fid_frechet(fid_score, *case)
    with caplog.at_level("WARNING", logger="jaxgan.fid.distance"):
      caplog.clear()
      ours = fid.frechet_distance(*case)
    assert ours == pytest.approx(float(theirs), rel=1e-9, abs=1e-9)
    assert ("singular product" in caplog.text) == (case is no_root)
  assert fid.frechet_distance(*well) > 1.0


def test_frechet_distance_basic_properties():
  rng = np.random.default_rng(3)
  mu, sigma = rng.normal(size=8), _spd(rng, 8, 100)
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8
  # diagonal covariances: the closed form sum (mu1 - mu2)^2 + (sqrt(s1) - sqrt(s2))^2
  s1, s2 = rng.uniform(0.5, 2, 8), rng.uniform(0.5, 2, 8)
  expected = np.sum((mu - 1) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  assert fid.frechet_distance(mu, np.diag(s1), np.ones(8), np.diag(s2)) == pytest.approx(expected, rel=1e-9)
  with pytest.raises(ValueError, match="different lengths"):
    fid.frechet_distance(mu, sigma, mu[:4], sigma[:4, :4])
  with pytest.raises(ValueError, match="at least 2"):
    fid.feature_statistics(np.zeros((1, 8)))


# ----------------------------------------------------------------------------- KID


def _kid_direct(f1, f2, subsets, subset_size, seed):
  """The formula written out: mean over draws of the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
  rng = np.random.RandomState(seed)
  d = f1.shape[1]
  m = min(subset_size, len(f1), len(f2))
  k = lambda a, b: (np.dot(a, b) / d + 1.0) ** 3  # noqa: E731
  values = []
  for _ in range(subsets):
    x = f1[rng.choice(len(f1), m, replace=False)]
    y = f2[rng.choice(len(f2), m, replace=False)]
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    values.append(xx + yy - 2 * xy)
  return np.mean(values), np.std(values)


@pytest.mark.parametrize("full_gram", [True, False])
def test_kid_matches_the_formula(monkeypatch, full_gram):
  if not full_gram:
    monkeypatch.setattr(fid.distance, "FULL_GRAM_MAX", 0)   # kernel matrices per subset
  rng = np.random.default_rng(0)
  f1, f2 = rng.normal(size=(14, 6)), rng.normal(0.3, 1.2, size=(11, 6))
  for subset_size in (8, 1000):   # 1000 > both sets: each subset is min(n1, n2) = 11 features
    got = fid.kid(f1, f2, subsets=6, subset_size=subset_size, seed=5)
    np.testing.assert_allclose(got, _kid_direct(f1, f2, 6, subset_size, 5), rtol=1e-10, atol=1e-12)
  assert got[0] > 0 and got[1] > 0


def test_kid_near_zero_for_one_distribution_and_errors():
  rng = np.random.default_rng(1)
  same = fid.kid(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)), subsets=20)
  shifted = fid.kid(rng.normal(size=(300, 4)), rng.normal(1.0, 1.0, size=(300, 4)), subsets=20)
  assert abs(same[0]) < 3 * same[1] + 1e-3 and shifted[0] > 10 * abs(same[0])
  with pytest.raises(ValueError, match="at least 2"):
    fid.kid(np.zeros((1, 4)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match=r"\[N1, D\]"):
    fid.kid(np.zeros((5, 4)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------- weight conversion


def _fake_state_dict() -> dict:
  sd = {}
  for prefix, (o, i, kh, kw) in fid.expected_kernel_shapes().items():
    sd[f"{prefix}.conv.weight"] = np.zeros((o, i, kh, kw), np.float32)
    for b in ("weight", "running_var"):
      sd[f"{prefix}.bn.{b}"] = np.ones(o, np.float32)
    for b in ("bias", "running_mean"):
      sd[f"{prefix}.bn.{b}"] = np.zeros(o, np.float32)
    sd[f"{prefix}.bn.num_batches_tracked"] = np.zeros((), np.int64)
  sd["fc.weight"], sd["fc.bias"] = np.zeros((1008, 2048), np.float32), np.zeros(1008, np.float32)
  return sd


def test_convert_state_dict_folds_batchnorm_and_names_bad_keys():
  shapes = fid.expected_kernel_shapes()
  assert len(shapes) == 94 and shapes["Mixed_7c.branch_pool"] == (192, 2048, 1, 1)
  assert shapes["Mixed_6b.branch7x7_2"] == (128, 128, 1, 7)
  sd = _fake_state_dict()
  rng = np.random.default_rng(0)
  w = rng.normal(size=(64, 32, 3, 3)).astype(np.float32)
  g, b, m, v = (rng.uniform(0.5, 2, 64).astype(np.float32) for _ in range(4))
  sd.update({"Conv2d_2b_3x3.conv.weight": w, "Conv2d_2b_3x3.bn.weight": g, "Conv2d_2b_3x3.bn.bias": b,
             "Conv2d_2b_3x3.bn.running_mean": m, "Conv2d_2b_3x3.bn.running_var": v})
  params = fid.convert_state_dict(sd)
  s = g.astype(np.float64) / np.sqrt(v.astype(np.float64) + 1e-3)
  np.testing.assert_allclose(params["Conv2d_2b_3x3"]["kernel"], (w * s[:, None, None, None]).transpose(2, 3, 1, 0),
                             rtol=1e-6)
  np.testing.assert_allclose(params["Conv2d_2b_3x3"]["bias"], b - m * s, rtol=1e-6, atol=1e-6)
  assert params["Mixed_5b"]["branch_pool"]["kernel"].shape == (1, 1, 192, 32)

  bad = dict(sd)
  del bad["Mixed_6c.branch7x7_3.bn.running_var"]
  bad["Mixed_5b.branch1x1.conv.weight"] = np.zeros((64, 192, 3, 3), np.float32)
  bad["AuxLogits.fc.weight"] = np.zeros((1008, 768), np.float32)
  with pytest.raises(fid.WeightsError) as e:
    fid.convert_state_dict(bad)
  for needle in ("Mixed_6c.branch7x7_3.bn.running_var", "Mixed_5b.branch1x1.conv.weight (64, 192, 3, 3)",
                 "AuxLogits.fc.weight"):
    assert needle in str(e.value)
  bad = dict(sd)
  bad["Mixed_7a.branch3x3_1.bn.bias"] = np.full(192, np.nan, np.float32)
  with pytest.raises(fid.WeightsError, match="NaN"):
    fid.convert_state_dict(bad)
