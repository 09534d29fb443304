"""FID's I/O: where the Inception weights come from, folders of images -> features -> statistics, .npz stats.

Weights (:func:`load_weights`), first found wins:

1. an explicit file (``--weights FILE``), else ``$JAXGAN_FID_WEIGHTS``: pytorch-fid's
   ``.pth`` or an ``.npz`` of its keys. A ``.pth`` is read with torch once and
   its arrays cached as ``.npz`` under the cache folder, keyed by the file's SHA-256,
   so later runs need no torch;
2. the cache folder (``$JAXGAN_FID_CACHE_DIR``, default ``~/.cache/jaxgan/fid``):
   ``pt_inception-2015-12-05-6726825d.npz`` (the converted download), or the
   ``.pth`` of that name placed there by hand (converted on first use);
3. a download from pytorch-fid's release URL (:data:`WEIGHTS_URL`), whose SHA-256
   must start with the hex digits in its file name (torch.hub's convention),
   converted into the cache. Offline, one :class:`~jaxgan.fid.WeightsError` says
   where to put the file.

Images (:func:`list_images`, :func:`folder_features`): the folder's own image files
(not its subfolders, as pytorch-fid), sorted by name, decoded by
:func:`jaxgan.data.read_image` and made RGB by the reference's channel conversion
(gray replicated, alpha dropped); 8-bit images go to the network as ``uint8``
(``ToTensor``'s ``/ 255`` on the device), others as float in [0, 1]. Batches of
images of one size are resized on the device; a batch of mixed sizes is resized
on the host with the same bilinear weights. Decoding runs in threads, ahead of
the network.

Stats files (:func:`save_stats`, :func:`load_stats`): pytorch-fid's format, an
``.npz`` with ``mu [2048]`` and ``sigma [2048, 2048]`` (float64).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from typing import Callable, Iterator, Sequence

import numpy as np

from jaxgan import fid
from jaxgan.data.image_io import IMAGE_EXTENSIONS, DataError, convert_channels, max_value, read_image

ENV_WEIGHTS = "JAXGAN_FID_WEIGHTS"
ENV_CACHE_DIR = "JAXGAN_FID_CACHE_DIR"
WEIGHTS_URL = fid.FID_WEIGHTS_URL
DOWNLOAD_TIMEOUT_S = 60.0
FID_EXTENSIONS = tuple(IMAGE_EXTENSIONS) + (".pgm", ".ppm")   # pytorch-fid also reads PGM/PPM

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- weights


def cache_dir() -> str:
  """``$JAXGAN_FID_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxgan/fid``, else ``~/.cache/jaxgan/fid``."""
  if os.environ.get(ENV_CACHE_DIR):
    return os.environ[ENV_CACHE_DIR]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "jaxgan", "fid")


def _url_name(url: str) -> str:
  return url.rstrip("/").rsplit("/", 1)[-1]


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _write_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  """``np.savez`` into a temporary file beside ``path``, then renamed over it (never a partial file)."""
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _convert_and_cache(pth: str, cached: str) -> dict:
  """Read ``pth`` (torch), check it converts, store its arrays as ``cached`` (.npz); returns params."""
  state = fid.read_state_dict(pth)
  try:
    params = fid.convert_state_dict(state)
  except fid.WeightsError as e:
    raise fid.WeightsError(f"{pth}: {e}") from e
  keep = {k: np.asarray(v, np.float32) for k, v in state.items()
          if k not in ("fc.weight", "fc.bias") and not k.endswith("num_batches_tracked")}
  try:
    _write_npz_atomic(cached, keep)
    log.info("FID weights %s converted and cached as %s", pth, cached)
  except OSError as e:   # a read-only cache is no reason to fail; the next run converts again
    log.warning("could not cache the FID weights as %s: %s", cached, e)
  return params


def _load_cached(cached: str) -> dict | None:
  """Params from a cache file, or None when it is missing or damaged (then it is rebuilt)."""
  if not os.path.isfile(cached):
    return None
  try:
    return fid.load_params(cached)
  except fid.WeightsError as e:
    log.warning("ignoring the damaged FID weights cache %s (%s)", cached, e)
    return None


def _offline_message(reason: str) -> str:
  name = _url_name(WEIGHTS_URL)
  return (f"no FID Inception weights: the download of {WEIGHTS_URL} failed ({reason}). Get pytorch-fid's {name} "
          f"(from that URL, on a machine that is online), then either pass it (jaxgan fid --weights FILE, "
          f"jaxgan evaluate --fid_weights FILE), set {ENV_WEIGHTS}=FILE, or put it at "
          f"{os.path.join(cache_dir(), name)}")


def download_weights(dest: str, url: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
  """Download ``url`` (default :data:`WEIGHTS_URL`) to ``dest``, checking the SHA-256 prefix in its name.

  The file is written beside ``dest`` and renamed into place only once complete and
  checked. Raises :class:`~jaxgan.fid.WeightsError` when offline or on a hash mismatch.
  """
  url = WEIGHTS_URL if url is None else url
  match = re.search(r"-([a-f0-9]{6,})\.", _url_name(url))
  folder = os.path.dirname(dest) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
  h = hashlib.sha256()
  try:
    with os.fdopen(fd, "wb") as out:
      try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a fixed https URL
          for block in iter(lambda: response.read(1 << 20), b""):
            h.update(block)
            out.write(block)
      except (urllib.error.URLError, OSError, ValueError) as e:
        raise fid.WeightsError(_offline_message(f"{type(e).__name__}: {getattr(e, 'reason', e)}")) from e
    if match and not h.hexdigest().startswith(match.group(1)):
      raise fid.WeightsError(f"the file downloaded from {url} is damaged: its SHA-256 {h.hexdigest()[:16]}... does "
                             f"not start with {match.group(1)}")
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return dest


def load_weights(weights: str | os.PathLike | None = None, *, download: bool = True) -> dict:
  """FID Inception params from the first source found (module doc): ``weights``, ``$JAXGAN_FID_WEIGHTS``,
  the cache, a download (when ``download``). Errors name the file at fault or say where to put one."""
  explicit = os.fspath(weights) if weights is not None else os.environ.get(ENV_WEIGHTS) or None
  if explicit:
    source = "--weights" if weights is not None else f"${ENV_WEIGHTS}"
    if not os.path.isfile(explicit):
      raise fid.WeightsError(f"FID weights file {explicit!r} ({source}) does not exist")
    if explicit.endswith(".npz"):
      return fid.load_params(explicit)
    stem = os.path.splitext(os.path.basename(explicit))[0]
    cached = os.path.join(cache_dir(), f"{stem}-sha256-{_sha256(explicit)[:16]}.npz")
    return _load_cached(cached) or _convert_and_cache(explicit, cached)
  name = _url_name(WEIGHTS_URL)
  cached = os.path.join(cache_dir(), os.path.splitext(name)[0] + ".npz")
  params = _load_cached(cached)
  if params is not None:
    return params
  placed = os.path.join(cache_dir(), name)
  if not os.path.isfile(placed):
    if not download:
      raise fid.WeightsError(_offline_message("downloads are off"))
    log.info("downloading pytorch-fid's Inception weights from %s", WEIGHTS_URL)
    download_weights(placed)
    params = _convert_and_cache(placed, cached)
    os.remove(placed)   # the .npz holds everything the network needs
    return params
  return _convert_and_cache(placed, cached)


# ----------------------------------------------------------------------------- images


def list_images(folder: str) -> list[str]:
  """The image files directly in ``folder`` (pytorch-fid's extensions, any case; hidden files skipped), sorted."""
  if not os.path.isdir(folder):
    raise DataError(f"{folder!r} is not a folder of images (nor an .npz of FID statistics)")
  names = sorted(n for n in os.listdir(folder)
                 if not n.startswith(".") and os.path.splitext(n)[1].lower() in FID_EXTENSIONS
                 and os.path.isfile(os.path.join(folder, n)))
  if not names:
    raise DataError(f"no image files ({', '.join(FID_EXTENSIONS)}) directly in {folder!r}")
  return [os.path.join(folder, n) for n in names]


def read_rgb(path: str) -> np.ndarray:
  """An image file as ``H x W x 3``: ``uint8`` for 8-bit files, else float32 in [0, 1]."""
  image = convert_channels(read_image(path), 3, name=path)
  if image.dtype == np.uint8:
    return image
  return (image.astype(np.float32) / np.float32(max_value(image.dtype))).astype(np.float32)


def _to_batch(images: Sequence[np.ndarray]) -> np.ndarray:
  """Stack images into one batch: as they are when they share size and dtype, else float [0, 1] at 299x299."""
  if all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
    return np.stack(images)
  out = []
  for im in images:
    x = im.astype(np.float32) / np.float32(255.0) if im.dtype == np.uint8 else im
    if x.shape[:2] != (fid.INPUT_SIZE, fid.INPUT_SIZE):
      rh, rw = fid.resize_matrix(x.shape[0], fid.INPUT_SIZE), fid.resize_matrix(x.shape[1], fid.INPUT_SIZE)
      x = np.einsum("oh,hwc,pw->opc", rh, x, rw, optimize=True).astype(np.float32)
    out.append(x)
  return np.stack(out)


def image_batches(files: Sequence[str], batch_size: int, threads: int = 4) -> Iterator[np.ndarray]:
  """Batches of :func:`read_rgb` images of ``files`` in order, decoded by ``threads`` threads ahead of use."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
    pending = [pool.submit(read_rgb, f) for f in files[:2 * batch_size]]
    next_file = len(pending)
    while pending:
      batch, pending = pending[:batch_size], pending[batch_size:]
      images = [f.result() for f in batch]
      for f in files[next_file:next_file + batch_size]:
        pending.append(pool.submit(read_rgb, f))
      next_file += batch_size
      yield _to_batch(images)


def files_features(files: Sequence[str], extractor: Callable[[np.ndarray], np.ndarray], *,
                   batch_size: int = 50) -> np.ndarray:
  """pool3 features ``[N, 2048]`` (float32) of image ``files``, in their order."""
  return np.concatenate([extractor(batch) for batch in image_batches(files, batch_size)])


def folder_features(folder: str, extractor: Callable[[np.ndarray], np.ndarray], *,
                    batch_size: int = 50) -> np.ndarray:
  """pool3 features ``[N, 2048]`` (float32) of the images of ``folder``, in file-name order."""
  return files_features(list_images(folder), extractor, batch_size=batch_size)


# ----------------------------------------------------------------------------- statistics files


def is_stats_file(path: str) -> bool:
  return str(path).lower().endswith(".npz")


def load_stats(path: str) -> tuple[np.ndarray, np.ndarray]:
  """``mu [D]``, ``sigma [D, D]`` from a pytorch-fid stats ``.npz``; :class:`DataError` naming ``path``."""
  if not os.path.isfile(path):
    raise DataError(f"FID statistics file {path!r} does not exist")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ("mu", "sigma") if k not in f.files]
      if missing:
        raise DataError(f"{path!r} is not a FID statistics file: it has no {' or '.join(missing)} "
                        f"(has {', '.join(f.files) or 'nothing'})")
      mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
  except DataError:
    raise
  except Exception as e:  # noqa: BLE001 - zip/format errors of a damaged file
    raise DataError(f"cannot read FID statistics {path!r}: {type(e).__name__}: {e}") from e
  if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
    raise DataError(f"{path!r}: mu {mu.shape} and sigma {sigma.shape} are not a mean vector and its covariance")
  return mu, sigma


def save_stats(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
  """Write pytorch-fid's stats format (``np.savez_compressed(mu=, sigma=)``); refuses to replace a file."""
  if os.path.exists(path):
    raise FileExistsError(f"{path!r} exists; FID statistics are never written over an existing file")
  if not is_stats_file(path):
    raise DataError(f"{path!r}: FID statistics are written as .npz")
  folder = os.path.dirname(path) or "."
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez_compressed(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
    try:
      os.link(tmp, path)   # fails rather than replacing a file created meanwhile
    except FileExistsError:
      raise FileExistsError(f"{path!r} exists; FID statistics are never written over an existing file") from None
    except OSError:        # no hard links on this file system
      os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def statistics_of(path: str, extractor: Callable[[], Callable[[np.ndarray], np.ndarray]], *,
                  batch_size: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """``(mu, sigma, features or None)`` of a stats ``.npz`` or a folder of images.

  ``extractor()`` is called only for a folder (so stats files need no weights).
  """
  if is_stats_file(path):
    mu, sigma = load_stats(path)
    return mu, sigma, None
  files = list_images(path)   # fail on an empty folder before any compilation
  if len(files) < 2:
    raise DataError(f"{path!r} has {len(files)} image; FID statistics need at least 2")
  feats = files_features(files, extractor(), batch_size=batch_size)
  mu, sigma = fid.feature_statistics(feats)
  return mu, sigma, feats
