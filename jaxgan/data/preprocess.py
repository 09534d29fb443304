"""The reference preprocessing, as pure numpy/PIL functions of (image, options, rng).

Owns: ``resize_and_crop`` (resize to load_size x load_size, crop crop_size),
``crop``, ``scale_width``, ``scale_width_and_crop`` and ``none`` (round H and
W to the generator's stride), the random horizontal flip, and scaling to
float32 [-1, 1] (``as_float=True``; the input pipeline asks for the pixels in
their own bit depth instead and ships those, see :mod:`jaxgan.images`).
Resizing is bicubic, done by Pillow on 8-bit images exactly as the reference
does; 16-bit, float and >4-channel images are resized per channel in float
(Pillow mode ``F``, the same bicubic kernel) and rounded back to their type.

Random parameters are drawn once per example from a ``np.random.Generator``
and applied to every image that must stay aligned (paired A and B), so both
get the same crop and flip.

Test time (``train=False`` in :func:`preprocess_images`) is the reference's
test options: ``load_size`` is set to ``crop_size`` (so ``resize_and_crop``
resizes the whole image to crop_size x crop_size and crops nothing;
``scale_width[_and_crop]`` scales the width to crop_size), never a flip, and
where a crop remains (``crop``, ``scale_width_and_crop``) it is the centre one
(the reference takes a random one even at test time; a fixed one makes
evaluation repeatable). See :meth:`PreprocessOptions.for_split`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image

from jaxgan import config as config_lib
from jaxgan.data.image_io import DataError, to_model_range

PREPROCESS_MODES = config_lib.PREPROCESS


def generator_stride(netG: str) -> int:
  """H and W must be multiples of this for ``netG`` (:func:`jaxgan.config.generator_stride`), as a DataError."""
  try:
    return config_lib.generator_stride(netG)
  except ValueError as e:
    raise DataError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
  """The preprocessing options of a config (reference option names)."""
  preprocess: str = "resize_and_crop"
  load_size: int = 286
  crop_size: int = 256
  no_flip: bool = False
  stride: int = 4

  def __post_init__(self):
    if self.preprocess not in PREPROCESS_MODES:
      raise DataError(f"preprocess={self.preprocess!r}: expected one of {PREPROCESS_MODES}")
    if self.load_size < 1 or self.crop_size < 1:
      raise DataError(f"load_size={self.load_size} and crop_size={self.crop_size} must be >= 1")
    if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.load_size < self.crop_size:
      raise DataError(f"preprocess={self.preprocess!r} needs load_size >= crop_size, got "
                      f"load_size={self.load_size} < crop_size={self.crop_size}")

  def for_split(self, train: bool) -> "PreprocessOptions":
    """These options for training (unchanged) or for test time (load_size = crop_size, no flip)."""
    if train:
      return self
    return dataclasses.replace(self, load_size=self.crop_size, no_flip=True)

  @classmethod
  def from_config(cls, config: Any) -> "PreprocessOptions":
    """Read ``preprocess, load_size, crop_size, no_flip, netG`` from a ConfigDict."""
    mode = str(config.preprocess)
    try:
      stride = generator_stride(config.get("netG", "resnet_9blocks"))
    except DataError:
      if mode in ("none", "scale_width"):   # only these need the stride
        raise
      stride = 4
    return cls(preprocess=mode, load_size=int(config.load_size), crop_size=int(config.crop_size),
               no_flip=bool(config.no_flip), stride=stride)


@dataclasses.dataclass(frozen=True)
class Params:
  """Random choices for one example: resized size (w, h), crop corner (x, y) or None, flip."""
  size: tuple[int, int]
  crop_xy: tuple[int, int] | None
  flip: bool


def _round_to(v: int, base: int) -> int:
  return max(base, int(round(v / base) * base))


def target_size(width: int, height: int, opt: PreprocessOptions) -> tuple[int, int]:
  """The (w, h) an image of size (width, height) is resized to before cropping (reference rules)."""
  mode, load = opt.preprocess, opt.load_size
  if mode == "resize_and_crop":
    return load, load
  if mode.startswith("scale_width"):
    if width == load and height >= opt.crop_size:
      w, h = width, height
    else:
      w, h = load, int(max(load * height / width, opt.crop_size))
    if mode == "scale_width":   # no crop follows: make H, W valid for the generator
      w, h = _round_to(w, opt.stride), _round_to(h, opt.stride)
    return w, h
  if mode == "none":
    return _round_to(width, opt.stride), _round_to(height, opt.stride)
  return width, height   # crop


def draw_params(width: int, height: int, opt: PreprocessOptions, rng: np.random.Generator | None,
                *, train: bool, name: str = "image") -> Params:
  """Choose resize size, crop corner and flip for an image of (width, height).

  ``opt`` is used as given; ``train=False`` (or ``rng=None``) only makes the
  crop central and the flip off (for the reference's test-time sizes pass
  ``opt.for_split(False)``, as :func:`preprocess_images` does). Raises
  :class:`DataError` naming ``name`` when the image is smaller than crop_size
  and nothing resizes it up (``preprocess=crop``).
  """
  w, h = target_size(width, height, opt)
  crop_xy = None
  if "crop" in opt.preprocess:
    c = opt.crop_size
    if w < c or h < c:
      raise DataError(f"{name}: image is {width}x{height} (WxH), smaller than crop_size={c} with "
                      f"preprocess={opt.preprocess!r}; use preprocess='resize_and_crop' or a smaller crop_size")
    if train and rng is not None:
      x, y = int(rng.integers(0, w - c + 1)), int(rng.integers(0, h - c + 1))
    else:
      x, y = (w - c) // 2, (h - c) // 2
    crop_xy = (x, y)
  flip = bool(train and rng is not None and not opt.no_flip and rng.random() > 0.5)
  return Params(size=(w, h), crop_xy=crop_xy, flip=flip)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bicubic resize of HxWxC (uint8 via Pillow exactly as the reference; otherwise per channel in float)."""
  w, h = size
  if image.shape[1] == w and image.shape[0] == h:
    return image
  c = image.shape[-1]
  if image.dtype == np.uint8 and c in (1, 3, 4):
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    src = image[..., 0] if c == 1 else image
    out = np.asarray(Image.fromarray(np.ascontiguousarray(src), mode).resize((w, h), Image.BICUBIC))
    return out[..., None] if c == 1 else out
  planes = []
  for k in range(c):
    plane = Image.fromarray(np.ascontiguousarray(image[..., k], dtype=np.float32), "F")
    planes.append(np.asarray(plane.resize((w, h), Image.BICUBIC)))
  out = np.stack(planes, axis=-1)
  if image.dtype == np.uint8:
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
  if image.dtype == np.uint16:
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)
  return np.clip(out, 0.0, 1.0).astype(np.float32)


