"""Bounded decoding and safe folder walks (issue 27).

Decompression bombs of every bit depth are refused by name from the header,
before any decoding, by every reader and by `jaxgan translate` (one line,
exit 1); symlinked folders are followed once by real path, so loops neither
repeat examples nor hang.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_cyclegan_config, tiny_pix2pix_config
from jaxgan import cli, inference
from jaxgan.data import folder

ROOT = Path(__file__).resolve().parents[1]
GIB = 1 << 30


def _chunk(kind: bytes, body: bytes) -> bytes:
  return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png(path: Path, width: int, height: int, depth: int, colour: int, rows: int | None = None) -> Path:
  """A valid all-black PNG whose header says ``width`` x ``height``, written without holding its pixels.

  The zlib stream is one compressed row repeated (full flushes make every
  row's bytes identical), so a 20000 x 20000 16-bit RGB file is ~2.7 MB.
  ``rows`` (default ``height``) is the number of rows actually stored.
  """
  channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
  row = bytes(1 + width * channels * depth // 8)
  c = zlib.compressobj(9)
  first = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)
  again = c.compress(row) + c.flush(zlib.Z_FULL_FLUSH)
  rows = height if rows is None else rows
  n = len(row) * rows   # adler32 of n zero bytes: a = 1, b = n mod 65521
  stream = first + again * (rows - 1) + b"\x03\x00" + struct.pack(">I", ((n % 65521) << 16) | 1)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
                   + _chunk(b"IDAT", stream) + _chunk(b"IEND", b""))
  return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
  d = tmp_path_factory.mktemp("bombs")
  return {"png16_rgb": write_png(d / "rgb16.png", 20000, 20000, 16, 2),
          "png16_gray": write_png(d / "gray16.png", 20000, 20000, 16, 0),
          "png8_rgb": write_png(d / "rgb8.png", 20000, 20000, 8, 2)}


_READER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))   # the whole process stays under 2 GB
from jaxgan import fid_io
from jaxgan.data import folder, image_io
readers = {"read_image": image_io.read_image, "load_image": lambda p: image_io.load_image(p, 3),
           "fid_read_rgb": fid_io.read_rgb, "folder_domain": lambda p: folder.FileDomain([p]).load(0)}
out = {"refused": []}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[2:]:
  for name, read in readers.items():
    try:
      read(path)
      out["refused"].append([name, path, None])
    except image_io.DataError as e:
      out["refused"].append([name, path, str(e)])
small = image_io.read_image(sys.argv[1])   # a 16-bit PNG whose data holds far more rows than its header says
out["small"] = [list(small.shape), str(small.dtype)]
out["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(out))
"""


def test_bombs_of_every_depth_are_refused_by_name_under_2gb(bombs, tmp_path):
  assert bombs["png16_rgb"].stat().st_size < 3_000_000
  head = bombs["png16_rgb"].read_bytes()[:29]
  assert struct.unpack(">IIBB", head[16:26]) == (20000, 20000, 16, 2)   # decoded: 20000*20000*6 B = 2.4 GB
  long_data = write_png(tmp_path / "lies.png", 30, 20, 16, 2, rows=20000)   # header 30x20, ~72 MB of rows inside
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
  proc = subprocess.run([sys.executable, "-c", _READER, str(long_data), *map(str, bombs.values())],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]     # a MemoryError under the 2 GB limit fails here
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert len(out["refused"]) == 4 * len(bombs)
  for reader, path, message in out["refused"]:
    assert message is not None, f"{reader} decoded {path}"
    assert path in message and "decod" in message, message
  assert out["small"] == [[20, 30, 3], "uint16"]
  assert out["growth_mb"] < 500, out


@pytest.mark.parametrize("kind", ["png16_rgb", "png8_rgb"])
def test_translate_refuses_a_bomb_in_one_line(bombs, kind, tmp_path, capsys, monkeypatch):
  # The checkpoint plays no part: the stand-in lets the command reach the inputs without a trained run.
  monkeypatch.setattr(inference, "load_for_inference", lambda workdir, step=None: (None, tiny_pix2pix_config(), 0))
  inputs = tmp_path / "in"
  inputs.mkdir()
  bomb = inputs / bombs[kind].name
  bomb.symlink_to(bombs[kind])
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(inputs / "ok.png")
  out = tmp_path / "out"
  for given in (bomb, inputs):
    assert cli.main(["translate", "--workdir", str(tmp_path / "run"), "--input", str(given), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("jaxgan translate: error:")]
    assert len(errors) == 1 and str(bomb) in errors[0] and "decod" in errors[0], err
    assert not out.exists() or not list(out.iterdir())


def _image(path: Path, value: int) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _listed(root: Path, split_dir: str) -> list[str]:
  def alarm(*_):
    raise TimeoutError("listing the folder did not finish in 20 s (a symlink loop followed?)")
  previous = signal.signal(signal.SIGALRM, alarm)
  signal.alarm(20)
  try:
    data = folder.open_folder(str(root), "train", tiny_cyclegan_config())
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  domain = data.domain_a if split_dir == "trainA" else data.domain_b
  return [os.path.relpath(domain.name(i), root) for i in range(len(domain))]


def _dataset(root: Path) -> list[str]:
  names = ["0.png", "1.png", "sub/2.png"]
  for i, name in enumerate(names):
    _image(root / "trainA" / name, i)
    _image(root / "trainB" / name, 100 + i)
  return [f"trainA/{n}" for n in names]


def test_one_symlink_loop_lists_each_image_once(tmp_path):
  real = _dataset(tmp_path)
  (tmp_path / "trainA" / "sub" / "up").symlink_to("..")          # back to trainA
  assert _listed(tmp_path, "trainA") == real


def test_two_symlink_loops_in_one_folder_neither_hang_nor_repeat(tmp_path):
  real = _dataset(tmp_path)
  (tmp_path / "trainA" / "self").symlink_to(".")
  (tmp_path / "trainA" / "root").symlink_to("..")                 # the dataset root, which holds trainA
  (tmp_path / "trainA" / "sub" / "again").symlink_to("../self")
  assert _listed(tmp_path, "trainA") == real
  assert _listed(tmp_path, "trainB") == [r.replace("trainA", "trainB") for r in real]


def test_symlinked_folders_are_followed_once_by_real_path(tmp_path):
  data = tmp_path / "data"
  real = _dataset(data)
  _image(tmp_path / "extra" / "x.png", 50)
  (data / "trainA" / "more").symlink_to(tmp_path / "extra")       # a user's symlinked folder: followed
  (data / "trainA" / "more_again").symlink_to(tmp_path / "extra")  # the same folder twice: listed once
  (data / "trainA" / "alias.png").symlink_to("0.png")             # a second name of a listed file
  assert _listed(data, "trainA") == sorted(real + ["trainA/more/x.png"])
  linked = tmp_path / "linked"                                    # the whole dataset folder through a symlink
  linked.symlink_to(data)
  assert _listed(linked, "trainB") == [r.replace("trainA", "trainB") for r in real]
