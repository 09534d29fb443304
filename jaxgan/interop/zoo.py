"""The authors' released pix2pix / CycleGAN / CUT generators: the table, their URLs, download with a cache.

The authors publish 18 CycleGAN generators and 5 pix2pix ones, each a plain
``state_dict`` of one generator, at the URLs of their download scripts
(``scripts/download_cyclegan_model.sh``, ``scripts/download_pix2pix_model.sh`` in
junyanz/pytorch-CycleGAN-and-pix2pix)::

  CycleGAN: http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/<name>.pth
  pix2pix:  http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/<name>.pth

The CUT authors (taesungp/contrastive-unpaired-translation, README "Apply a pre-trained CUT model")
publish their 6 CUT / FastCUT generators (horse2zebra, cat2dog, cityscapes) in one archive, each as
``checkpoints/<name>_pretrained/latest_net_G.pth`` inside it::

  CUT:      http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar

(anti-aliased ResNet-9, instance norm, no dropout, ngf 64: their default options).

CycleGAN ones are ResNet-9 generators with instance norm and no dropout (the
reference tests them with ``--model test --no_dropout``); pix2pix ones are
U-Net-256 with batch norm and dropout. ``direction`` is the side of the dataset
(in the reference's layout) the generator reads: ``BtoA`` means it maps the
dataset's B images to A images (e.g. ``zebra2horse`` on ``horse2zebra``).

:func:`fetch` downloads a model once into a cache folder (``$JAXGAN_PRETRAINED_DIR``,
default ``~/.cache/jaxgan/pretrained``) and reuses it after; a download is
written to a temporary name and renamed only when complete. For CUT the archive is downloaded once
(kept as ``CACHE/cut/pretrained_models.tar``) and the chosen generator read out of it, by
its member's name alone (``..._pretrained/latest_net_G.pth``; nothing is extracted elsewhere); a
``url`` that serves a plain ``.pth`` instead is used as the generator itself.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"
CUT_URL = "http://efrosgans.eecs.berkeley.edu/CUT/pretrained_models.tar"
CUT_ARCHIVE = "pretrained_models.tar"


@dataclasses.dataclass(frozen=True)
class ZooModel:
  """One released generator. ``dataset``: the reference dataset it was trained on; ``direction``: see above."""
  model: str
  name: str
  dataset: str
  direction: str
  note: str = ""

  @property
  def netG(self) -> str:
    return "unet_256" if self.model == "pix2pix" else "resnet_9blocks"

  @property
  def norm(self) -> str:
    return "batch" if self.model == "pix2pix" else "instance"

  @property
  def dropout(self) -> bool:
    return self.model == "pix2pix"

  @property
  def key(self) -> str:
    return f"{self.model}/{self.name}"

  @property
  def url(self) -> str:
    if self.model == "cut":
      return CUT_URL
    return (CYCLEGAN_URL if self.model == "cyclegan" else PIX2PIX_URL).format(name=self.name)

  @property
  def member(self) -> str | None:
    """The generator's path inside the published archive (CUT), None for a plain ``.pth`` download."""
    return f"checkpoints/{self.name}_pretrained/latest_net_G.pth" if self.model == "cut" else None

  @property
  def jaxgan_dataset(self) -> str:
    return f"folder:datasets/{self.dataset}"


def _c(name: str, dataset: str, direction: str, note: str = "") -> ZooModel:
  return ZooModel("cyclegan", name, dataset, direction, note)


def _p(name: str, dataset: str, direction: str, note: str = "") -> ZooModel:
  return ZooModel("pix2pix", name, dataset, direction, note)


def _cut(name: str, dataset: str, direction: str, note: str = "") -> ZooModel:
  return ZooModel("cut", name, dataset, direction, note)


