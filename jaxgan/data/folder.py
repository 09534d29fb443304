"""Local image folders in the reference project's layouts (``dataset="folder:<path>"``).

Owns: finding the layout of a split and listing its files (recursively, sorted,
hidden files ignored, only :data:`~jaxgan.data.image_io.IMAGE_EXTENSIONS`;
symlinks followed once per real folder/file, loops skipped: :func:`list_images`):

- ``<split>A/`` and ``<split>B/`` (e.g. ``trainA/ trainB/ testA/ testB/``): two
  domains. When both hold the same file names (extension aside) they are also
  aligned pairs, matched by name (pix2pix can train on them); otherwise they are
  unpaired (CycleGAN).
- ``<split>/`` (``train/ val/ test/``): side-by-side A|B images, A the left half.
  ``split='test'`` falls back to ``val/`` when there is no ``test/``.

Undecodable files raise a :class:`DataError` naming the file, or with
``skip_bad_images`` are skipped with a warning (the next readable file of the
list takes their place, deterministically). Nothing is ever written here.
"""
from __future__ import annotations

import collections
import heapq
import logging
import os
import warnings
from typing import Any

import numpy as np

from jaxgan.data.image_io import IMAGE_EXTENSIONS, DataError, image_size, is_image_file, read_image
from jaxgan.data.sources import RandomAccess, SplitData, ZippedPairs, register, split_from_pairs

LAYOUTS = ("trainA/ trainB/ (testA/ testB/): unpaired, or paired when the file names match",
           "train/ (val/ test/): paired side-by-side A|B images")


def _is_within(path: str, ancestor: str) -> bool:
  """True when real path ``path`` is ``ancestor`` or lies below it."""
  return path == ancestor or path.startswith(os.path.join(ancestor, ""))


def _walk_real(top: str, seen: set[str], links: list[tuple[str, str]],
               plain: list[tuple[str, str, list[str]]], linked: list[str]) -> None:
  """Walk ``top`` without following symlinked folders (queued in ``links`` as (link, its folder's real path)).

  A folder whose real path is in ``seen`` is skipped, the others are added to
  it. Image files go to ``plain`` as (real folder, listed folder, names), or to
  ``linked`` (listed paths) when the file itself is a symlink.
  """
  stack = [top]
  while stack:
    path = stack.pop()
    real = os.path.realpath(path)
    if real in seen:
      continue
    seen.add(real)
    try:
      with os.scandir(path) as it:
        entries = list(it)
    except OSError:
      continue   # an unreadable folder is skipped, as os.walk does
    names = []
    for e in entries:
      name = e.name
      if name.startswith("."):
        continue
      try:
        is_dir = e.is_dir()   # follows a symlink; False for a broken one
      except OSError:
        is_dir = False
      if is_dir:
        (links.append((e.path, real)) if e.is_symlink() else stack.append(e.path))
      elif is_image_file(name):
        (linked.append(e.path) if e.is_symlink() else names.append(name))
    if names:
      plain.append((real, path, names))


def list_images(folder: str) -> list[str]:
  """Image files under ``folder`` (recursive), sorted by relative path; hidden entries skipped.

  Symlinks are followed, but every real folder is walked once and every real
  file listed once (by resolved path): the real folders first, then each
  symlinked folder (in sorted order) unless its target was already walked or
  contains the link itself (a loop back to an ancestor). So a symlinked dataset
  folder works, while loops neither repeat examples nor hang. A file reachable
  by several names is listed under its own name when it has one, else under its
  first symlink in sorted order.
  """
  seen: set[str] = set()
  links: list[tuple[str, str]] = []
  plain: list[tuple[str, str, list[str]]] = []
  linked: list[str] = []
  _walk_real(folder, seen, links, plain, linked)
  while links:
    batch, links = sorted(links), []
    for link, real_parent in batch:
      target = os.path.realpath(link)
      if target in seen or _is_within(real_parent, target):
        logging.debug("not following %s -> %s: already listed, or a loop", link, target)
        continue
      _walk_real(link, seen, links, plain, linked)
  out = [os.path.join(listed, n) for _, listed, names in plain for n in names]
  if linked:   # symlinked files: dropped when their target is listed already
    known = {os.path.join(real, n) for real, _, names in plain for n in names}
    for path in sorted(linked):
      key = os.path.realpath(path)
      if key not in known:
        known.add(key)
        out.append(path)
  return sorted(out)   # every path starts with ``folder``: the order of the relative paths


