"""``jaxgan pretrained``: the zoo table, offline behaviour, and download + cache + import against a local server.

No network: a closed port on 127.0.0.1 stands for an offline machine, and a local
HTTP server for the authors' URL (``--url``).
"""
from __future__ import annotations

import functools
import http.server
import socket
import threading
from pathlib import Path

import pytest

from conftest import require_torch
from jaxgan import checkpoint, cli
from jaxgan.interop import zoo

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args) -> int:
  return cli.main([str(a) for a in args])


def test_zoo_table_lists_the_29_released_models_and_the_docs_have_it():
  assert len(zoo.MODELS) == 29
  assert sum(m.model == "cyclegan" for m in zoo.MODELS) == 18
  assert {m.key for m in zoo.MODELS if m.model == "pix2pix"} == {
      "pix2pix/edges2shoes", "pix2pix/sat2map", "pix2pix/map2sat", "pix2pix/facades_label2photo",
      "pix2pix/day2night"}
  h2z = zoo.find("horse2zebra")
  assert h2z.url == "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
  assert zoo.find("facades_label2photo", "pix2pix").url == \
      "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/facades_label2photo.pth"
  assert (h2z.netG, h2z.norm, h2z.dropout) == ("resnet_9blocks", "instance", False)
  cut = [m for m in zoo.MODELS if m.model == "cut"]   # the CUT README's archive of 6 generators
  assert {m.name for m in cut} == {f"{d}_{k}" for d in ("horse2zebra", "cat2dog", "cityscapes")
                                   for k in ("cut", "fastcut")}
  assert {m.url for m in cut} == {"http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"}
  assert zoo.find("cityscapes_fastcut").member == "checkpoints/cityscapes_fastcut_pretrained/latest_net_G.pth"
  assert zoo.markdown_table() in (ROOT / "docs" / "pretrained.md").read_text()   # the README links the page
  assert "docs/pretrained.md" in (ROOT / "README.md").read_text()


def test_names_released_for_both_models_need_the_model(capsys):
  assert run_cli("pretrained", "sat2map", "--workdir", "unused") == 1
  err = capsys.readouterr().err
  assert "cyclegan/sat2map" in err and "pix2pix/sat2map" in err
  assert run_cli("pretrained", "hrse2zebra", "--workdir", "unused") == 1
  assert "Did you mean horse2zebra" in capsys.readouterr().err
  assert zoo.find("sat2map", "pix2pix").model == "pix2pix" and zoo.find("pix2pix/sat2map").model == "pix2pix"
  assert not Path("unused").exists()


def _closed_port() -> int:
  s = socket.socket()
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
  s.close()
  return port


def test_offline_prints_the_url_and_the_import_command_and_writes_nothing(tmp_path, capsys):
  url = f"http://127.0.0.1:{_closed_port()}/horse2zebra.pth"
  wd, cache = tmp_path / "wd", tmp_path / "cache"
  assert run_cli("pretrained", "horse2zebra", "--workdir", wd, "--cache", cache, "--url", url, "--timeout", 5) == 1
  err = capsys.readouterr().err
  assert "cannot download cyclegan/horse2zebra" in err and url in err
  assert zoo.find("horse2zebra").url in err                          # the published URL, to fetch by hand
  assert f"jaxgan import-torch horse2zebra.pth --workdir {wd} --model cyclegan --direction AtoB" in err
  assert not wd.exists() and not cache.exists()


@pytest.fixture
def file_server(tmp_path):
  """An HTTP server on 127.0.0.1 serving ``tmp_path/served``; yields (folder, base URL, shutdown)."""
  folder = tmp_path / "served"
  folder.mkdir()
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  handler.log_message = lambda *a, **k: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  stopped = []

  def stop():
    if not stopped:
      server.shutdown()
      server.server_close()
      stopped.append(True)

  yield folder, f"http://127.0.0.1:{server.server_address[1]}", stop
  stop()


