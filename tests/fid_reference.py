"""pytorch-fid's own code for the FID tests: importing it here, and its model with random weights.

pytorch-fid (installed with ``pip install --no-deps pytorch-fid``) imports
torchvision, whose Python model code it builds on (``torchvision.models.inception``).
PyPI's torchvision wheel is built against the CUDA build of torch: beside the CPU
build its compiled ops (``_C.so``) do not load, which torchvision tolerates, except
that ``torchvision/_meta_registrations.py`` then registers fake kernels for two of
those missing ops (``torch.library.register_fake("torchvision::nms")``) and the
import fails with "operator torchvision::nms does not exist". That module only
declares shapes of the compiled detection ops for ``torch.compile``; nothing else
imports from it. So, only when the plain import fails that way, :func:`import_pytorch_fid`
puts an empty module in its place and imports torchvision again: every line of
pytorch-fid's and torchvision's Python code that the tests run is the installed one.

Without pytorch-fid or torchvision the tests are skipped, unless
``JAXGAN_REQUIRE_TORCH=1`` (CI installs both), where that is a failure.
"""
from __future__ import annotations

import sys
import types

import numpy as np

_STUB = "torchvision._meta_registrations"


def import_torchvision():
  """torchvision, importable beside the CPU build of torch (module doc); no pytest needed."""
  try:
    import torchvision  # pylint: disable=import-outside-toplevel
    return torchvision
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]   # the half-imported package
  sys.modules[_STUB] = types.ModuleType(_STUB)
  import torchvision  # pylint: disable=import-outside-toplevel
  return torchvision


def import_pytorch_fid():
  """``(pytorch_fid.inception, pytorch_fid.fid_score)``; skips (or fails under JAXGAN_REQUIRE_TORCH=1) without them."""
  import pytest  # pylint: disable=import-outside-toplevel
  from conftest import require_torch, torch_required_by_env  # pylint: disable=import-outside-toplevel
  require_torch()
  try:
    import_torchvision()
    import pytorch_fid.fid_score as fid_score  # pylint: disable=import-outside-toplevel
    import pytorch_fid.inception as inception  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    if torch_required_by_env():
      pytest.fail(f"JAXGAN_REQUIRE_TORCH=1 but pytorch-fid cannot be imported ({e}); install it with "
                  "pip install --no-deps pytorch-fid==0.3.0 torchvision==0.28.0", pytrace=False)
    pytest.skip(f"pytorch-fid is not installed ({e}): pip install --no-deps pytorch-fid torchvision",
                allow_module_level=True)
  return inception, fid_score


def pytorch_fid_model(inception_module, state_dict):
  """pytorch-fid's ``InceptionV3()`` (pool3, resize, normalise) loading ``state_dict`` in place of its download.

  ``fid_inception_v3`` builds the network and calls ``inception.load_state_dict(state_dict)``
  (strict) with what ``load_state_dict_from_url`` returns; only that download is replaced.
  """
  original = inception_module.load_state_dict_from_url
  inception_module.load_state_dict_from_url = lambda *a, **k: state_dict
  try:
    return inception_module.InceptionV3().eval()
  finally:
    inception_module.load_state_dict_from_url = original


def random_fid_state_dict(inception_module, seed: int = 0, calibration_images: int = 1,
                          feature_scale: float = 0.01) -> dict:
  """A state_dict in pytorch-fid's layout, from its own ``fid_inception_v3`` with random weights.

  Conv weights keep torch's default initialisation; each BatchNorm gets a random
  affine (scale in [0.5, 1.5], bias N(0, 0.2)) and running statistics measured on a
  calibration batch of random images (with the default zero mean / unit variance,
  activations grow layer by layer and the features saturate). The affine terms of
  the last block's output convs (Mixed_7c) are then multiplied by ``feature_scale``: the features,
  its ReLU outputs averaged, scale by exactly that, into the range of the real
  network's (up to ~10; with these random weights they reach ~1000, where the
  covariances of a few images are too ill-conditioned for a Frechet distance).
  """
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  built = []
  inception3 = sys.modules["torchvision"].models.inception.Inception3
  original = inception3.load_state_dict, inception_module.load_state_dict_from_url
  inception3.load_state_dict = lambda self, *a, **k: built.append(self)   # keep the fresh initialisation
  inception_module.load_state_dict_from_url = lambda *a, **k: {}
  try:
    wrapper = inception_module.InceptionV3()
  finally:
    inception3.load_state_dict, inception_module.load_state_dict_from_url = original
  net = built[0]
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
      bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
      bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.2)
      bn.reset_running_stats()
      bn.momentum = None   # cumulative average: one batch sets the statistics to its own
    wrapper.train()
    wrapper(torch.rand(calibration_images, 3, 299, 299, generator=g))
    for name in ("branch1x1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"):
      bn = getattr(net.Mixed_7c, name).bn   # the convs whose outputs are the block's output
      bn.weight.mul_(feature_scale)
      bn.bias.mul_(feature_scale)
  return {k: v.detach().clone() for k, v in net.state_dict().items()}


def torch_features(model, images_u8: np.ndarray) -> np.ndarray:
  """pytorch-fid's features of uint8 NHWC images (``ToTensor``: ``/ 255``, NCHW), float32 ``[N, 2048]``."""
  import torch  # pylint: disable=import-outside-toplevel
  x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float().div(255)
  with torch.no_grad():
    return model(x)[0][:, :, 0, 0].numpy()


class Reference:
  """pytorch-fid with one random-weights file, shared by the FID test modules of a pytest process."""

  def __init__(self, folder: str):
    import os  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    self.inception, self.fid_score = import_pytorch_fid()
    state = random_fid_state_dict(self.inception)
    self.pth = os.path.join(folder, "random_fid_inception.pth")
    torch.save(state, self.pth)
    self.npz = os.path.join(folder, "random_fid_inception.npz")
    np.savez(self.npz, **{k: v.numpy() for k, v in state.items()})
    self.model = pytorch_fid_model(self.inception, torch.load(self.pth, weights_only=True))

  def features(self, images_u8: np.ndarray) -> np.ndarray:
    return torch_features(self.model, images_u8)


_REFERENCE: list[Reference] = []


def reference(tmp_path_factory) -> Reference:
  """The process's :class:`Reference` (built on first use, in a pytest temporary folder)."""
  if not _REFERENCE:
    _REFERENCE.append(Reference(str(tmp_path_factory.mktemp("fid_weights"))))
  return _REFERENCE[0]


def write_images(folder, n: int, seed: int, h: int = 32, w: int = 32, ext: str = ".png", mode: str = "RGB"
                 ) -> list[str]:
  """``n`` smooth random 8-bit images (``mode`` RGB or L) as files ``img_<i><ext>`` in ``folder``; their paths.

  The FID tests use one image size (32x32) so that one compiled network serves them all.
  """
  import os  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  paths = []
  for i in range(n):
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
      fx, fy, ph = rng.uniform(0.02, 0.2, 2).tolist() + [rng.uniform(0, 6.3)]
      img[..., c] = 127.5 + 100 * np.sin(fx * xx + fy * yy + ph) + rng.normal(0, 10, (h, w))
    path = os.path.join(str(folder), f"img_{i:02d}{ext}")
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert(mode).save(path)
    paths.append(path)
  return paths
