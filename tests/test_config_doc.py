"""docs/config.md is the output of scripts/make_config_doc.py, and it names every key a run can set.

Pure Python plus importing jaxgan (no JAX computation): a second or two.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from jaxgan import config as jaxgan_config
from jaxgan import objectives

ROOT = Path(__file__).resolve().parents[1]


def _script():
  spec = importlib.util.spec_from_file_location("make_config_doc", ROOT / "scripts" / "make_config_doc.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_config_doc_is_up_to_date():
  page = ROOT / "docs" / "config.md"
  assert page.exists(), "docs/config.md is missing: run python scripts/make_config_doc.py"
  assert page.read_text(encoding="utf-8") == _script().render(), (
      "docs/config.md is out of date with jaxgan/config.py or an objective's CONFIG_KEYS: "
      "run python scripts/make_config_doc.py")


def test_config_doc_names_every_key_with_its_default():
  text = _script().render()
  rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
          for line in text.splitlines() if line.startswith("| `")}
  keys = set(jaxgan_config.OPTIONAL_KEYS)
  for name in objectives.names():
    keys |= set(jaxgan_config.get_base_config(name).keys())
  missing = sorted(keys - set(rows))
  assert missing == [], f"keys missing from docs/config.md: {missing}"
  base = jaxgan_config.get_base_config("pix2pix")
  for key in ("load_size", "lr", "checkpoint_every_steps", "lambda_L1"):
    assert rows[key] == f"`{base[key]!r}`" or rows[key] == f"`{base[key]}`", (key, rows[key])
  assert rows["bn_group_size"] == "`0`" and "groups of this many" in text