def _relative(path: str, root: str) -> str:
  """``os.path.relpath(path, root)`` for a path listed under ``root`` (a string slice: 100k paths in ms)."""
  prefix = os.path.join(root, "")
  return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)


def _stem(path: str, root: str) -> str:
  return os.path.splitext(_relative(path, root))[0]


class _Reader:
  """Reads files of a list; with ``skip_bad`` an undecodable file is replaced by the next readable one."""

  def __init__(self, paths: list[str], skip_bad: bool):
    self.paths, self.skip_bad = list(paths), bool(skip_bad)
    self._bad: set[int] = set()

  def __len__(self) -> int:
    return len(self.paths)

  def read(self, index: int, check=None) -> np.ndarray:
    n = len(self.paths)
    for k in range(n):
      i = (index + k) % n
      if i in self._bad:
        continue
      try:
        image = read_image(self.paths[i])
        if check is not None:
          check(image, self.paths[i])
        return image
      except DataError as e:
        if not self.skip_bad:
          raise DataError(f"{e}. Set skip_bad_images=True to skip undecodable files with a warning") from e
        self._bad.add(i)
        warnings.warn(f"skipping undecodable image (skip_bad_images=True): {e}", RuntimeWarning, stacklevel=2)
        logging.warning("skipping undecodable image (skip_bad_images=True): %s", e)
    raise DataError(f"no readable image among the {n} files starting at {self.paths[index]!r} "
                    "(every file failed to decode)")

  def size(self, index: int) -> tuple[int, int] | None:
    """(w, h) of file ``index`` from its header; None when it is unreadable and ``skip_bad`` is set."""
    try:
      return image_size(self.paths[index])
    except DataError as e:
      if not self.skip_bad:
        raise DataError(f"{e}. Set skip_bad_images=True to skip undecodable files with a warning") from e
      return None


class FileDomain(RandomAccess):
  """A list of image files as a :class:`~jaxgan.data.sources.Domain`."""

  def __init__(self, paths: list[str], skip_bad: bool = False):
    self.reader = _Reader(paths, skip_bad)

  def __len__(self) -> int:
    return len(self.reader)

  def load(self, index: int) -> np.ndarray:
    return self.reader.read(index)

  def name(self, index: int) -> str:
    return self.reader.paths[index]

  def image_size(self, index: int) -> tuple[int, int] | None:
    """(w, h) from the file header; None for an unreadable file with ``skip_bad_images``."""
    return self.reader.size(index)


def _check_side_by_side(image: np.ndarray, path: str) -> None:
  if image.shape[1] < 2:
    raise DataError(f"side-by-side image {path!r} is {image.shape[1]} pixel wide; an A|B image needs width >= 2")


