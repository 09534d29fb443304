"""Image file decoding/encoding and channel conversion (no randomness, no pipeline).

Owns: the list of readable extensions, decoding a file to a numpy array in its
own bit depth (``uint8`` / ``uint16`` / ``float32`` HxWxC, EXIF orientation
applied), reading an image's size from its header (:func:`image_size`),
converting channel counts the way the reference does (PIL's luma for RGB ->
gray, alpha dropped for RGBA -> RGB, gray replicated for gray -> RGB), mapping
source pixels to the library's [-1, 1] (:func:`to_model_range`), and the
public helpers :func:`load_image` / :func:`save_image`.

Pillow reads 8-bit images of every listed format and 16-bit grayscale; it
truncates 16-bit *colour* PNGs to 8 bits, so those are decoded here by a small
PNG reader (:func:`_read_png16`).

Decoding is bounded: every file's width x height is read from its header and
checked against :func:`max_image_pixels` (twice ``PIL.Image.MAX_IMAGE_PIXELS``,
where Pillow refuses a decompression bomb) *before* any pixel is decoded, by
whichever decoder, with a :class:`DataError` naming the file; the 16-bit PNG
reader also never inflates more bytes than its header announces.
"""
from __future__ import annotations

import os
import struct
import zlib
from typing import Union

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

PathLike = Union[str, os.PathLike]


class DataError(ValueError):
  """Bad input data or data options; the message names the path/option at fault."""


def is_image_file(path: PathLike) -> bool:
  """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
  return os.path.splitext(str(path))[1].lower() in IMAGE_EXTENSIONS


def max_value(dtype: np.dtype) -> float:
  """The value that means 'white' for images of this dtype (255, 65535 or 1.0)."""
  dtype = np.dtype(dtype)
  if dtype == np.uint8:
    return 255.0
  if dtype == np.uint16:
    return 65535.0
  return 1.0


# ----------------------------------------------------------------------------- decoding


def _pil_to_array(img: Image.Image) -> np.ndarray:
  """A decoded PIL image as HxWxC uint8 / uint16 / float32, channels in the file's own order."""
  mode = img.mode
  if mode in ("L", "RGB", "RGBA", "LA"):
    arr = np.asarray(img)
  elif mode == "1":
    arr = np.asarray(img.convert("L"))
  elif mode == "P":
    has_alpha = "transparency" in img.info
    arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
  elif mode == "PA":
    arr = np.asarray(img.convert("RGBA"))
  elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
    arr = np.asarray(img.convert("RGB"))
  elif mode == "RGBa":
    arr = np.asarray(img.convert("RGBA"))
  elif mode == "La":
    arr = np.asarray(img.convert("LA"))
  elif mode.startswith("I;16"):
    arr = np.asarray(img).astype(np.uint16)
  elif mode == "I":
    arr = np.asarray(img)
    if arr.min() < 0 or arr.max() > 65535:
      raise DataError(f"32-bit integer image with values in [{arr.min()}, {arr.max()}]: only 8-bit, "
                      "16-bit and float images in [0, 1] are supported")
    arr = arr.astype(np.uint16)
  elif mode == "F":
    arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
  else:
    arr = np.asarray(img.convert("RGB"))
  if arr.ndim == 2:
    arr = arr[:, :, None]
  return np.ascontiguousarray(arr)


def max_image_pixels() -> int | None:
  """The most pixels (width x height) a file may have to be decoded; None when Pillow's limit is off.

  Twice ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million by default), the size
  at which Pillow itself refuses a file as a decompression bomb, for every
  format and bit depth; set ``PIL.Image.MAX_IMAGE_PIXELS = None`` to lift it.
  """
  limit = Image.MAX_IMAGE_PIXELS
  return None if limit is None else 2 * int(limit)


def _check_pixels(width: int, height: int, path: str) -> None:
  """Raise :class:`DataError` naming ``path`` when width x height is over :func:`max_image_pixels`."""
  limit = max_image_pixels()
  if limit is not None and int(width) * int(height) > limit:
    raise DataError(f"image file {path!r} is {width}x{height} = {int(width) * int(height):,} pixels, over the "
                    f"decoding limit of {limit:,} (2 x PIL.Image.MAX_IMAGE_PIXELS); refused before decoding "
                    "(a decompression bomb?)")


def check_image_header(path: PathLike) -> tuple[int, int]:
  """(width, height) of an image file from its header (no decoding, no EXIF rotation), within the pixel limit.

  Raises :class:`DataError` naming ``path`` when the file is not a readable
  image or is over :func:`max_image_pixels` (a decompression bomb).
  """
  path = os.fspath(path)
  try:
    with Image.open(path) as img:
      w, h = img.size
  except Image.DecompressionBombError as e:
    raise DataError(f"image file {path!r} refused before decoding: {str(e).rstrip('.')}") from e
  except (OSError, SyntaxError, ValueError, struct.error) as e:
    raise DataError(f"cannot decode image file {path!r}: {type(e).__name__}: {e}") from e
  _check_pixels(w, h, path)
  return int(w), int(h)


