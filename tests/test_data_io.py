"""Image decoding/encoding (formats, bit depths, channels, EXIF) and the reference preprocessing."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxgan.data import IMAGE_EXTENSIONS, DataError, load_image, read_image, save_image
from jaxgan.data.image_io import convert_channels, image_size, to_model_range
from jaxgan.data.preprocess import (PreprocessOptions, apply_params, draw_params, generator_stride,
                                    preprocess_images, resize, target_size)


def _png16(path, arr: np.ndarray, filters=(0,)) -> None:
  """Write a 16-bit PNG (HxWxC uint16, C in 1..4) applying PNG filter types in turn per row."""
  h, w, c = arr.shape
  ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
  bpp = 2 * c
  raw_rows = [np.frombuffer(arr[y].astype(">u2").tobytes(), np.uint8).astype(np.int32) for y in range(h)]
  out = b""
  for y, row in enumerate(raw_rows):
    ftype = filters[y % len(filters)]
    prev = raw_rows[y - 1] if y else np.zeros_like(row)
    left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
    if ftype == 0:
      f = row
    elif ftype == 1:
      f = row - left
    elif ftype == 2:
      f = row - prev
    elif ftype == 3:
      f = row - (left + prev) // 2
    else:
      p = left + prev - upleft
      pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
      pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
      f = row - pred
    out += bytes([ftype]) + (f % 256).astype(np.uint8).tobytes()

  def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
  data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b""))
  with open(path, "wb") as fh:
    fh.write(data)


def _noise(h, w, c=3, seed=0, dtype=np.uint8):
  hi = 256 if dtype == np.uint8 else 65536
  return np.random.default_rng(seed).integers(0, hi, (h, w, c)).astype(dtype)


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_8bit_formats_roundtrip_exactly(tmp_path, ext):
  img = _noise(9, 13)
  path = tmp_path / f"x{ext}"
  Image.fromarray(img).save(path, **({"lossless": True} if ext == ".webp" else {}))
  out = read_image(path)
  assert out.dtype == np.uint8 and out.shape == (9, 13, 3)
  np.testing.assert_array_equal(out, img)


def test_jpeg_decodes_close_to_source(tmp_path):
  img = np.tile(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))
  Image.fromarray(img).save(tmp_path / "x.jpeg", quality=95)
  out = read_image(tmp_path / "x.jpeg")
  assert out.shape == (16, 16, 3)
  assert np.abs(out.astype(int) - img).mean() < 4
  assert set(IMAGE_EXTENSIONS) >= {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_grayscale_values(tmp_path, ext):
  img = np.array([[0, 1, 257, 40000], [65535, 12345, 2, 3]], np.uint16)
  Image.fromarray(img).save(tmp_path / f"g{ext}")
  out = read_image(tmp_path / f"g{ext}")
  assert out.dtype == np.uint16 and out.shape == (2, 4, 1)
  np.testing.assert_array_equal(out[..., 0], img)
  as_float = load_image(tmp_path / f"g{ext}", channels=1)
  np.testing.assert_allclose(as_float[..., 0], img / 65535.0 * 2 - 1, atol=1e-6)
  rgb = load_image(tmp_path / f"g{ext}", channels=3)
  np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_every_colour_type_and_filter(tmp_path, channels):
  """Pillow truncates 16-bit colour PNGs; our decoder keeps all 16 bits for every PNG filter type."""
  img = _noise(7, 5, channels, seed=channels, dtype=np.uint16)
  _png16(tmp_path / "c.png", img, filters=(0, 1, 2, 3, 4))
  out = read_image(tmp_path / "c.png")
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, img)


def test_grayscale_and_channel_conversions(tmp_path):
  rgb = _noise(6, 6, seed=3)
  Image.fromarray(rgb).save(tmp_path / "rgb.png")
  gray = load_image(tmp_path / "rgb.png", channels=1)
  want = np.asarray(Image.fromarray(rgb).convert("L"), np.float32) / 255 * 2 - 1   # the reference's Grayscale
  np.testing.assert_allclose(gray[..., 0], want, atol=1e-6)
  g8 = _noise(6, 6, 1, seed=4)[..., 0]
  Image.fromarray(g8, "L").save(tmp_path / "g.png")
  rep = load_image(tmp_path / "g.png", channels=3)
  for c in range(3):
    np.testing.assert_allclose(rep[..., c], g8 / 255 * 2 - 1, atol=1e-6)
  rgba = _noise(6, 6, 4, seed=5)
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  no_alpha = load_image(tmp_path / "a.png", channels=3)
  np.testing.assert_allclose(no_alpha, rgba[..., :3] / 255 * 2 - 1, atol=1e-6)
  np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba)
  multi = _noise(4, 4, 6)
  assert convert_channels(multi, 6) is multi
  with pytest.raises(DataError, match="cannot convert 6 channels to 3"):
    convert_channels(multi, 3, name="sat.tif")


def test_palette_image_with_transparency(tmp_path):
  pal = Image.new("P", (4, 4))
  pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
  pal.putpixel((1, 1), 1)
  pal.info["transparency"] = 0
  pal.save(tmp_path / "p.png", transparency=0)
  out = read_image(tmp_path / "p.png")
  assert out.shape == (4, 4, 4)
  np.testing.assert_array_equal(out[1, 1], [0, 255, 0, 255])
  np.testing.assert_array_equal(out[0, 0, :3], [255, 0, 0])
  assert out[0, 0, 3] == 0


def test_exif_orientation_is_honoured(tmp_path):
  img = np.zeros((4, 8, 3), np.uint8)
  img[0, 0] = 255                       # top-left marker of the stored pixels
  pil = Image.fromarray(img)
  exif = pil.getexif()
  exif[0x0112] = 6                      # "rotate 90 CW to display"
  pil.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
  out = read_image(tmp_path / "r.jpg")
  assert out.shape == (8, 4, 3)         # displayed upright: width and height swap
  assert out[0, -1].mean() > 128        # the marker moves to the top-right corner
  assert out[0, 0].mean() < 64
  assert image_size(tmp_path / "r.jpg") == (4, 8)   # the header-only size agrees: (w, h) as displayed
  pil.save(tmp_path / "r.png")
  assert image_size(tmp_path / "r.png") == (8, 4)
  (tmp_path / "bad.png").write_bytes(b"not an image")
  with pytest.raises(DataError, match="size of image file .*bad.png"):
    image_size(tmp_path / "bad.png")


def test_undecodable_and_missing_files_name_the_path(tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"this is not a png")
  with pytest.raises(DataError, match="cannot decode image file .*bad.png"):
    read_image(bad)
  truncated = tmp_path / "trunc.png"
  Image.fromarray(_noise(32, 32)).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:60])
  with pytest.raises(DataError, match="trunc.png"):
    read_image(truncated)
  with pytest.raises(DataError, match="does not exist"):
    read_image(tmp_path / "nope.png")


def test_save_image_roundtrip_and_errors(tmp_path):
  x = np.linspace(-1, 1, 5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
  save_image(tmp_path / "sub" / "x.png", x)
  back = load_image(tmp_path / "sub" / "x.png", channels=3)
  np.testing.assert_allclose(back, x, atol=1 / 255 + 1e-6)
  save_image(tmp_path / "g.png", x[..., :1])
  assert read_image(tmp_path / "g.png").shape == (5, 7, 1)
  with pytest.raises(DataError, match="shape"):
    save_image(tmp_path / "y.png", np.zeros((5, 7, 2)))
  with pytest.raises(DataError, match="NaN"):
    save_image(tmp_path / "z.png", np.full((2, 2, 3), np.nan))


# ----------------------------------------------------------------------------- preprocessing


def _opt(mode, load=40, crop=32, no_flip=False, stride=4):
  return PreprocessOptions(preprocess=mode, load_size=load, crop_size=crop, no_flip=no_flip, stride=stride)


@pytest.mark.parametrize("mode,size,want", [
    ("resize_and_crop", (50, 30), (32, 32)),
    ("crop", (50, 37), (32, 32)),
    ("scale_width", (80, 50), (40, 32)),          # h = max(40*50/80, crop) = 32
    ("scale_width", (80, 100), (40, 48)),         # h = 50 -> round(12.5) * 4 = 48 (round half to even)
    ("scale_width_and_crop", (80, 100), (32, 32)),
    ("none", (37, 50), (36, 48)),                 # round(37/4)*4, round(12.5)*4 as the reference's round
])
def test_preprocess_mode_shapes_and_range(mode, size, want):
  img = np.zeros((size[1], size[0], 3), np.uint8)
  img[:, size[0] // 2:] = 255                       # black | white halves survive any resize and crop
  out, = preprocess_images([img], _opt(mode), np.random.default_rng(0), train=True)
  assert out.dtype == np.float32 and out.shape == (want[1], want[0], 3)
  assert out.min() >= -1 and out.max() <= 1 and out.min() < -0.9 and out.max() > 0.9


def test_none_rounds_to_the_generator_stride():
  assert generator_stride("resnet_9blocks") == 4 and generator_stride("unet_256") == 256
  assert generator_stride("unet_32") == 32
  out, = preprocess_images([_noise(50, 70)], _opt("none", stride=32), None, train=False)
  assert out.shape == (64, 64, 3)
  with pytest.raises(DataError, match="netG"):
    generator_stride("vgg")


def test_preprocess_is_deterministic_for_a_seed_and_varies_across_seeds():
  img = _noise(30, 50)
  opt = _opt("resize_and_crop")
  run = lambda s: preprocess_images([img], opt, np.random.default_rng(s), train=True)[0]
  np.testing.assert_array_equal(run(7), run(7))
  assert any(not np.array_equal(run(0), run(s)) for s in range(1, 6))


def test_flip_and_crop_statistics_and_eval_centre_crop():
  opt = _opt("crop", crop=8)
  params = [draw_params(20, 12, opt, np.random.default_rng(s), train=True) for s in range(60)]
  flips = [p.flip for p in params]
  assert 10 < sum(flips) < 50
  assert len({p.crop_xy for p in params}) > 10
  assert all(0 <= x <= 12 and 0 <= y <= 4 for x, y in (p.crop_xy for p in params))
  assert not any(draw_params(20, 12, _opt("crop", crop=8, no_flip=True), np.random.default_rng(s), train=True).flip
                 for s in range(30))
  ev = draw_params(20, 12, opt, np.random.default_rng(0), train=False)
  assert ev.crop_xy == (6, 2) and not ev.flip
  img = _noise(12, 20)
  np.testing.assert_array_equal(apply_params(img, ev, opt), to_model_range(img[2:10, 6:14]))


def test_paired_images_get_the_same_crop_and_flip():
  """B is a known function of A (channels reversed); it must stay so after random crop + flip."""
  opt = _opt("resize_and_crop", load=24, crop=16)
  for seed in range(8):
    a = _noise(20, 28, seed=seed)
    b = a[..., ::-1]
    out_a, out_b = preprocess_images([a, b], opt, np.random.default_rng(seed), train=True)
    np.testing.assert_array_equal(out_b, out_a[..., ::-1])


def test_crop_smaller_than_crop_size_is_an_error():
  with pytest.raises(DataError, match=r"photo_7.png: image is 20x12 .*smaller than crop_size=16"):
    preprocess_images([_noise(12, 20)], _opt("crop", crop=16), None, train=False, names=["photo_7.png"])
  with pytest.raises(DataError, match="load_size >= crop_size"):
    _opt("resize_and_crop", load=16, crop=32)
  with pytest.raises(DataError, match="preprocess='zoom'"):
    _opt("zoom")


def test_resize_matches_pillow_bicubic_and_16bit_agrees_with_8bit():
  img8 = _noise(17, 23)
  out8 = resize(img8, (31, 29))
  np.testing.assert_array_equal(out8, np.asarray(Image.fromarray(img8).resize((31, 29), Image.BICUBIC)))
  yy, xx = np.mgrid[0:17, 0:23]
  smooth = np.stack([(127 + 120 * np.sin(xx / 4.0 + c) * np.cos(yy / 5.0)) for c in range(3)], -1).astype(np.uint8)
  out16 = resize(smooth.astype(np.uint16) * 257, (31, 29))   # the float path (16-bit) ...
  assert out16.dtype == np.uint16
  np.testing.assert_allclose(out16 / 65535.0, resize(smooth, (31, 29)) / 255.0, atol=1.5 / 255)  # ... agrees
  assert target_size(50, 30, _opt("resize_and_crop")) == (40, 40)


def _pil_resize(img: np.ndarray, size) -> np.ndarray:
  return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


@pytest.mark.parametrize("mode,size,resized,box", [
    # The reference's test options set load_size = crop_size (32 here, whatever the train load_size 40):
    ("resize_and_crop", (50, 30), (32, 32), None),             # resized whole, no crop
    ("scale_width_and_crop", (80, 100), (32, 40), (0, 4)),     # width -> 32, h = 40, centre 32x32
    ("scale_width", (80, 100), (32, 40), None),                # width -> 32, h = max(32*100/80, 32)
    ("scale_width", (80, 50), (32, 32), None),                 # h = max(20, 32)
    ("crop", (50, 37), None, (9, 2)),                          # no resize; centre crop
    ("none", (37, 50), (36, 48), None),                        # rounded to the stride only
])
def test_test_time_preprocessing_is_the_references(mode, size, resized, box):
  """Non-train images: load_size := crop_size, no random crop, never a flip (even with no_flip=False)."""
  img = _noise(size[1], size[0], seed=3)
  want = _pil_resize(img, resized) if resized else img
  if box:
    x, y = box
    want = want[y:y + 32, x:x + 32]
  for seed in range(4):                                      # any rng: no flip, no random crop
    out, = preprocess_images([img], _opt(mode), np.random.default_rng(seed), train=False)
    np.testing.assert_array_equal(out, to_model_range(np.ascontiguousarray(want)))
  # Training keeps load_size: resize_and_crop resizes to 40 and crops 32.
  if mode == "resize_and_crop":
    out, = preprocess_images([img], _opt(mode, no_flip=True), np.random.default_rng(0), train=True)
    big = to_model_range(_pil_resize(img, (40, 40)))
    assert any(np.array_equal(out, big[y:y + 32, x:x + 32]) for y in range(9) for x in range(9))