class SideBySidePairs(RandomAccess):
  """A|B images (A the left half, B the right, as the reference's aligned dataset) as pairs."""

  def __init__(self, paths: list[str], skip_bad: bool = False):
    self.reader = _Reader(paths, skip_bad)

  def __len__(self) -> int:
    return len(self.reader)

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    ab = self.reader.read(index, check=_check_side_by_side)
    half = ab.shape[1] // 2
    return ab[:, :half], ab[:, half:]

  def name(self, index: int) -> str:
    return self.reader.paths[index]

  def image_sizes(self, index: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((wa, h), (wb, h)) of the two halves, from the file header."""
    size = self.reader.size(index)
    if size is None:
      return None
    w, h = size
    return (w // 2, h), (w - w // 2, h)


def _images_or_error(folder: str, spec: str) -> list[str]:
  paths = list_images(folder)
  if not paths:
    raise DataError(f"dataset={spec!r}: folder {folder!r} contains no images "
                    f"(looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
  return paths


def _describe(root: str) -> str:
  try:
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
  except OSError:
    entries = []
  return ", ".join(entries[:12]) + (" ..." if len(entries) > 12 else "") if entries else "nothing"


def _separate(root: str, split: str, spec: str, skip_bad: bool) -> SplitData:
  dir_a, dir_b = os.path.join(root, split + "A"), os.path.join(root, split + "B")
  paths_a, paths_b = _images_or_error(dir_a, spec), _images_or_error(dir_b, spec)
  stems_a = [_stem(p, dir_a) for p in paths_a]
  stems_b = [_stem(p, dir_b) for p in paths_b]
  dom_a, dom_b = FileDomain(paths_a, skip_bad), FileDomain(paths_b, skip_bad)
  desc = f"{spec} [{split}A: {len(paths_a)} images, {split}B: {len(paths_b)} images]"
  if stems_a == stems_b and len(set(stems_a)) == len(stems_a):
    return SplitData(desc, dom_a, dom_b, ZippedPairs(dom_a, dom_b))
  count_a, count_b = collections.Counter(stems_a), collections.Counter(stems_b)   # O(n): 100k names in ~0.1 s
  only_a = heapq.nsmallest(5, count_a.keys() - count_b.keys())
  only_b = heapq.nsmallest(5, count_b.keys() - count_a.keys())
  dup = heapq.nsmallest(5, {s for s, k in count_a.items() if k > 1} | {s for s, k in count_b.items() if k > 1})
  why = (f"the file names in {dir_a!r} and {dir_b!r} do not match ({len(paths_a)} vs {len(paths_b)} files; "
         f"only in {split}A: {only_a}, only in {split}B: {only_b}"
         + (f", names used twice: {dup}" if dup else "") + ")")
  return SplitData(desc, dom_a, dom_b, None, why_unpaired=why)


@register("folder")
def open_folder(path: str, split: str, config: Any) -> SplitData:
  """The :class:`SplitData` of ``folder:<path>`` for ``split`` (see the module docstring for layouts)."""
  spec = f"folder:{path}"
  root = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(root):
    raise DataError(f"dataset={spec!r}: folder {root!r} does not exist")
  skip_bad = bool(config.get("skip_bad_images", False))
  has_a, has_b = os.path.isdir(os.path.join(root, split + "A")), os.path.isdir(os.path.join(root, split + "B"))
  if has_a and has_b:
    return _separate(root, split, spec, skip_bad)
  if has_a != has_b:
    have, miss = (split + "A", split + "B") if has_a else (split + "B", split + "A")
    raise DataError(f"dataset={spec!r}: found {os.path.join(root, have)!r} but not {os.path.join(root, miss)!r}; "
                    f"the unpaired/name-matched layout needs both {split}A/ and {split}B/")
  for name in (split, "val") if split == "test" else (split,):
    if os.path.isdir(os.path.join(root, name)):
      if name != split:
        logging.info("%s: no %s/ folder, using %s/ for split %r", spec, split, name, split)
      paths = _images_or_error(os.path.join(root, name), spec)
      return split_from_pairs(f"{spec} [{name}: {len(paths)} side-by-side A|B images]",
                              SideBySidePairs(paths, skip_bad))
  raise DataError(f"dataset={spec!r}: folder {root!r} has no {split!r} split in a known layout; it contains: "
                  f"{_describe(root)}. Expected one of: {split}A/ + {split}B/ (unpaired, or paired when the file "
                  f"names match) or {split}/ (paired side-by-side A|B images)")
