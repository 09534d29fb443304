"""The distances between feature sets: pytorch-fid's Frechet distance and torch-fidelity's KID (numpy, float64).

* :func:`feature_statistics` -- ``mu``, ``sigma`` as pytorch-fid (``np.mean``,
  ``np.cov(rowvar=False)``, float64).
* :func:`frechet_distance` -- pytorch-fid's ``calculate_frechet_distance``
  numerics: ``scipy.linalg.sqrtm`` of the product, ``eps * I`` added to both
  covariances when that is not finite, its tolerance on the imaginary part.
* :func:`kid` -- the Kernel Inception Distance (Binkowski et al., 2018) with
  torch-fidelity's defaults: unbiased MMD^2 with the kernel ``(x.y / d + 1)^3``
  over 100 random subsets of ``min(1000, n1, n2)`` features (seed 2020); mean and std.
"""
from __future__ import annotations

import logging

import numpy as np

KID_SUBSETS, KID_SUBSET_SIZE, KID_DEGREE, KID_COEF0, KID_SEED = 100, 1000, 3, 1.0, 2020



def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``mu [D]``, ``sigma [D, D]`` (float64) of ``features [N, D]``, as pytorch-fid (``np.cov``, ddof 1)."""
  f = np.asarray(features, np.float64)
  if f.ndim != 2 or len(f) < 2:
    raise ValueError(f"FID statistics need at least 2 feature vectors [N, D], got shape {f.shape}")
  return np.mean(f, axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))`` with pytorch-fid's numerics.

  float64; the square root by ``scipy.linalg.sqrtm``; when it is not finite (a
  singular product) ``eps * I`` is added to both covariances and it is taken again;
  an imaginary part of the result is dropped when its diagonal is within 1e-3 of
  zero, else ``ValueError('Imaginary component ...')``. Costs ``O(D^3)`` (a Schur decomposition): about
  a minute for D = 2048 on a 2-core CPU, as with pytorch-fid.
  """
  from scipy import linalg  # pylint: disable=import-outside-toplevel
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f"frechet_distance: mean vectors of different lengths {mu1.shape} and {mu2.shape}")
  if sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ValueError(f"frechet_distance: covariances {sigma1.shape} and {sigma2.shape} do not match the means "
                     f"{mu1.shape}")
  diff = mu1 - mu2
  try:
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
  except (linalg.LinAlgError, ValueError):   # a SciPy that refuses rather than returning inf/nan
    covmean = np.full(sigma1.shape, np.nan)
  if not np.isfinite(covmean).all():
    logging.getLogger(__name__).warning("fid calculation produces singular product; adding %s to diagonal of "
                                        "cov estimates", eps)
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))} (the square root of the covariance "
                       "product is not real: too few images for these statistics?)")
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
  return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kxy: np.ndarray, kyy: np.ndarray) -> float:
  m = kxx.shape[0]
  return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


FULL_GRAM_MAX = 2048   # up to this many features per set, the kernel matrices are computed once, whole


def kid(features1: np.ndarray, features2: np.ndarray, *, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, degree: int = KID_DEGREE, gamma: float | None = None,
        coef0: float = KID_COEF0, seed: int = KID_SEED) -> tuple[float, float]:
  """Kernel Inception Distance ``(mean, std)`` of two feature sets ``[N1, D]``, ``[N2, D]``.

  For each of ``subsets`` draws (``np.random.RandomState(seed)``; per draw
  ``choice(N1, m)`` then ``choice(N2, m)`` without replacement, ``m = min(subset_size,
  N1, N2)``, as torch-fidelity), the unbiased MMD^2 with kernel
  ``k(x, y) = (gamma x.y + coef0)^degree`` (``gamma`` default ``1 / D``); float64.
  Returns the mean and the (population) standard deviation over the draws.
  """
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise ValueError(f"kid: expected two feature arrays [N1, D] and [N2, D], got {f1.shape} and {f2.shape}")
  m = min(int(subset_size), len(f1), len(f2))
  if m < 2:
    raise ValueError(f"kid: needs at least 2 features in each set, got {len(f1)} and {len(f2)}")
  gamma = 1.0 / f1.shape[1] if gamma is None else float(gamma)
  k = lambda a, b: _poly_kernel(a, b, degree, gamma, coef0)  # noqa: E731
  full = max(len(f1), len(f2)) <= FULL_GRAM_MAX
  if full:
    k11, k22, k12 = k(f1, f1), k(f2, f2), k(f1, f2)
  rng = np.random.RandomState(seed)
  mmds = np.zeros(int(subsets))
  for i in range(int(subsets)):
    a = rng.choice(len(f1), m, replace=False)
    b = rng.choice(len(f2), m, replace=False)
    if full:
      mmds[i] = _mmd2_unbiased(k11[np.ix_(a, a)], k12[np.ix_(a, b)], k22[np.ix_(b, b)])
    else:
      x, y = f1[a], f2[b]
      mmds[i] = _mmd2_unbiased(k(x, x), k(x, y), k(y, y))
  return float(np.mean(mmds)), float(np.std(mmds))