_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png_header(path: PathLike) -> tuple[int, int] | None:
  """(bit_depth, colour_type) of a PNG file, or None when it is not a PNG."""
  with open(path, "rb") as f:
    head = f.read(33)
  if len(head) < 33 or head[:8] != _PNG_SIG or head[12:16] != b"IHDR":
    return None
  return head[24], head[25]


def _unfilter_rows(raw: bytes, height: int, row_bytes: int, bpp: int) -> np.ndarray:
  """Undo PNG per-row filters (types 0-4) of non-interlaced data; returns uint8 [height, row_bytes]."""
  data = np.frombuffer(raw, np.uint8)
  if data.size < height * (row_bytes + 1):
    raise DataError("truncated PNG image data")
  data = data[: height * (row_bytes + 1)].reshape(height, row_bytes + 1)
  out = np.zeros((height, row_bytes), np.uint8)
  prev = np.zeros(row_bytes, np.uint8)
  for y in range(height):
    ftype, line = data[y, 0], data[y, 1:]
    if ftype == 0:
      cur = line.copy()
    elif ftype == 1:   # Sub: cumulative sum per byte lane, modulo 256
      lanes = line.reshape(-1, bpp).astype(np.uint64)
      cur = (np.cumsum(lanes, axis=0) % 256).astype(np.uint8).reshape(-1)
    elif ftype == 2:   # Up
      cur = (line.astype(np.uint16) + prev).astype(np.uint8)
    elif ftype in (3, 4):  # Average / Paeth: sequential along the row
      cur = bytearray(line.tobytes())
      up = prev.tobytes()
      for i in range(row_bytes):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if ftype == 3:
          cur[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
        else:
          c = up[i - bpp] if i >= bpp else 0
          p = a + b - c
          pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
          pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
          cur[i] = (cur[i] + pred) & 0xFF
      cur = np.frombuffer(bytes(cur), np.uint8)
    else:
      raise DataError(f"bad PNG filter type {ftype}")
    out[y] = cur
    prev = out[y]
  return out


def _read_png16(path: PathLike) -> np.ndarray:
  """Decode a non-interlaced 16-bit PNG (gray, gray+alpha, RGB, RGBA) to uint16 HxWxC."""
  with open(path, "rb") as f:
    blob = f.read()
  pos, idat, hdr = 8, [], None
  while pos + 8 <= len(blob):
    length, ctype = struct.unpack(">I4s", blob[pos:pos + 8])
    body = blob[pos + 8:pos + 8 + length]
    if ctype == b"IHDR":
      hdr = struct.unpack(">IIBBBBB", body)
    elif ctype == b"IDAT":
      idat.append(body)
    elif ctype == b"IEND":
      break
    pos += 12 + length
  if hdr is None or not idat:
    raise DataError("PNG without IHDR/IDAT chunks")
  width, height, depth, ctype, _, _, interlace = hdr
  channels = {0: 1, 4: 2, 2: 3, 6: 4}.get(ctype)
  if depth != 16 or channels is None:
    raise DataError(f"unsupported PNG bit depth {depth} / colour type {ctype}")
  if interlace:
    raise DataError("interlaced 16-bit colour PNGs are not supported; save it non-interlaced")
  _check_pixels(width, height, os.fspath(path))
  bpp = 2 * channels
  expected = height * (width * bpp + 1)
  try:   # inflate at most what the header announces: extra data cannot grow the buffer
    raw = zlib.decompressobj().decompress(b"".join(idat), expected)
  except zlib.error as e:
    raise DataError(f"corrupt PNG data: {e}") from e
  rows = _unfilter_rows(raw, height, width * bpp, bpp)
  return rows.view(">u2").reshape(height, width, channels).astype(np.uint16)


_ROTATING_ORIENTATIONS = (5, 6, 7, 8)   # EXIF orientations that swap width and height


def image_size(path: PathLike) -> tuple[int, int]:
  """(width, height) of an image file as :func:`read_image` returns it, from the header only (no decoding).

  The EXIF orientation is applied when the header holds it (JPEG, TIFF, WebP,
  and PNGs whose eXIf chunk precedes the image data). Raises
  :class:`DataError` naming ``path`` when it is not a readable image.
  """
  path = os.fspath(path)
  try:
    with Image.open(path) as img:
      w, h = img.size
      if "exif" in img.info or img.format == "TIFF":
        if img.getexif().get(0x0112) in _ROTATING_ORIENTATIONS:
          w, h = h, w
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise DataError(f"cannot read the size of image file {path!r}: {e}") from e
  return int(w), int(h)


def read_image(path: PathLike) -> np.ndarray:
  """Decode an image file to HxWxC in its own bit depth: uint8, uint16 or float32 in [0, 1].

  EXIF orientation is applied; palette images become RGB(A). Raises
  :class:`DataError` naming ``path`` when the file is missing, cannot be
  decoded, or its header gives more pixels than :func:`max_image_pixels`
  (checked before anything is decoded).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"image file {path!r} does not exist")
  check_image_header(path)   # the pixel limit, from the header, for every format and bit depth
  try:
    header = _png_header(path)
    if header is not None and header[0] == 16 and header[1] in (2, 4, 6):
      return _read_png16(path)   # Pillow would truncate these to 8 bits
    with Image.open(path) as img:
      img.load()
      img = ImageOps.exif_transpose(img) or img
      return _pil_to_array(img)
  except DataError as e:
    raise DataError(f"cannot decode image file {path!r}: {e}") from e
  except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError) as e:
    raise DataError(f"cannot decode image file {path!r}: {type(e).__name__}: {e}") from e


# ----------------------------------------------------------------------------- channels


def _luma(rgb: np.ndarray) -> np.ndarray:
  """ITU-R 601-2 luma of HxWx3 (PIL's ``convert('L')`` for uint8), same dtype, HxWx1."""
  if rgb.dtype == np.uint8:
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"))[:, :, None]
  r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
  y = r * 0.299 + g * 0.587 + b * 0.114
  if rgb.dtype == np.uint16:
    return np.clip(np.rint(y), 0, 65535).astype(np.uint16)[:, :, None]
  return y.astype(rgb.dtype)[:, :, None]


def convert_channels(image: np.ndarray, channels: int, *, name: str = "image") -> np.ndarray:
  """Convert HxWxC to ``channels`` channels as the reference does (same dtype).

  1 <- RGB(A): luma; 3 <- gray: replicated; 3 <- RGBA: alpha dropped;
  4 <- RGB/gray: opaque alpha added; 2 (gray+alpha) likewise. Equal counts pass
  through (any number, e.g. multispectral). Anything else raises naming ``name``.
  """
  c = image.shape[-1]
  if c == channels:
    return image
  opaque = np.full(image.shape[:2] + (1,), max_value(image.dtype), image.dtype)
  gray = {1: image, 2: image[..., :1], 3: None, 4: None}.get(c)
  rgb = {1: None, 2: None, 3: image, 4: image[..., :3]}.get(c)
  alpha = {2: image[..., 1:2], 4: image[..., 3:4]}.get(c, opaque)
  if c not in (1, 2, 3, 4) or channels not in (1, 2, 3, 4):
    raise DataError(f"{name}: cannot convert {c} channels to {channels} (only equal counts, "
                    "or conversions among 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA) channels)")
  if channels in (1, 2):
    g = gray if gray is not None else _luma(rgb)
    return g if channels == 1 else np.concatenate([g, alpha], axis=-1)
  col = rgb if rgb is not None else np.repeat(gray, 3, axis=-1)
  return col if channels == 3 else np.concatenate([col, alpha], axis=-1)


def to_model_range(image: np.ndarray) -> np.ndarray:
  """Source pixels -> the library's range: uint8/uint16/float [0,1] HxWxC -> float32 in [-1, 1].

  The reference's ToTensor + Normalize(0.5, 0.5). (Not :func:`jaxgan.metrics.to_unit_range`,
  which maps model outputs [-1, 1] back to [0, 1] for the metrics.)
  """
  x = image.astype(np.float32) / np.float32(max_value(image.dtype))
  return (x - np.float32(0.5)) / np.float32(0.5)


# ----------------------------------------------------------------------------- public helpers


def load_image(path: PathLike, channels: int) -> np.ndarray:
  """Read an image file as float32 HxWx``channels`` in [-1, 1] (EXIF orientation honoured)."""
  image = read_image(path)
  return to_model_range(convert_channels(image, int(channels), name=os.fspath(path)))


def save_image(path: PathLike, array) -> None:
  """Write HxWxC (C in 1, 3, 4) or HxW values in [-1, 1] as an 8-bit image (format from the extension).

  Values are clipped to [-1, 1] and rounded; the parent folder is created.
  """
  arr = np.asarray(array, dtype=np.float32)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
    raise DataError(f"save_image({os.fspath(path)!r}): expected HxW or HxWxC with C in 1, 3, 4; got shape {arr.shape}")
  if not np.all(np.isfinite(arr)):
    raise DataError(f"save_image({os.fspath(path)!r}): array contains NaN or inf")
  if not is_image_file(path):
    raise DataError(f"save_image({os.fspath(path)!r}): extension must be one of {IMAGE_EXTENSIONS}")
  u8 = np.rint((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
  folder = os.path.dirname(os.fspath(path))
  if folder:
    os.makedirs(folder, exist_ok=True)
  img = Image.fromarray(u8)
  if img.mode == "RGBA" and os.path.splitext(os.fspath(path))[1].lower() in (".jpg", ".jpeg", ".bmp"):
    img = img.convert("RGB")
  img.save(os.fspath(path))
