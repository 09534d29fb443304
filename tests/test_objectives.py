"""The objective registry's contract: every registered objective trains, resumes, evaluates on an unaligned
test split, translates each of its DIRECTIONS and gets FID; and a new objective needs only its module and one
registry line (a throwaway one-generator objective registered here runs through the real code paths).

Per-objective config keys: a key of another objective is refused by name; configs saved before the keys were
split (holding every objective's keys) still load and resume.
"""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from jaxgan import cli, fid_eval, inference, objectives, pix2pix, train
from jaxgan import config as config_lib
from jaxgan.commands import config_args
from jaxgan.commands.base import UsageError

# Shared keys only: an objective's own keys keep their defaults (CONFIG_KEYS), so a new one runs here unchanged.
TINY = {"netG": "resnet_1blocks", "ngf": 4, "ndf": 4, "n_layers_D": 1, "netD": "n_layers", "load_size": 32,
        "crop_size": 32, "batch_size": 2, "num_train_steps": 2, "log_every_steps": 1, "checkpoint_every_steps": 1,
        "sample_every_steps": 1, "sample_rows": 2, "eval_batches": -1, "num_workers": 0, "seed": 0}
# FID of a handful of 6-d fake features: singular covariances are expected, their warning is noise here
pytestmark = pytest.mark.filterwarnings("ignore:Matrix is singular")
TEST_A, TEST_B = 4, 2   # an unaligned test split: other counts, other names (batches of 2: one compiled shape)

if not jax.config.jax_compilation_cache_dir:   # as tests/test_train.py: same programs compile once per machine
  os.environ.setdefault("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache")
  cli.enable_compilation_cache()


def _write(folder: Path, names, seed: int) -> None:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for name in names:
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{name}.png")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
  """trainA/ trainB/ aligned by name (PAIRED objectives train on it too); testA/ testB/ unaligned."""
  root = tmp_path_factory.mktemp("objectives_data")
  _write(root / "trainA", [f"t{i}" for i in range(4)], 1)
  _write(root / "trainB", [f"t{i}" for i in range(4)], 2)
  _write(root / "testA", [f"a{i}" for i in range(TEST_A)], 3)
  _write(root / "testB", [f"b{i}" for i in range(TEST_B)], 4)
  return root


def tiny(name: str, data: Path, **overrides) -> ml_collections.ConfigDict:
  c = config_lib.get_base_config(name)
  c.update({**TINY, "dataset": f"folder:{data}", **overrides})
  config_lib.validate(c)
  return c


class FakeExtractor:
  """Stands in for the Inception network: 6 colour statistics per image; counts the images it saw."""
  batch_size = 4

  def __init__(self):
    self.seen = 0

  def __call__(self, images_u8: np.ndarray) -> np.ndarray:
    x = np.asarray(images_u8, np.float32) / 255.0
    self.seen += len(x)
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


def check_contract(name: str, data: Path, tmp_path: Path) -> None:
  """Train 2 steps with a stop and resume after step 1, evaluate on the unaligned test split, translate each
  direction, FID, sample grid: everything through the library's real paths."""
  model = objectives.get(name)
  config = tiny(name, data)
  for attr in ("DIRECTIONS", "GENERATOR_FOR", "PAIRED", "STATE_KEYS", "ONE_IMAGE_SIZE", "CONFIG_KEYS"):
    assert hasattr(model, attr), f"{model.__name__} lacks {attr} (docs/objectives.md)"
  assert set(model.GENERATOR_FOR) == set(model.DIRECTIONS)
  workdir = tmp_path / name
  first = train.train_and_evaluate(config, workdir, stop_at_step=1)
  assert first.step == 1 and first.preempted
  done = train.train_and_evaluate(config, workdir)   # resumes from step 1
  assert done.step == 2 and not done.preempted
  ev = done.evaluation
  assert ev["paired"] is False and ev["num_images"] == max(TEST_A, TEST_B), ev
  assert not any(k.endswith("l1") and "cycle" not in k for k in ev), ev   # no pairs: no ground-truth metric
  if set(model.DIRECTIONS) == {"AtoB", "BtoA"}:
    assert np.isfinite(ev["cycle_A_l1"]) and np.isfinite(ev["cycle_B_l1"]), ev
  else:
    assert "note" in ev and "FID" in ev["note"], ev
  state, saved, step = inference.load_for_inference(workdir)
  assert step == 2 and saved.model == name
  train.train_and_evaluate(config, tmp_path / f"{name}_straight")   # the same 2 steps without a stop: resume is exact
  straight = inference.load_for_inference(tmp_path / f"{name}_straight")[0]
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, jax.device_get(straight.params),
                                                       jax.device_get(state.params)))
  for d in model.DIRECTIONS:
    assert model.GENERATOR_FOR[d] in state.params
    side = inference.SOURCE[d]
    files = inference.list_inputs(data / f"test{side}")
    targets = inference.plan_outputs(files, tmp_path / f"out_{name}_{d}", overwrite=False)
    assert inference.translate_files(state, saved, files, targets, direction=d, batch_size=2) == len(files)
    assert all(t.is_file() for t in targets)
  extractor = FakeExtractor()
  scores = fid_eval.model_fid(saved, state, extractor)
  assert set(scores) == {inference.PREFIX[d] + k for d in model.DIRECTIONS for k in ("fid", "kid", "kid_std")}
  assert all(np.isfinite(v) for v in scores.values()), scores
  # each test image once: the fakes of every direction and the real images of each target side
  expected = sum({"A": TEST_A, "B": TEST_B}[inference.SOURCE[d]] + {"A": TEST_A, "B": TEST_B}[inference.TARGET[d]]
                 for d in model.DIRECTIONS)
  assert extractor.seen == expected
  grid = inference.visuals(model, saved, state, inference.sample_batch(saved, first_batch(saved), rows=2))
  assert {f"fake_{inference.TARGET[d]}" for d in model.DIRECTIONS} <= set(grid)


