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
* ``ONE_IMAGE_SIZE``: why training needs all images of one size ('' when nothing does but batching);
* ``CONFIG_KEYS``: the objective's own config keys with their defaults (pix2pix ``lambda_L1``; CycleGAN
  ``lambda_A``, ``pool_size``, ...): its base config holds them, and a config of another objective that
  sets one is refused naming the key and this objective (:func:`jaxgan.config.validate`);
* ``CONFIG_DEFAULTS``: its defaults of the shared keys (``netG``, ``norm``, ``gan_mode``, ``dataset``, ...);
* ``IMPORT_SLOTS`` (optional): the reference's saved-network roles -> its state's slots, for
  ``jaxgan import-torch`` / ``jaxgan pretrained``; an objective without it is not offered there.

docs/objectives.md says how to add one (module, registry line, recipes, tests).

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
    "cut": "jaxgan.cut",
}
# NAMES (the registered names, in order) is read from OBJECTIVES on every access (module __getattr__), so an
# objective registered at run time (a plugin, a test's monkeypatch) is seen everywhere.


def names() -> tuple[str, ...]:
  """The registered names (``config.model`` values), in registration order."""
  return tuple(OBJECTIVES)


def __getattr__(attr: str) -> Any:
  if attr == "NAMES":
    return names()
  raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


class RegisteredNames(Sequence):
  """A live, read-only view of the registered names for tables built at import (choices, help texts)."""

  def __init__(self, keep=lambda name: True):
    self._keep = keep

  def _names(self) -> tuple[str, ...]:
    return tuple(n for n in OBJECTIVES if self._keep(n))

  def __getitem__(self, i):
    return self._names()[i]

  def __len__(self) -> int:
    return len(self._names())

  def __contains__(self, name: object) -> bool:
    return name in self._names()

  def __iter__(self):
    return iter(self._names())

  def __eq__(self, other: object) -> bool:
    return tuple(self) == tuple(other) if isinstance(other, (tuple, list, RegisteredNames)) else NotImplemented

  def __hash__(self) -> int:
    return hash(self._names())

  def __repr__(self) -> str:
    return repr(self._names())


def get(name: str) -> ModuleType:
  """The objective module registered as ``name`` (``config.model``); ValueError naming the choices."""
  if name not in OBJECTIVES:
    raise ValueError(f"config.model must be one of {names()}, got {name!r}")
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


def config_keys(name: str) -> dict[str, Any]:
  """``name``'s own config keys with their defaults (its module's ``CONFIG_KEYS``)."""
  return dict(getattr(get(name), "CONFIG_KEYS", {}))


def key_owners() -> dict[str, tuple[str, ...]]:
  """Every objective-specific config key -> the objectives that declare it (registration order)."""
  owners: dict[str, list[str]] = {}
  for name in OBJECTIVES:
    for key in config_keys(name):
      owners.setdefault(key, []).append(name)
  return {k: tuple(v) for k, v in owners.items()}


def foreign_keys(config: Any) -> list[tuple[str, tuple[str, ...]]]:
  """``(key, owners)`` for each key of ``config`` declared by other objectives and not by ``config.model``'s."""
  model = str(config.get("model", ""))
  own = config_keys(model) if model in OBJECTIVES else {}
  return [(k, owners) for k, owners in key_owners().items() if k in config and k not in own]


def importable() -> tuple[str, ...]:
  """The objectives with an import plan (``IMPORT_SLOTS``): the ``--model`` choices of import-torch / pretrained."""
  return tuple(n for n in OBJECTIVES if getattr(get(n), "IMPORT_SLOTS", None))