def apply_params(image: np.ndarray, params: Params, opt: PreprocessOptions, *, name: str = "image",
                 as_float: bool = True) -> np.ndarray:
  """Resize, crop and flip HxWxC with ``params``; returns float32 [-1, 1] HxWxC, or with
  ``as_float=False`` the pixels in ``image``'s own dtype (uint8 / uint16 / float32 in [0, 1]), possibly a
  strided view (cropped / flipped) of the resized image."""
  h0, w0 = image.shape[:2]
  out = resize(image, target_size(w0, h0, opt))   # each image by its own size, as the reference
  if params.crop_xy is not None:
    x, y = params.crop_xy
    c = opt.crop_size
    if out.shape[1] < x + c or out.shape[0] < y + c:
      raise DataError(f"{name}: image is {w0}x{h0} (WxH); after resizing to {out.shape[1]}x{out.shape[0]} it "
                      f"cannot be cropped at {params.crop_xy} to crop_size={c} (paired images of different sizes?)")
    out = out[y:y + c, x:x + c]
  if params.flip:
    out = out[:, ::-1]
  return to_model_range(np.ascontiguousarray(out)) if as_float else out   # a view: the batch's stack copies once


def preprocess_images(images: list[np.ndarray], opt: PreprocessOptions, rng: np.random.Generator | None,
                      *, train: bool, names: list[str] | None = None, as_float: bool = True) -> list[np.ndarray]:
  """Preprocess images that must stay aligned (same crop and flip), parameters drawn from the first.

  ``train=True``: random crop and flip from ``rng``; ``train=False``: the
  reference's test-time preprocessing (``opt.for_split(False)``: load_size =
  crop_size, centre crop where one remains, no flip). Returns float32 [-1, 1]
  HxWxC arrays (``as_float=False``: each image's pixels in its own dtype);
  raises :class:`DataError` when aligned images end with different spatial sizes.
  """
  opt = opt.for_split(train)
  names = names or [f"image {i}" for i in range(len(images))]
  h, w = images[0].shape[:2]
  params = draw_params(w, h, opt, rng, train=train, name=names[0])
  out = [apply_params(im, params, opt, name=n, as_float=as_float) for im, n in zip(images, names)]
  shapes = {o.shape[:2] for o in out}
  if len(shapes) > 1:
    raise DataError(f"{' / '.join(names)}: paired images end with different sizes "
                    f"{[o.shape[:2] for o in out]} after preprocess={opt.preprocess!r}; "
                    "paired A and B images must have the same size")
  return out