def first_batch(config) -> dict:
  return {"A": np.zeros((2, 32, 32, int(config.input_nc)), np.float32),
          "B": np.zeros((2, 32, 32, int(config.output_nc)), np.float32)}


@pytest.mark.parametrize("name", objectives.NAMES)
def test_every_registered_objective_keeps_the_contract(name, dataset, tmp_path):
  check_contract(name, dataset, tmp_path)


# ---------------------------------------------------------------- a new objective: its module and one line


def _toy_module() -> types.ModuleType:
  """A one-generator unpaired objective (AtoB only) made of pix2pix's pieces: its G and D, no L1 term unless
  its own key ``lambda_toy_L1`` asks for one (against a random B, meaningless but harmless)."""
  toy = types.ModuleType("jaxgan_test_toy_objective")

  def inner(config):
    c = ml_collections.ConfigDict(config.to_dict())
    c.model, c.lambda_L1 = "pix2pix", float(config.lambda_toy_L1)
    return c

  toy.init = lambda rng, config, batch: pix2pix.init(rng, inner(config), batch)
  toy.train_step = lambda state, batch, *, config: pix2pix.train_step(state, batch, config=inner(config))

  def translate(state, images, *, config, direction="AtoB", eval_mode=False, rng=None, ids=None):
    return pix2pix.translate(state, images, config=inner(config), direction=direction, eval_mode=eval_mode,
                             rng=rng, ids=ids)

  toy.translate = translate
  toy.DIRECTIONS, toy.GENERATOR_FOR, toy.PAIRED = ("AtoB",), {"AtoB": "G"}, False
  toy.STATE_KEYS, toy.ONE_IMAGE_SIZE = ("ema_decay",), ""
  toy.CONFIG_KEYS = {"lambda_toy_L1": 0.0}
  toy.CONFIG_DEFAULTS = {"netG": "resnet_9blocks", "norm": "instance", "no_dropout": True, "gan_mode": "lsgan"}
  return toy


@pytest.fixture
def toy(monkeypatch):
  module = _toy_module()
  monkeypatch.setitem(sys.modules, module.__name__, module)
  monkeypatch.setitem(objectives.OBJECTIVES, "toy", module.__name__)   # the one registry line
  return module


def test_a_new_one_generator_objective_needs_only_its_module_and_one_registry_line(toy, dataset, tmp_path,
                                                                                  capsys):
  assert "toy" in objectives.NAMES and "toy" in config_lib.MODELS
  assert "toy" not in objectives.importable()   # no IMPORT_SLOTS: not offered by import-torch / pretrained
  recipe = tmp_path / "toy_recipe.py"
  recipe.write_text("from jaxgan.config import get_base_config\n\ndef get_config():\n"
                    "  return get_base_config('toy')\n")
  workdir, out = tmp_path / "run", tmp_path / "out"
  overrides = [f"--config.{k}={v}" for k, v in {**TINY, "dataset": f"folder:{dataset}"}.items()]
  assert cli.main(["train", "--config", str(recipe), "--workdir", str(workdir), *overrides]) == 0
  capsys.readouterr()
  assert cli.main(["evaluate", "--workdir", str(workdir)]) == 0   # was: KeyError 'BtoA'
  ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert ev["step"] == 2 and ev["paired"] is False and ev["num_images"] == TEST_A and "note" in ev
  assert cli.main(["translate", "--workdir", str(workdir), "--input", str(dataset / "testA"),
                   "--output", str(out)]) == 0
  assert sorted(p.name for p in out.iterdir()) == [f"a{i}.png" for i in range(TEST_A)]
  assert cli.main(["translate", "--workdir", str(workdir), "--input", str(dataset / "testB"),
                   "--output", str(tmp_path / "out2"), "--direction", "BtoA"]) != 0   # one direction only
  assert "translates AtoB only" in capsys.readouterr().err
  check_contract("toy", dataset, tmp_path)


