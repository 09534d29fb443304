"""The registry of training objectives: the one place that knows which models exist.

An objective is a module with the contract of :mod:`jaxgan.pix2pix` and
:mod:`jaxgan.cyclegan`:

* ``init(rng, config, batch) -> state``, ``train_step(state, batch, *, config) -> (state, metrics)``,
  ``translate(state, images, *, config, direction, eval_mode, rng) -> images`` (pure);
* ``DIRECTIONS``: the directions ``translate`` accepts (``("AtoB",)`` for one generator);
* ``GENERATOR_FOR``: direction -> the name of the generator that ``params`` holds for it;
* ``PAIRED``: whether training needs aligned A/B pairs;
* ``STATE_KEYS``: config keys, beyond the networks' (:data:`jaxgan.checkpoint.STRUCTURAL_KEYS`), that fix the
  state's shapes (a checkpoint with other values cannot be resumed);
* ``ONE_IMAGE_SIZE``: why training needs all images of one size ('' when nothing does but batching).

The training loop, inference, checkpoint restore and the PyTorch import ask this
registry (:func:`get`, :func:`abstract_state`) instead of testing
``config.model``; adding an objective means adding its module and one line here.
The registry names each module by its import path and :func:`get` imports it
(``importlib``), so this file needs no import of the objectives; it is not a
lazy import: the package's ``__init__`` imports pix2pix and cyclegan (and with
them JAX), so importing any ``jaxgan`` module loads them.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping, Sequence

import jax
import numpy as np

# name (config.model) -> module implementing the objective
OBJECTIVES: dict[str, str] = {
    "pix2pix": "jaxgan.pix2pix",
    "cyclegan": "jaxgan.cyclegan",
}
NAMES: tuple[str, ...] = tuple(OBJECTIVES)


def get(name: str) -> ModuleType:
  """The objective module registered as ``name`` (``config.model``); ValueError naming the choices."""
  if name not in OBJECTIVES:
    raise ValueError(f"config.model must be one of {NAMES}, got {name!r}")
  return importlib.import_module(OBJECTIVES[name])


def for_config(config: Any) -> ModuleType:
  """The objective of ``config.model``."""
  return get(str(config.model))


def abstract_state(config: Any, batch_shapes: Mapping[str, Sequence[int]]) -> Any:
  """ShapeDtypeStructs of the state ``init`` builds for ``config`` and batches shaped ``batch_shapes``
  (``{"A": [N,H,W,C], "B": [...]}``); nothing is computed."""
  objective = for_config(config)
  dummy = {k: np.zeros([1] + list(batch_shapes[k][1:]), np.float32) for k in ("A", "B")}
  return jax.eval_shape(lambda: objective.init(jax.random.PRNGKey(0), config, dummy))
