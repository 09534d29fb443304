"""TensorFlow Datasets through random access, without TensorFlow (``dataset="tfds:<name>[/<config>]"``).

Owns: opening prepared TFDS datasets with ``tfds.data_source`` (ArrayRecord
files read by index: no TensorFlow needed), turning records into images, and
the error messages for unknown or unprepared datasets.

- ``cycle_gan/<config>`` (horse2zebra, facades, maps, ...): the splits
  ``<split>A`` / ``<split>B`` are the two unpaired domains (feature ``image``).
- Any other dataset: set ``config.tfds_features = "<A feature>,<B feature>"``
  to use two image features of each record as an aligned pair (e.g.
  ``"image,segmentation_mask"``); ``config.tfds_<split>_split`` renames the
  TFDS split used for ``split`` (e.g. ``tfds_test_split="validation"``).

Preparing a dataset that is not yet on disk (download + conversion) is
:func:`prepare` (``jaxgan prepare tfds:NAME[/CONFIG] [--data_dir DIR]``): it
asks TFDS for ArrayRecord files, the format read here, and needs TensorFlow for
that step only (``pip install -e ".[tfds]"``). With TensorFlow installed and
``config.tfds_download`` True (the default) a missing dataset is also prepared
on first use. ``config.tfds_data_dir`` overrides TFDS's data directory
(default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
"""
from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from jaxgan.data.image_io import DataError
from jaxgan.data.sources import RandomAccess, SplitData, register, split_from_pairs

_TF_INSTALL = 'pip install -e ".[tfds]"'
_PREPARE_HINT = ("prepare it once with: jaxgan prepare tfds:{name}{data_dir_arg} (needs TensorFlow for that step "
                 f"only: {_TF_INSTALL})")


def _prepare_hint(name: str, data_dir: str | None) -> str:
  return _PREPARE_HINT.format(name=name, data_dir_arg=f" --data_dir {data_dir}" if data_dir else "")


def tensorflow_available() -> bool:
  """True when TensorFlow can be imported (needed only to prepare most TFDS datasets, never to read them)."""
  return importlib.util.find_spec("tensorflow") is not None


def _tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - tfds is a dependency
    raise DataError(f"tfds datasets need tensorflow-datasets: pip install tensorflow-datasets ({e})") from e
  return tfds


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return text[0] if text else type(e).__name__


def _array_record_kwargs() -> dict:
  return {"file_format": "array_record"}


def open_data_source(name: str, split: str, data_dir: str | None, download: bool):
  """``tfds.data_source`` for ``name``/``split`` with errors that say what to do."""
  tfds = _tfds()
  spec = f"tfds:{name}"
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            builder_kwargs=_array_record_kwargs())
  except Exception as first:  # pylint: disable=broad-except  # diagnosed below
    error = first
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError, bad config, ...
    raise DataError(f"dataset={spec!r}: TFDS does not know {name!r}: {_first_line(e)}") from e
  where = str(builder.data_dir)
  if not builder.is_prepared():
    if not download:
      raise DataError(f"dataset={spec!r}: TFDS dataset {name!r} is not prepared in {where!r} "
                      f"(tfds_download=False); " + _prepare_hint(name, data_dir))
    if not tensorflow_available():
      raise DataError(f"dataset={spec!r}: TFDS dataset {name!r} is not prepared in {where!r}; "
                      + _prepare_hint(name, data_dir))
    prepare(name, data_dir)
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                            builder_kwargs=_array_record_kwargs())
  splits = list(builder.info.splits.keys())
  if splits and split not in splits:
    raise DataError(f"dataset={spec!r}: TFDS dataset {name!r} has no split {split!r}; it has {splits}")
  if not _is_array_record(builder):
    raise DataError(f"dataset={spec!r}: " + _not_array_record(name, builder, data_dir))
  raise DataError(f"dataset={spec!r}: cannot open split {split!r}: {_first_line(error)}") from error


def _is_array_record(builder) -> bool:
  info = builder.info
  formats = [getattr(info, "file_format", None)] + list(getattr(info, "alternative_file_formats", None) or [])
  return any("array_record" in str(f).lower() for f in formats if f is not None)


def _not_array_record(name: str, builder, data_dir: str | None) -> str:
  fmt = getattr(builder.info, "file_format", None)
  fmt = getattr(fmt, "value", fmt)   # FileFormat.TFRECORD -> "tfrecord"
  return (f"TFDS dataset {name!r} in {str(builder.data_dir)!r} is stored as {fmt or 'TFRecord'}, which has no "
          "random access (jaxgan reads ArrayRecord). jaxgan does not replace it: remove that folder (TFDS keeps "
          "the downloaded archives in its downloads/ folder, so nothing is fetched again) or choose another "
          f"--data_dir, then run: jaxgan prepare tfds:{name}" + (f" --data_dir {data_dir}" if data_dir else ""))