def test_import_choices_are_the_objectives_with_an_import_plan(toy, monkeypatch, capsys):
  args = ["import-torch", "x.pth", "--workdir", "w", "--model", "toy"]
  with pytest.raises(SystemExit):   # no IMPORT_SLOTS: not offered
    cli.build_parser().parse_args(args)
  assert "invalid choice: 'toy'" in capsys.readouterr().err
  monkeypatch.setattr(toy, "IMPORT_SLOTS", {"G": "G", "D": "D"}, raising=False)
  assert cli.build_parser().parse_args(args).model == "toy"
  assert f"Objectives (config.model): {', '.join(objectives.NAMES)}." in cli.build_parser().format_help()
  assert objectives.NAMES[-1] == "toy"


# ---------------------------------------------------------------- per-objective config keys


def test_base_configs_hold_the_shared_keys_and_their_objectives_own_keys_only():
  for name in objectives.NAMES:
    c = config_lib.get_base_config(name)
    own = objectives.config_keys(name)
    assert c.model == name and all(c[k] == v for k, v in own.items())
    assert all(getattr(objectives.get(name), "CONFIG_DEFAULTS", {})[k] == c[k]
               for k in getattr(objectives.get(name), "CONFIG_DEFAULTS", {}))
    assert objectives.foreign_keys(c) == []
  assert "pool_size" not in config_lib.get_base_config("pix2pix")
  assert "lambda_L1" not in config_lib.get_cyclegan_base_config()


def test_a_key_of_another_objective_is_refused_by_name():
  with pytest.raises(UsageError, match=r"--config\.pool_size: config\.pool_size is a key of model cyclegan, "
                                       r"not of model 'pix2pix'"):
    config_args.apply_overrides(config_args.load_config_file("pix2pix_demo"), [("pool_size", "10")])
  recipe = config_args.load_config_file("cyclegan_demo")
  with recipe.unlocked():
    recipe.lambda_L1 = 100.0    # a recipe that sets another objective's key
  with pytest.raises(ValueError, match=r"config\.lambda_L1 is a key of model pix2pix, not of model 'cyclegan'"):
    config_lib.validate(recipe)
  # switching the model switches the objective's own keys, in either order of the overrides
  for overrides in ([("model", "cyclegan"), ("pool_size", "7")], [("pool_size", "7"), ("model", "cyclegan")]):
    c = config_args.apply_overrides(config_args.load_config_file("pix2pix_demo"), overrides)
    assert c.model == "cyclegan" and c.pool_size == 7 and "lambda_L1" not in c and c.lambda_A == 10.0
  assert config_args.parse_value("layers", "0, 4,8", (0, 4)) == (0, 4, 8)   # list-valued objective keys


def test_a_config_saved_with_every_objectives_keys_still_loads_and_resumes(dataset, tmp_path):
  """Checkpoints written before the split hold all keys (pool_size, lambda_A, ... in a pix2pix config)."""
  old_style = tiny("pix2pix", dataset, num_train_steps=2)
  old_style.update({"lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5, "pool_size": 0})
  workdir = tmp_path / "old"
  assert train.train_and_evaluate(old_style, workdir, stop_at_step=1).step == 1
  state, saved, _ = inference.load_for_inference(workdir)
  assert saved.pool_size == 0   # the old config, as saved
  assert inference.evaluate(saved, state)["num_images"] == TEST_A
  resumed = train.train_and_evaluate(tiny("pix2pix", dataset, num_train_steps=2), workdir)   # a new-style recipe
  assert resumed.step == 2 and not resumed.preempted
  assert "pool_size" not in inference.load_for_inference(workdir)[1]   # the new checkpoint: the new config


def test_one_generator_imported_with_another_objectives_recipe_keeps_only_its_objectives_keys():
  """A released CycleGAN generator imported with a CycleGAN recipe is a pix2pix-kind translate-only workdir:
  its config holds pix2pix's keys, not the recipe's pool_size / lambda_A."""
  from conftest import require_torch  # pylint: disable=import-outside-toplevel
  require_torch()
  import torch_reference as R  # pylint: disable=import-outside-toplevel
  from jaxgan.interop import detect, workdir  # pylint: disable=import-outside-toplevel
  g = R.define_G(3, 3, 4, "resnet_1blocks", "instance")
  net = workdir.ImportedNet("/x/latest_net_G_A.pth", "G_A",
                            *detect.detect({k: v.numpy() for k, v in g.state_dict().items()}), sha256="0")
  recipe = config_lib.get_cyclegan_base_config()
  recipe.crop_size = 32
  plan = workdir.plan_import([net], base_config=recipe)
  assert plan.model == "pix2pix" and plan.translate_only
  assert objectives.foreign_keys(plan.config) == [] and plan.config.lambda_L1 == 100.0
