"""``jaxgan fid`` end to end, and where the FID weights come from (jaxgan.fid_io).

No test downloads anything: the download is served by a local HTTP server on
127.0.0.1, and every test points the weights URL at a closed local port unless it
serves one itself. The weights are pytorch-fid's model with random weights
(``tests/fid_reference.py``). A Frechet distance of 2048-d statistics (scipy's
``sqrtm`` of a 2048 x 2048 matrix) takes a minute or more on this CPU, so the
folder-to-folder runs record what the command passes to ``frechet_distance``
(its numerics are tested in ``tests/test_fid.py``); ``.npz`` inputs of 16-d
statistics run it for real.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxgan import cli, fid, fid_io

NAME = fid.FID_WEIGHTS_FILENAME


def _closed_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
  monkeypatch.setattr(fid_io, "WEIGHTS_URL", f"http://127.0.0.1:{_closed_port()}/{NAME}")
  monkeypatch.setenv(fid_io.ENV_CACHE_DIR, str(tmp_path / "cache"))
  monkeypatch.delenv(fid_io.ENV_WEIGHTS, raising=False)
  monkeypatch.setenv("JAXGAN_CACHE_DIR", os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache"))


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  from fid_reference import reference  # pylint: disable=import-outside-toplevel
  return reference(tmp_path_factory)


def run(capsys, *args) -> tuple[int, dict | None, str]:
  capsys.readouterr()
  rc = cli.main(["fid", *map(str, args)])
  out, err = capsys.readouterr()
  return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else None), err


def _images(folder: Path, n: int, seed: int) -> list[str]:
  from fid_reference import write_images  # pylint: disable=import-outside-toplevel
  return write_images(folder, n, seed)


# ----------------------------------------------------------------------------- the command


@pytest.mark.torch
def test_fid_between_folders_and_stats(ref, tmp_path, capsys, monkeypatch):
  files_a, files_b = _images(tmp_path / "a", 2, 1), _images(tmp_path / "b", 3, 2)
  calls = []
  real = fid.frechet_distance
  monkeypatch.setattr(fid, "frechet_distance", lambda *a: calls.append(a) or 12.5)
  rc, out, err = run(capsys, tmp_path / "a", tmp_path / "b", "--weights", ref.npz, "--batch-size", 4)
  assert rc == 0, err
  assert set(out) == {"fid", "kid", "kid_std", "images_1", "images_2"}
  assert (out["fid"], out["images_1"], out["images_2"]) == (12.5, 2, 3)
  feats = {k: ref.features(np.stack([fid_io.read_rgb(f) for f in files])) for k, files in
           (("a", files_a), ("b", files_b))}
  (mu1, s1, mu2, s2), = calls
  for mu, sigma, f in ((mu1, s1, feats["a"]), (mu2, s2, feats["b"])):
    scale = np.abs(f).max()
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-4 * scale)
    np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), atol=1e-4 * scale ** 2)
  kid, kid_std = fid.kid(feats["a"], feats["b"])
  assert out["kid"] == pytest.approx(kid, rel=1e-3, abs=1e-6) and out["kid_std"] == pytest.approx(kid_std, rel=1e-2)

  # --save-stats: pytorch-fid's own save_fid_stats on the same folder gives the same file contents
  rc, out, err = run(capsys, tmp_path / "a", tmp_path / "a.npz", "--save-stats", "--weights", ref.npz,
                     "--batch-size", 4)
  assert rc == 0 and out == {"saved": str(tmp_path / "a.npz"), "images": 2}, err
  monkeypatch.setattr(ref.inception, "load_state_dict_from_url", lambda *a, **k: __import__("torch").load(ref.pth))
  ref.fid_score.save_fid_stats([str(tmp_path / "a"), str(tmp_path / "theirs.npz")], 50, "cpu", 2048, 0)
  with np.load(tmp_path / "a.npz") as ours, np.load(tmp_path / "theirs.npz") as theirs:
    assert sorted(ours.files) == sorted(theirs.files) == ["mu", "sigma"]
    assert ours["mu"].dtype == theirs["mu"].dtype == np.float64
    np.testing.assert_allclose(ours["mu"], theirs["mu"], atol=1e-4 * np.abs(theirs["mu"]).max())
    np.testing.assert_allclose(ours["sigma"], theirs["sigma"], atol=1e-4 * np.abs(theirs["sigma"]).max())
  before = (tmp_path / "a.npz").read_bytes()
  rc, _, err = run(capsys, tmp_path / "b", tmp_path / "a.npz", "--save-stats", "--weights", ref.npz)
  assert rc == 1 and "exists" in err and (tmp_path / "a.npz").read_bytes() == before

  # a stats file against a folder: no KID, the folder's count
  calls.clear()
  rc, out, err = run(capsys, tmp_path / "a.npz", tmp_path / "b", "--weights", ref.npz, "--batch-size", 4)
  assert rc == 0 and out == {"fid": 12.5, "images_1": None, "images_2": 3}, err
  np.testing.assert_array_equal(calls[0][0], np.load(tmp_path / "a.npz")["mu"])
  monkeypatch.setattr(fid, "frechet_distance", real)


def test_fid_between_stats_files_needs_no_weights(tmp_path, capsys):
  rng = np.random.default_rng(0)
  paths = []
  for i in range(2):
    x = rng.normal(i * 0.5, 1.0, size=(100, 16))
    paths.append(tmp_path / f"s{i}.npz")
    np.savez_compressed(paths[-1], mu=x.mean(0), sigma=np.cov(x, rowvar=False))   # pytorch-fid's format
  rc, out, err = run(capsys, *paths)   # offline, no weights anywhere: none needed
  assert rc == 0, err
  assert set(out) == {"fid", "images_1", "images_2"} and out["images_1"] is None
  stats = [np.load(p) for p in paths]
  expected = fid.frechet_distance(stats[0]["mu"], stats[0]["sigma"], stats[1]["mu"], stats[1]["sigma"])
  assert out["fid"] == pytest.approx(expected, rel=1e-12) and out["fid"] > 1.0
  np.savez(tmp_path / "s8.npz", mu=np.zeros(8), sigma=np.eye(8))
  rc, _, err = run(capsys, paths[0], tmp_path / "s8.npz")
  assert rc == 1 and "different feature sizes (16 and 8)" in err


def test_bad_paths_are_named_before_any_weights(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  (tmp_path / "imgs").mkdir()
  _images(tmp_path / "imgs", 2, 0)
  np.savez(tmp_path / "nomu.npz", sigma=np.eye(2))
  for args, needle in (((tmp_path / "missing", tmp_path / "imgs"), "missing' is not a folder"),
                       ((tmp_path / "imgs", tmp_path / "empty"), "no image files"),
                       ((tmp_path / "nomu.npz", tmp_path / "imgs"), "has no mu"),
                       ((tmp_path / "imgs", tmp_path / "x.npz", "--save-stats", "--batch-size", "0"), "must be >= 1")):
    rc, _, err = run(capsys, *args)
    assert rc in (1, 2) and needle in err, err
    assert "FID Inception weights" not in err


def test_list_images_is_pytorch_fids_folder_rule(tmp_path):
  _images(tmp_path, 2, 0)
  (tmp_path / "C.JPG").write_bytes((tmp_path / "img_00.png").read_bytes())
  (tmp_path / ".hidden.png").write_bytes(b"")
  (tmp_path / "notes.txt").write_text("x")
  _images(tmp_path / "sub", 1, 0)
  assert [os.path.basename(p) for p in fid_io.list_images(str(tmp_path))] == ["C.JPG", "img_00.png", "img_01.png"]


# ----------------------------------------------------------------------------- where the weights come from


def test_offline_without_weights_says_where_to_put_them(tmp_path, capsys):
  _images(tmp_path / "a", 2, 0)
  rc, _, err = run(capsys, tmp_path / "a", tmp_path / "a")
  assert rc == 1
  cache = os.path.join(str(tmp_path / "cache"), NAME)
  for needle in ("no FID Inception weights", "--weights FILE", fid_io.ENV_WEIGHTS, cache, NAME):
    assert needle in err, err
  assert len(err.strip().splitlines()) == 1
  assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")   # no partial download left


@pytest.mark.torch
def test_corrupt_or_wrong_weights_files_are_named(ref, tmp_path, capsys):
  import torch  # pylint: disable=import-outside-toplevel
  _images(tmp_path / "a", 2, 0)
  (tmp_path / "garbage.pth").write_bytes(b"\x80\x02not a pickle" * 100)
  (tmp_path / "cut.npz").write_bytes(Path(ref.npz).read_bytes()[: 1 << 20])
  torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
  for name, needle in (("garbage.pth", "cannot be read"), ("cut.npz", "cannot be read"),
                       ("other.pth", "not pytorch-fid's FID Inception"), ("absent.pth", "does not exist")):
    rc, _, err = run(capsys, tmp_path / "a", tmp_path / "a", "--weights", tmp_path / name)
    assert rc == 1 and str(tmp_path / name) in err and needle in err, err


@pytest.mark.torch
def test_pth_is_converted_once_then_needs_no_torch(ref, tmp_path, monkeypatch, caplog):
  expected = fid.load_params(ref.pth)
  params = fid_io.load_weights(ref.pth)
  cached = list((tmp_path / "cache").glob("*.npz"))
  assert len(cached) == 1 and "sha256" in cached[0].name
  torch_module = sys.modules["torch"]
  monkeypatch.setitem(sys.modules, "torch", None)   # import torch now fails
  monkeypatch.setenv(fid_io.ENV_WEIGHTS, ref.pth)
  again = fid_io.load_weights()
  for p in (params, again):
    np.testing.assert_array_equal(p["Mixed_7c"]["branch_pool"]["kernel"], expected["Mixed_7c"]["branch_pool"]["kernel"])
  cached[0].write_bytes(b"damaged")
  with pytest.raises(fid.WeightsError, match="needs PyTorch"):
    fid_io.load_weights()   # the damaged cache is skipped; without torch the .pth cannot be read
  monkeypatch.setitem(sys.modules, "torch", torch_module)
  with caplog.at_level("WARNING"):
    fid_io.load_weights()   # rebuilt
  assert "damaged FID weights cache" in caplog.text
  assert fid.load_params(str(cached[0]))["Conv2d_1a_3x3"]["bias"].shape == (32,)


class _Server:
  """Serves one folder on 127.0.0.1 and counts GET requests."""

  def __init__(self, folder: Path):
    server = self
    self.gets = 0

    class Handler(http.server.SimpleHTTPRequestHandler):
      def __init__(self, *a, **k):
        super().__init__(*a, directory=str(folder), **k)

      def do_GET(self):  # noqa: N802
        server.gets += 1
        super().do_GET()

      def log_message(self, *a):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.mark.torch
def test_download_checks_the_hash_converts_and_caches(ref, tmp_path, monkeypatch):
  data = Path(ref.pth).read_bytes()
  digest = hashlib.sha256(data).hexdigest()
  served = tmp_path / "served"
  served.mkdir()
  good, bad = f"fid-{digest[:8]}.pth", f"fid-{'0' * 8}.pth"
  (served / good).write_bytes(data)
  (served / bad).write_bytes(data)
  with _Server(served) as server:
    monkeypatch.setattr(fid_io, "WEIGHTS_URL", f"{server.url}/{bad}")
    with pytest.raises(fid.WeightsError, match=f"damaged: its SHA-256 {digest[:16]}.* does not start with 00000000"):
      fid_io.load_weights()
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")
    monkeypatch.setattr(fid_io, "WEIGHTS_URL", f"{server.url}/{good}")
    params = fid_io.load_weights()
    assert server.gets == 2
  assert sorted(os.listdir(tmp_path / "cache")) == [f"fid-{digest[:8]}.npz"]   # the .pth is not kept
  again = fid_io.load_weights()   # the server is gone: from the cache
  expected = fid.load_params(ref.pth)
  for p in (params, again):
    np.testing.assert_array_equal(p["Mixed_5b"]["branch5x5_2"]["kernel"], expected["Mixed_5b"]["branch5x5_2"]["kernel"])
