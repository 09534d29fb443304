"""FID and KID of a trained model on a split of its dataset (the CUT repository's protocol).

CycleGAN (unpaired): every test A image is translated with the test-time
preprocessing, and the FID / KID of those fake B images against the real test B
images is ``fid`` / ``kid`` / ``kid_std``; the reverse direction (fake A from
every test B against the real test A) is ``BtoA_fid``, ... Each image of a domain
counts once (an unpaired split repeats the smaller domain to the larger one's
length; the repeats are left out). pix2pix (paired): fake B against real B. The
directions are the objective's ``DIRECTIONS`` (one generator: ``fid`` only).

Both sides are quantised to 8 bits as ``jaxgan translate`` writes images
(``round((x + 1) * 127.5)``), so ``jaxgan translate`` followed by ``jaxgan fid``
on the written folders gives the same numbers. Gray images are replicated to
RGB and alpha dropped, as pytorch-fid's ``convert('RGB')`` of such files.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from jaxgan import fid

log = logging.getLogger(__name__)
DEFAULT_BATCH_SIZE = 50   # images per Inception batch during training (pytorch-fid's default)


def to_fid_rgb(images: np.ndarray) -> np.ndarray:
  """NHWC in [-1, 1] with 1, 3 or 4 channels -> uint8 RGB ``[N, H, W, 3]``, as the written PNGs hold."""
  x = np.asarray(images, np.float32)
  c = x.shape[-1]
  if c not in (1, 3, 4):
    raise ValueError(f"FID needs gray, RGB or RGBA images; these have {c} channels")
  u8 = np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
  return np.repeat(u8, 3, axis=-1) if c == 1 else u8[..., :3]


class FeatureStream:
  """Collects images in chunks of the extractor's batch (so small translate batches pad nothing)."""

  def __init__(self, extractor: fid.FeatureExtractor):
    self.extractor, self._pending, self._feats = extractor, [], []

  def add(self, images_u8: np.ndarray) -> None:
    self._pending.extend(np.asarray(images_u8))
    while len(self._pending) >= self.extractor.batch_size:
      chunk, self._pending = self._pending[:self.extractor.batch_size], self._pending[self.extractor.batch_size:]
      self._feats.append(self.extractor(np.stack(chunk)))

  def features(self) -> np.ndarray:
    if self._pending:
      self._feats.append(self.extractor(np.stack(self._pending)))
      self._pending = []
    return np.concatenate(self._feats) if self._feats else np.zeros((0, fid.FEATURE_DIM), np.float32)


def scores(fake: np.ndarray, real: np.ndarray, prefix: str = "") -> dict[str, float]:
  """``{prefix}fid``, ``{prefix}kid``, ``{prefix}kid_std`` of two feature sets."""
  mu1, s1 = fid.feature_statistics(fake)
  mu2, s2 = fid.feature_statistics(real)
  k, k_std = fid.kid(fake, real)
  return {f"{prefix}fid": round(fid.frechet_distance(mu1, s1, mu2, s2), 6), f"{prefix}kid": round(k, 8),
          f"{prefix}kid_std": round(k_std, 8)}


def model_fid(config: Any, state: Any, extractor: fid.FeatureExtractor, *, split: str = "test",
              max_batches: int = -1, eval_mode: bool = False) -> dict[str, float]:
  """FID / KID of ``state``'s translations of ``split`` (module doc) for each direction of the objective's
  ``DIRECTIONS``: keys ``fid, kid, kid_std`` (AtoB) and ``BtoA_fid, BtoA_kid, BtoA_kid_std`` (BtoA, e.g. a
  CycleGAN's second generator). Needs no pairs: works on an unaligned split for every objective.
  ``max_batches`` limits the batches read (-1: all)."""
  # pylint: disable=import-outside-toplevel,protected-access
  from jaxgan import data, inference, objectives
  model = objectives.for_config(config)
  pipeline = data.create_pipeline(config, split=split, shuffle=False, process_index=0, process_count=1,
                                  num_epochs=1)
  split_data = pipeline.make_example.data
  if pipeline.paired:
    counts = {"A": len(split_data.pairs), "B": len(split_data.pairs)}
  else:
    counts = {"A": len(split_data.domain_a), "B": len(split_data.domain_b)}
  if str(config.get("direction", "AtoB")) == "BtoA":
    counts = {"A": counts["B"], "B": counts["A"]}
  directions = inference.model_directions(model)   # the objective's DIRECTIONS, in its order
  fns = {d: inference._translate_fn(model, config, d, eval_mode) for d in directions}
  source, target = inference.SOURCE, inference.TARGET
  fakes = {d: FeatureStream(extractor) for d in directions}
  reals = {side: FeatureStream(extractor) for side in {target[d] for d in directions}}
  for ids, batch in inference._split_batches(pipeline, max_batches):
    for d in directions:
      keep = ids < counts[source[d]]   # each source image once
      if keep.any():
        fake = np.asarray(fns[d](state, batch[source[d]], ids))
        fakes[d].add(to_fid_rgb(fake[keep]))
    for side, stream in reals.items():
      keep = ids < counts[side]
      if keep.any():
        stream.add(to_fid_rgb(batch[side][keep]))
  out = {}
  for d in directions:
    fake, real = fakes[d].features(), reals[target[d]].features()
    if min(len(fake), len(real)) < 2:
      raise data.DataError(f"FID of split {split!r}: {len(fake)} translated and {len(real)} real images; "
                           "at least 2 of each are needed")
    out.update(scores(fake, real, inference.PREFIX[d]))
  return out


class LazyFID:
  """For the training loop: the weights loaded and the extractor built on first use, or the reason not.

  ``weights=None`` looks where :func:`jaxgan.fid_io.load_weights` looks, without downloading
  (a training run does not fetch 100 MB unasked); when none are found FID is skipped with
  one message.
  """

  def __init__(self, weights: str | None = None, batch_size: int | None = None, download: bool = False):
    self.weights, self.download = weights, download
    self.batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    self._extractor = None
    self.error: str | None = None
    self._told = False

  def extractor(self) -> fid.FeatureExtractor | None:
    if self._extractor is None and self.error is None:
      from jaxgan import fid_io  # pylint: disable=import-outside-toplevel
      try:
        self._extractor = fid.FeatureExtractor(fid_io.load_weights(self.weights, download=self.download),
                                               batch_size=self.batch_size)
      except fid.WeightsError as e:
        self.error = str(e)
    return self._extractor

  def add_to(self, results: dict, config: Any, state: Any, *, say, max_batches: int = -1,
             eval_mode: bool = False) -> dict:
    """``results`` with the FID keys of :func:`model_fid` on the test split added; when there are no
    weights, ``say(message)`` once and ``results`` unchanged."""
    extractor = self.extractor()
    if extractor is None:
      if not self._told:
        say(f"FID skipped (config.fid_every_steps): {self.error}")
        self._told = True
      return results
    results.update(model_fid(config, state, extractor, split="test", max_batches=max_batches, eval_mode=eval_mode))
    return results
