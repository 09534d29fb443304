"""Image sizes of a split, read cheaply, and the check that a run needing one image shape gets it.

Owns: :func:`check_one_size`, called by the pipeline before training when the
preprocessing keeps each image's own size or aspect ratio (``scale_width``,
``none``) and the run needs every training image to come out the same size:
CycleGAN (its image pools hold images of one fixed shape, and every new size
would compile the train step again) and any batch of more than one image
(images of one batch are stacked).

Sizes come from the sources' optional ``image_size(index) -> (w, h) | None``
(domains) / ``image_sizes(index) -> ((wa, ha), (wb, hb)) | None`` (pairs):
folders read file headers (no decoding: 70-80 us a file on the shared 2-core
development machine, see ``scripts/benchmark_data.py --scan``), the demo
data know their size. A source without them (TFDS) is checked on its first
:data:`SAMPLE` images, decoded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxgan import objectives
from jaxgan.data.image_io import DataError
from jaxgan.data.preprocess import PreprocessOptions, target_size

if TYPE_CHECKING:
  from jaxgan.data.sources import SplitData

SIZE_KEEPING_MODES = ("scale_width", "none")   # the output size depends on each input's size
SAMPLE = 32                                    # images decoded per domain when a source has no cheap size


def _size(domain: Any, index: int) -> tuple[int, int] | None:
  lookup = getattr(domain, "image_size", None)
  return lookup(index) if lookup is not None else None


def _domain_sizes(domain: Any):
  """Yield (index, (w, h)) for every image (cheap sizes; None = skipped bad file) or the first SAMPLE (decoded)."""
  n = len(domain)
  if n and _size(domain, 0) is not None:
    for i in range(n):
      size = _size(domain, i)
      if size is not None:
        yield i, size
  else:
    for i in range(min(n, SAMPLE)):
      image = domain.load(i)
      yield i, (int(image.shape[1]), int(image.shape[0]))


def needs_one_size(config: Any, opt: PreprocessOptions, local_batch_size: int) -> str:
  """Why this training run needs one output size ('' when it does not)."""
  if opt.preprocess not in SIZE_KEEPING_MODES:
    return ""
  why = objectives.for_config(config).ONE_IMAGE_SIZE
  if why:
    return why
  if local_batch_size > 1:
    return f"a batch stacks {local_batch_size} images, which must have one size"
  return ""


def check_one_size(data: "SplitData", opt: PreprocessOptions, *, why: str, label: str = "") -> None:
  """Raise :class:`DataError` when a domain's images come out of ``opt`` (training) in more than one size.

  ``why`` says what needs one size (it goes into the message). Each domain
  (A, B) is checked on its own: A and B may differ from each other.
  """
  for side, domain in (("A", data.domain_a), ("B", data.domain_b)):
    first = None
    for i, (w, h) in _domain_sizes(domain):
      out = target_size(w, h, opt)
      if first is None:
        first = (i, (w, h), out)
        continue
      if out != first[2]:
        i0, (w0, h0), out0 = first
        raise DataError(
            f"{label or data.description}: preprocess={opt.preprocess!r} keeps each image's "
            f"{'aspect ratio' if opt.preprocess == 'scale_width' else 'size'}, so domain {side}'s images come out "
            f"in different sizes: {domain.name(i0)} ({w0}x{h0}, WxH) becomes {out0[0]}x{out0[1]} but "
            f"{domain.name(i)} ({w}x{h}) becomes {out[0]}x{out[1]}; {why}. Use preprocess='scale_width_and_crop' "
            f"(keeps the aspect ratio, then crops crop_size={opt.crop_size} squares), 'resize_and_crop' or 'crop', "
            "or resize the images to one size beforehand")