MODELS: tuple[ZooModel, ...] = (
    _c("apple2orange", "apple2orange", "AtoB"),
    _c("orange2apple", "apple2orange", "BtoA"),
    _c("summer2winter_yosemite", "summer2winter_yosemite", "AtoB"),
    _c("winter2summer_yosemite", "summer2winter_yosemite", "BtoA"),
    _c("horse2zebra", "horse2zebra", "AtoB"),
    _c("zebra2horse", "horse2zebra", "BtoA"),
    _c("monet2photo", "monet2photo", "AtoB"),
    _c("style_monet", "monet2photo", "BtoA", "photo -> Monet"),
    _c("style_cezanne", "cezanne2photo", "BtoA", "photo -> Cezanne"),
    _c("style_ukiyoe", "ukiyoe2photo", "BtoA", "photo -> Ukiyo-e"),
    _c("style_vangogh", "vangogh2photo", "BtoA", "photo -> Van Gogh"),
    _c("sat2map", "maps", "AtoB"),
    _c("map2sat", "maps", "BtoA"),
    _c("cityscapes_photo2label", "cityscapes", "AtoB"),
    _c("cityscapes_label2photo", "cityscapes", "BtoA"),
    _c("facades_photo2label", "facades", "AtoB", "A = photo assumed, as in the pix2pix facades"),
    _c("facades_label2photo", "facades", "BtoA", "A = photo assumed, as in the pix2pix facades"),
    _c("iphone2dslr_flower", "iphone2dslr_flower", "AtoB"),
    _p("edges2shoes", "edges2shoes", "AtoB"),
    _p("sat2map", "maps", "AtoB"),
    _p("map2sat", "maps", "BtoA"),
    _p("facades_label2photo", "facades", "BtoA", "the reference tests it with --direction BtoA"),
    _p("day2night", "night2day", "BtoA", "A = night assumed (the dataset's name)"),
    _cut("horse2zebra_cut", "horse2zebra", "AtoB", "CUT"),
    _cut("horse2zebra_fastcut", "horse2zebra", "AtoB", "FastCUT"),
    _cut("cat2dog_cut", "cat2dog", "AtoB", "CUT; AFHQ cats -> dogs"),
    _cut("cat2dog_fastcut", "cat2dog", "AtoB", "FastCUT; AFHQ cats -> dogs"),
    _cut("cityscapes_cut", "cityscapes", "BtoA", "CUT, labels -> photo; the authors' resized JPEG val set"),
    _cut("cityscapes_fastcut", "cityscapes", "BtoA", "FastCUT, labels -> photo"),
)


class DownloadError(RuntimeError):
  """A released model could not be downloaded (offline, HTTP error, incomplete transfer)."""

  def __init__(self, message: str, url: str):
    super().__init__(message)
    self.url = url


def names() -> list[str]:
  """Every accepted NAME: the unique bare names and ``model/name`` for all."""
  bare = [m.name for m in MODELS]
  return sorted({n for n in bare if bare.count(n) == 1} | {m.key for m in MODELS})


def find(name: str, model: str | None = None) -> ZooModel:
  """The entry for ``name`` (``horse2zebra``, ``pix2pix/sat2map``); ``model`` picks among equal names."""
  if "/" in name:
    model_part, _, name = name.partition("/")
    if model and model != model_part:
      raise ValueError(f"{model_part}/{name} contradicts --model {model}")
    model = model_part
  found = [m for m in MODELS if m.name == name and (model is None or m.model == model)]
  if len(found) == 1:
    return found[0]
  if len(found) > 1:
    raise ValueError(f"{name!r} is released for both models: use {' or '.join(m.key for m in found)} "
                     "(or --model)")
  import difflib
  close = difflib.get_close_matches(name, [m.name for m in MODELS], n=3)
  hint = f" Did you mean {', '.join(close)}?" if close else ""
  raise ValueError(f"no released model named {name!r}{f' for {model}' if model else ''}.{hint} "
                   f"Available: {', '.join(names())}")


def default_cache_dir() -> Path:
  """``$JAXGAN_PRETRAINED_DIR``, else ``~/.cache/jaxgan/pretrained``."""
  env = os.environ.get("JAXGAN_PRETRAINED_DIR")
  return Path(env) if env else Path.home() / ".cache" / "jaxgan" / "pretrained"


def cached_path(entry: ZooModel, cache_dir: str | os.PathLike | None = None) -> Path:
  """Where ``entry``'s file lives in the cache: ``CACHE/<model>/<name>.pth``."""
  return Path(cache_dir or default_cache_dir()) / entry.model / f"{entry.name}.pth"


