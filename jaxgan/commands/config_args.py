"""Config files and ``--config.KEY=VALUE`` overrides for ``jaxgan train`` (ml_collections recipes).

A recipe is a Python file with ``get_config([ARG])`` returning a ConfigDict;
``--config`` takes jaxgan's own recipes by name (``cyclegan_demo``: the files of
the repository's ``configs/`` folder, installed as the package
``jaxgan.configs``) or any file by path, and ``NAME:ARG`` / ``FILE.py:ARG``
passes ARG. Overrides are parsed by the
type of the key's current value; unknown keys are refused with close matches
and the full list; the result is checked by :func:`jaxgan.config.validate`.
"""
from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from typing import Any, Sequence

import ml_collections

from jaxgan import config as config_lib
from jaxgan import objectives
from jaxgan.commands.base import UsageError


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Load a recipe and return its ``get_config([ARG])``.

  ``spec`` is ``NAME[:ARG]`` for one of jaxgan's recipes (:func:`recipe_names`;
  ``NAME.py`` also, when no such file is here) or ``PATH.py[:ARG]`` for a file;
  an existing file wins over a recipe of the same name.
  """
  path, _, arg = spec.partition(":") if not re.match(r"^[A-Za-z]:[\\/]", spec) else (spec, "", "")
  file = Path(path)
  if not file.is_file():
    name = file.name[:-3] if file.name.endswith(".py") else file.name
    recipe = _recipe_file(name) if str(file.parent) == "." else None
    if recipe is None:
      what = "no such file" if file.suffix == ".py" or str(file.parent) != "." else "no recipe or file named"
      raise UsageError(f"--config: {what} {path!r}" + _nearby_configs(file))
    file = recipe
  module_spec = importlib.util.spec_from_file_location(f"jaxgan_config_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - a broken config file is a usage error
    raise UsageError(f"--config {path}: cannot load it: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_config"):
    raise UsageError(f"--config {path}: the file defines no get_config()")
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except (ValueError, TypeError, KeyError) as e:
    raise UsageError(f"--config {spec}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f"--config {path}: get_config() must return an ml_collections.ConfigDict")
  return config


def recipes_folder() -> Path | None:
  """The folder of jaxgan's recipes: the installed ``jaxgan.configs``, else a checkout's ``configs/``."""
  try:
    from jaxgan import configs  # pylint: disable=import-outside-toplevel
    return Path(next(iter(configs.__path__)))
  except ImportError:   # jaxgan run from a checkout on PYTHONPATH, not installed
    import jaxgan  # pylint: disable=import-outside-toplevel
    folder = Path(jaxgan.__file__).resolve().parent.parent / "configs"
    return folder if (folder / "__init__.py").is_file() else None


def recipe_names() -> list[str]:
  """The names ``--config`` accepts for jaxgan's own recipes, e.g. ``cyclegan_demo``."""
  folder = recipes_folder()
  return sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_")) if folder else []


def _recipe_file(name: str) -> Path | None:
  folder = recipes_folder()
  return folder / f"{name}.py" if folder and name in recipe_names() else None


def _nearby_configs(file: Path) -> str:
  names = recipe_names()
  close = difflib.get_close_matches(file.stem, names, n=1)
  hint = f"; did you mean --config {close[0]}?" if close else ""
  if names:
    hint += f"; jaxgan's recipes (by name, e.g. --config {names[0]}): {', '.join(names)}"
  folder = file.parent
  if folder.is_dir() and (str(folder) != "." or file.suffix == ".py"):
    files = sorted(p.name for p in folder.glob("*.py") if not p.name.startswith("_"))
    if files:
      hint += f"; files in {folder}/: {', '.join(files)}"
  return hint


def parse_value(key: str, text: str, default: Any) -> Any:
  """Parse ``text`` as the type of ``default`` (bool, int, float or str; a tuple/list default takes
  comma-separated items of its first item's type, e.g. an objective's layer list ``0,4,8``)."""
  if isinstance(default, (tuple, list)):
    item = default[0] if len(default) else ""
    parts = [t.strip() for t in text.strip().strip("()[]").split(",") if t.strip()]
    return type(default)(parse_value(key, t, item) for t in parts)
  if isinstance(default, bool):
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
      return True
    if low in ("false", "0", "no", "off"):
      return False
    raise UsageError(f"--config.{key}={text!r}: expected true or false")
  if isinstance(default, int):
    try:
      return int(text)
    except ValueError:
      try:
        f = float(text)
      except ValueError:
        f = None
      if f is not None and f.is_integer():
        return int(f)
      raise UsageError(f"--config.{key}={text!r}: expected an integer") from None
  if isinstance(default, float):
    try:
      return float(text)
    except ValueError:
      raise UsageError(f"--config.{key}={text!r}: expected a number") from None
  return text


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separate ``--config.KEY=VALUE`` / ``--config.KEY VALUE`` from the other arguments."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      body = arg[len("--config."):]
      if "=" in body:
        key, value = body.split("=", 1)
      elif i + 1 < len(argv):
        key, value = body, argv[i + 1]
        i += 1
      else:
        raise UsageError(f"{arg}: missing value (write {arg}=VALUE)")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]
                    ) -> ml_collections.ConfigDict:
  """Set each override on ``config``; unknown keys are refused with close matches and the full list, a key of
  another objective naming its owner. ``--config.model=M`` is applied first and switches the objective's own
  keys (:func:`jaxgan.config.with_model`), so M's keys may follow it in any order."""
  models = [text for key, text in overrides if key == "model"]
  if models:
    try:
      config = config_lib.with_model(config, models[-1])
    except ValueError as e:
      raise UsageError(f"--config.model: {e}") from None
  for key, text in overrides:
    if key == "model":
      continue
    try:
      default = config_lib.key_default(config, key)
    except ValueError as e:
      raise UsageError(f"--config.{key}: {e}") from None
    except KeyError:
      known = sorted(set(config.keys()) | set(config_lib.OPTIONAL_KEYS))
      close = difflib.get_close_matches(key, known + list(objectives.key_owners()), n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise UsageError(f"--config.{key}: unknown config key.{hint} Valid keys: {', '.join(known)}")
    value = parse_value(key, text, default)
    with config.unlocked():
      config[key] = value
  validate_config(config)
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """:func:`jaxgan.config.validate` and :func:`jaxgan.checks.validate_run_config` (crop_size against the
  generator's stride, finite positive lr, num_train_steps) with their ValueError turned into a UsageError."""
  from jaxgan import checks  # pylint: disable=import-outside-toplevel  (imports JAX: not for --help)
  try:
    config_lib.validate(config)
    checks.validate_run_config(config)
  except ValueError as e:
    raise UsageError(str(e)) from None