def prepare(name: str, data_dir: str | None = None) -> dict[str, Any]:
  """Download and prepare TFDS dataset ``name`` (``NAME[/CONFIG]``) as ArrayRecord files, readable here.

  Returns ``{"dataset": "tfds:NAME", "data_dir": data_dir (None: TFDS's
  default), "path": the dataset's version folder, "splits": {split: number of
  records}, "already_prepared": bool}``; every split is opened
  through :func:`open_data_source` afterwards, so a success means jaxgan can
  read it. Nothing already on disk is replaced: a dataset prepared earlier as
  TFRecord is refused with what to do. Raises :class:`DataError` when TFDS
  does not know ``name`` or TensorFlow (needed by TFDS to encode most image
  datasets) is missing.
  """
  tfds = _tfds()
  spec = f"tfds:{name}"
  try:   # first as found on disk (TFDS refuses to open a TFRecord copy as ArrayRecord)
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except  # DatasetNotFoundError, bad config, ...
    raise DataError(f"{spec}: TFDS does not know {name!r}: {_first_line(e)}") from e
  already = bool(builder.is_prepared())
  if already and not _is_array_record(builder):
    raise DataError(f"{spec}: " + _not_array_record(name, builder, data_dir))
  if not already:
    if not tensorflow_available():
      raise DataError(f"{spec}: preparing a TFDS dataset needs TensorFlow (only for this step; training reads "
                      f"the result without it): {_TF_INSTALL}, then rerun. Nothing was written.")
    builder = tfds.builder(name, data_dir=data_dir, **_array_record_kwargs())
    builder.download_and_prepare(file_format="array_record")
    builder = tfds.builder(name, data_dir=data_dir, **_array_record_kwargs())   # re-read what was written
    if not _is_array_record(builder):
      raise DataError(f"{spec}: TFDS wrote {builder.info.file_format}, not ArrayRecord, in {str(builder.data_dir)!r}")
  splits = {str(s): len(open_data_source(name, str(s), data_dir, download=False)) for s in builder.info.splits}
  return {"dataset": spec, "data_dir": data_dir, "path": str(builder.data_dir), "splits": splits,
          "already_prepared": already}


def record_image(value: Any, what: str) -> np.ndarray:
  """A TFDS image feature value as HxWxC uint8 / uint16 / float32 in [0, 1]."""
  arr = np.asarray(value)
  if arr.ndim == 2:
    arr = arr[:, :, None]
  if arr.ndim != 3:
    raise DataError(f"{what}: expected an image (HxW or HxWxC), got shape {arr.shape}")
  if arr.dtype == np.bool_:
    return arr.astype(np.uint8) * np.uint8(255)
  if arr.dtype in (np.uint8, np.uint16):
    return arr
  if np.issubdtype(arr.dtype, np.integer):
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
      raise DataError(f"{what}: integer image with values in [{lo}, {hi}], expected 0..255 or 0..65535")
    return arr.astype(np.uint8 if hi <= 255 else np.uint16)
  return np.clip(arr.astype(np.float32), 0.0, 1.0)


class TfdsDomain(RandomAccess):
  """One image feature of one TFDS split, as a :class:`~jaxgan.data.sources.Domain`."""

  def __init__(self, source, feature: str, label: str):
    self.source, self.feature, self.label = source, feature, label

  def __len__(self) -> int:
    return len(self.source)

  def load(self, index: int) -> np.ndarray:
    record = self.source[int(index)]
    if self.feature not in record:
      raise DataError(f"{self.label}: record has no feature {self.feature!r}; it has {sorted(record)}")
    return record_image(record[self.feature], self.name(index))

  def name(self, index: int) -> str:
    return f"{self.label}[{index}]"


class TfdsPairs(RandomAccess):
  """Two image features of each record of one TFDS split, as aligned pairs."""

  def __init__(self, source, feature_a: str, feature_b: str, label: str):
    self.source, self.features, self.label = source, (feature_a, feature_b), label

  def __len__(self) -> int:
    return len(self.source)

  def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    record = self.source[int(index)]
    missing = [f for f in self.features if f not in record]
    if missing:
      raise DataError(f"{self.label}: tfds_features names {missing} but the records have {sorted(record)}")
    return tuple(record_image(record[f], f"{self.name(index)} {f}") for f in self.features)

  def name(self, index: int) -> str:
    return f"{self.label}[{index}]"


@register("tfds")
def open_tfds(name: str, split: str, config: Any) -> SplitData:
  """The :class:`SplitData` of ``tfds:<name>`` for ``split`` (see the module docstring)."""
  data_dir = config.get("tfds_data_dir", None) or None
  download = bool(config.get("tfds_download", True))
  features = [f.strip() for f in str(config.get("tfds_features", "") or "").split(",") if f.strip()]
  tfds_split = str(config.get(f"tfds_{split}_split", "") or split)
  if features:
    if len(features) != 2:
      raise DataError(f"tfds_features={config.get('tfds_features')!r}: expected two feature names 'A,B'")
    source = open_data_source(name, tfds_split, data_dir, download)
    label = f"tfds:{name}[{tfds_split}]"
    return split_from_pairs(f"{label} ({len(source)} records, {features[0]} -> {features[1]})",
                            TfdsPairs(source, features[0], features[1], label))
  if name.split("/")[0] == "cycle_gan":
    src_a = open_data_source(name, tfds_split + "A", data_dir, download)
    src_b = open_data_source(name, tfds_split + "B", data_dir, download)
    return SplitData(f"tfds:{name}[{tfds_split}A: {len(src_a)}, {tfds_split}B: {len(src_b)}]",
                     TfdsDomain(src_a, "image", f"tfds:{name}[{tfds_split}A]"),
                     TfdsDomain(src_b, "image", f"tfds:{name}[{tfds_split}B]"),
                     why_unpaired=f"tfds:{name} has unpaired {tfds_split}A/{tfds_split}B splits")
  try:   # an unknown name is the more useful error
    _tfds().builder(name, data_dir=data_dir)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"dataset='tfds:{name}': TFDS does not know {name!r}: {_first_line(e)}") from e
  raise DataError(f"dataset='tfds:{name}': say which two image features form a pair with "
                  "config.tfds_features='<A feature>,<B feature>' (only cycle_gan/* needs none)")