@pytest.mark.torch
def test_download_cache_and_import(tmp_path, file_server, capsys):
  torch = require_torch()
  import torch_reference as R
  folder, base, stop = file_server
  net = R.randomize_(R.define_G(3, 3, 4, "resnet_1blocks", "instance"), 3, 0.6)
  torch.save(net.state_dict(), folder / "zebra2horse.pth")   # the authors' released files are plain state_dicts
  url = f"{base}/zebra2horse.pth"
  cache, wd = tmp_path / "cache", tmp_path / "z2h"
  assert run_cli("pretrained", "zebra2horse", "--workdir", wd, "--cache", cache, "--url", url) == 0
  cached = cache / "cyclegan" / "zebra2horse.pth"
  assert cached.read_bytes() == (folder / "zebra2horse.pth").read_bytes()
  assert [p.name for p in cached.parent.iterdir()] == ["zebra2horse.pth"]   # no partial download left
  ckpt = checkpoint.Checkpointer(wd, read_only=True)
  meta = ckpt.read_meta(0)
  ckpt.close()
  imported = meta[checkpoint.IMPORTED_KEY]
  assert imported["source"] == "pretrained:cyclegan/zebra2horse" and imported["url"] == url
  assert imported["trained_as"] == "cyclegan" and meta[checkpoint.TRANSLATE_ONLY_KEY]
  assert (meta["config"]["direction"], meta["config"]["dataset"]) == ("BtoA", "folder:datasets/horse2zebra")
  assert "downloaded cyclegan/zebra2horse" in capsys.readouterr().err
  stop()   # offline now: the cache serves the second import
  assert run_cli("pretrained", "zebra2horse", "--workdir", tmp_path / "again", "--cache", cache, "--url", url) == 0
  assert "using the cached cyclegan/zebra2horse" in capsys.readouterr().err
  assert checkpoint.list_steps(tmp_path / "again") == [0]


def test_http_error_leaves_nothing_in_the_cache(tmp_path, file_server, capsys):
  _, base, _ = file_server
  cache, wd = tmp_path / "cache", tmp_path / "wd"
  assert run_cli("pretrained", "style_monet", "--workdir", wd, "--cache", cache, "--url", f"{base}/missing.pth") == 1
  err = capsys.readouterr().err
  assert "404" in err and "jaxgan import-torch style_monet.pth" in err
  assert not wd.exists() and not (cache / "cyclegan" / "style_monet.pth").exists()


@pytest.mark.torch
def test_cut_models_come_out_of_the_authors_archive_once(tmp_path, file_server, capsys):
  """The CUT README's pretrained_models.tar (checkpoints/<name>_pretrained/latest_net_G.pth, random weights in
  the authors' anti-aliased layout): downloaded once, each generator read out of it, imported as a translate-only
  cut workdir; a second model comes from the cached archive with the server gone."""
  import io
  import tarfile
  torch = require_torch()
  import torch_reference as R
  import torch_reference_cut as RC
  folder, base, stop = file_server
  with tarfile.open(folder / "pretrained_models.tar", "w") as tar:
    for i, name in enumerate(("horse2zebra_cut", "cityscapes_fastcut")):
      buf = io.BytesIO()
      torch.save(R.randomize_(RC.ResnetGenerator(3, 3, 4, "instance", 1), i, 0.6).state_dict(), buf)
      info = tarfile.TarInfo(f"checkpoints/{name}_pretrained/latest_net_G.pth")
      info.size = len(buf.getvalue())
      tar.addfile(info, io.BytesIO(buf.getvalue()))
  url, cache = f"{base}/pretrained_models.tar", tmp_path / "cache"
  assert run_cli("pretrained", "horse2zebra_cut", "--workdir", tmp_path / "h2z", "--cache", cache, "--url", url) == 0
  assert "downloaded cut/horse2zebra_cut" in capsys.readouterr().err
  assert sorted(p.name for p in (cache / "cut").iterdir()) == ["horse2zebra_cut.pth", "pretrained_models.tar"]
  stop()   # offline now: the archive in the cache serves the other model
  assert run_cli("pretrained", "cityscapes_fastcut", "--workdir", tmp_path / "city", "--cache", cache,
                 "--url", url) == 0
  ckpt = checkpoint.Checkpointer(tmp_path / "city", read_only=True)
  meta = ckpt.read_meta(0)
  ckpt.close()
  c = meta["config"]
  assert (c["model"], c["no_antialias"], c["no_antialias_up"], c["direction"], c["dataset"]) == \
      ("cut", False, False, "BtoA", "folder:datasets/cityscapes")
  assert meta[checkpoint.IMPORTED_KEY]["source"] == "pretrained:cut/cityscapes_fastcut"
  assert meta[checkpoint.TRANSLATE_ONLY_KEY]
  assert run_cli("pretrained", "cat2dog_cut", "--workdir", tmp_path / "c2d", "--cache", cache, "--url", url) == 1
  err = capsys.readouterr().err   # not in this archive: named, with the by-hand steps
  assert "holds no checkpoints/cat2dog_cut_pretrained/latest_net_G.pth" in err and "tar -xf" in err
  assert not (tmp_path / "c2d").exists()