def fetch(entry: ZooModel, *, cache_dir: str | os.PathLike | None = None, url: str | None = None,
          timeout: float = 30.0, progress: bool | None = None) -> tuple[Path, bool]:
  """The cached file of ``entry``, downloading it first when absent. Returns ``(path, downloaded)``.

  ``url`` replaces the published URL (a mirror). Raises :class:`DownloadError`
  (nothing is left in the cache) when the download fails or is incomplete, or when the
  archive (CUT) lacks the generator.
  """
  target = cached_path(entry, cache_dir)
  if target.is_file() and target.stat().st_size > 0:
    return target, False
  url = url or entry.url
  show = sys.stderr.isatty() if progress is None else progress
  if entry.member is None:
    _download(entry, url, target, timeout, show)
    return target, True
  archive = target.with_name(CUT_ARCHIVE)   # one download serves every model in it
  downloaded = not (archive.is_file() and archive.stat().st_size > 0)
  if downloaded:
    _download(entry, url, archive, timeout, show)
  if not tarfile.is_tarfile(archive):   # a mirror that serves the generator itself
    os.replace(archive, target)
    return target, downloaded
  _read_member(entry, archive, target, url)
  return target, downloaded


def _download(entry: ZooModel, url: str, target: Path, timeout: float, show: bool) -> None:
  """``url`` -> ``target``, through a temporary name renamed only when complete."""
  try:
    response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) URLs of the table or the user
  except (urllib.error.URLError, OSError, ValueError) as e:
    reason = getattr(e, "reason", None) or e
    raise DownloadError(f"cannot download {entry.key} from {url}: {reason}", url) from e
  partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
  try:
    with response:
      expected = response.headers.get("Content-Length")
      expected = int(expected) if expected and expected.isdigit() else None
      target.parent.mkdir(parents=True, exist_ok=True)
      done = 0
      with open(partial, "wb") as f:
        while chunk := response.read(1 << 20):
          f.write(chunk)
          done += len(chunk)
          if show:
            total = f" of {expected / 2**20:.1f}" if expected else ""
            print(f"\rdownloading {entry.key}: {done / 2**20:.1f}{total} MiB", end="", file=sys.stderr, flush=True)
      if show:
        print(file=sys.stderr)
    if expected is not None and done != expected:
      raise DownloadError(f"incomplete download of {entry.key} from {url}: {done} of {expected} bytes", url)
    if done == 0:
      raise DownloadError(f"empty download of {entry.key} from {url}", url)
    os.replace(partial, target)
  except (OSError, urllib.error.URLError) as e:
    raise DownloadError(f"download of {entry.key} from {url} failed: {e}", url) from e
  finally:
    if partial.exists():
      partial.unlink()


def _read_member(entry: ZooModel, archive: Path, target: Path, url: str) -> None:
  """Copy ``entry``'s generator out of the (CUT) archive into ``target``; by its name only (a leading
  ``./`` or another top folder is accepted), as bytes: nothing of the archive is unpacked elsewhere."""
  want = entry.member.split("/", 1)[1]   # <name>_pretrained/latest_net_G.pth
  partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
  try:
    with tarfile.open(archive) as tar:
      found = [m for m in tar.getmembers() if m.isfile() and (m.name == want or m.name.endswith("/" + want))]
      if not found:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        raise DownloadError(f"{archive} (from {url}) holds no {entry.member}: {len(names)} files, e.g. "
                            f"{names[:4]}", url)
      with tar.extractfile(found[0]) as src, open(partial, "wb") as f:
        while chunk := src.read(1 << 20):
          f.write(chunk)
    os.replace(partial, target)
  except (OSError, tarfile.TarError) as e:
    archive.unlink(missing_ok=True)   # a damaged archive is fetched again next time
    raise DownloadError(f"cannot read {entry.member} from {archive} (downloaded from {url}): {e}", url) from e
  finally:
    if partial.exists():
      partial.unlink()


def markdown_table() -> str:
  """docs/pretrained.md's model-zoo table (one row per released model)."""
  rows = ["| NAME | model | netG | norm | dropout | direction (dataset) | command |", "|---|---|---|---|---|---|---|"]
  bare = [m.name for m in MODELS]
  for m in MODELS:
    name = m.name if bare.count(m.name) == 1 else m.key
    note = f"; {m.note}" if m.note else ""
    rows.append(f"| `{name}` | {m.model} | {m.netG} | {m.norm} | {'yes' if m.dropout else 'no'} | "
                f"{m.direction} ({m.dataset}{note}) | `jaxgan pretrained {name} --workdir runs/{m.name}` |")
  return "\n".join(rows)
