"""Shared pytest fixtures and helpers.

``require_torch()`` gives the tests that compare against PyTorch their torch
module: without torch they are skipped, unless ``JAXGAN_REQUIRE_TORCH=1`` is set
(CI with torch installed), in which case a missing torch is a failure. Tests that
need torch also carry the ``torch`` marker (registered in ``pyproject.toml``), so
``pytest -m "not torch"`` leaves them out.
"""
from __future__ import annotations

import os

import pytest

# The CLI calibrates the layer forms per processor (jaxgan.cpu.calibration); in the suite every run
# uses the fixed default, so results do not depend on a timing. tests/test_calibration.py turns it on.
# Likewise the CLI's cache of whole compiled steps (jaxgan.cpu.aot_cache), which cannot see a test's
# monkeypatches; tests/test_aot_cache.py turns it on. Subprocesses that must run as a user's would
# (tests/test_multiprocess.py) take user_environment(), which leaves these out.
TEST_ONLY_ENV = tuple(k for k in ("JAXGAN_CALIBRATION", "JAXGAN_AOT_CACHE") if k not in os.environ)
for _key in TEST_ONLY_ENV:
  os.environ[_key] = "0"


def user_environment(**overrides: str) -> dict:
  """``os.environ`` without the variables this file set for the suite, plus ``overrides``: the environment
  of a user who runs the same command (a variable the user had set before pytest is kept)."""
  env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_ENV}
  env.update(overrides)
  return env


def torch_required_by_env() -> bool:
  """True when ``JAXGAN_REQUIRE_TORCH`` asks for torch-needing tests to fail, not skip."""
  return os.environ.get("JAXGAN_REQUIRE_TORCH", "").strip().lower() in ("1", "true", "yes")


def require_torch():
  """Return the ``torch`` module; skip the calling test/module when it is missing.

  Callable at module level (the skip then covers the whole module) or inside a
  test. With ``JAXGAN_REQUIRE_TORCH=1`` a missing torch fails instead of skipping.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - depends on the environment
    if torch_required_by_env():
      pytest.fail(f"JAXGAN_REQUIRE_TORCH=1 but torch cannot be imported: {e}", pytrace=False)
    pytest.skip(f"torch is not installed ({e}); install jaxgan[torch] to run the PyTorch parity tests",
                allow_module_level=True)
  return torch


@pytest.fixture
def torch_module():
  """Fixture form of :func:`require_torch`."""
  return require_torch()
