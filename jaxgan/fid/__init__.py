"""FID and KID with pytorch-fid's numbers, in JAX (pure: the network, its weights, the distances).

* :class:`FIDInceptionV3` / :class:`FeatureExtractor` (:mod:`jaxgan.fid.inception`) --
  pytorch-fid's InceptionV3 in Flax: NHWC images in [0, 1] -> 2048-d pool3 features;
  the extractor jit-compiles it for a fixed batch split over the devices.
* :func:`load_params` / :func:`convert_state_dict` / :func:`read_state_dict`
  (:mod:`jaxgan.fid.weights`) -- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
  (or an ``.npz`` of its keys) -> params.
* :func:`feature_statistics`, :func:`frechet_distance`, :func:`kid`
  (:mod:`jaxgan.fid.distance`) -- pytorch-fid's ``mu``/``sigma`` and Frechet distance,
  torch-fidelity's KID.

Reading folders, stats files and finding the weights: :mod:`jaxgan.fid_io`.
"""
from jaxgan.fid.distance import (KID_COEF0, KID_DEGREE, KID_SEED, KID_SUBSET_SIZE, KID_SUBSETS,
                                 feature_statistics, frechet_distance, kid)
from jaxgan.fid.inception import (FEATURE_DIM, INPUT_SIZE, FeatureExtractor, FIDInceptionV3,
                                  avg_pool_3x3_exclude_pad, resize_bilinear, resize_matrix)
from jaxgan.fid.weights import (BN_EPS, FID_WEIGHTS_FILENAME, FID_WEIGHTS_URL, WeightsError, convert_state_dict,
                                expected_kernel_shapes, load_params, read_state_dict)

__all__ = [
    "FIDInceptionV3", "FeatureExtractor", "FEATURE_DIM", "INPUT_SIZE", "resize_bilinear", "resize_matrix",
    "avg_pool_3x3_exclude_pad", "convert_state_dict", "read_state_dict", "load_params", "expected_kernel_shapes",
    "WeightsError", "FID_WEIGHTS_URL", "FID_WEIGHTS_FILENAME", "BN_EPS", "feature_statistics", "frechet_distance",
    "kid", "KID_SUBSETS", "KID_SUBSET_SIZE", "KID_DEGREE", "KID_COEF0", "KID_SEED",
]
