"""The notebooks run headless (nbclient) with tiny sizes, without errors, and draw their figures.

They run as a user outside the repository runs them: from an empty folder, against jaxgan installed
with ``pip install .`` (not editable; tests/installed.py), so the recipes must come with the package.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from installed import TINY_CYCLEGAN_DEMO, env as installed_env, installed_jaxgan

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def _execute(name: str, parameters: str, tmp_path: Path) -> nbformat.NotebookNode:
  """Run ``notebooks/<name>`` in a fresh kernel with its ``parameters`` cell replaced; returns the result.

  The kernel starts in an empty folder under ``tmp_path`` with the installed copy of jaxgan alone on
  PYTHONPATH (not this checkout); everything the notebook writes goes under ``tmp_path``. Any cell
  error raises.
  """
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {len(tagged)}"
  tagged[0].source = parameters
  cwd = tmp_path / "empty"
  cwd.mkdir()
  env = installed_env(installed_jaxgan(),
                      MPLBACKEND="module://matplotlib_inline.backend_inline",   # figures as image/png outputs
                      # the persistent compilation cache the other tests use:
                      JAX_COMPILATION_CACHE_DIR=os.environ.get("JAXGAN_CACHE_DIR", "/tmp/jaxgan-test-xla-cache"),
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
  client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
  client.execute(env=env)   # raises nbclient.exceptions.CellExecutionError naming the cell on any error
  return nb


def _outputs(nb, cell_text: str) -> list:
  cells = [c for c in nb.cells if c.cell_type == "code" and cell_text in c.source]
  assert cells, f"no code cell contains {cell_text!r}"
  return [o for c in cells for o in c.get("outputs", [])]


def _images(outputs) -> int:
  return sum("image/png" in o.get("data", {}) for o in outputs)


def _text(outputs) -> str:
  parts = []
  for o in outputs:
    parts.append(o.get("text", ""))
    parts.extend(str(v) for k, v in o.get("data", {}).items() if k.startswith("text/"))
  return "\n".join(parts)


def _assert_installed_copy(nb) -> None:
  """The install cell was skipped (jaxgan importable) and reported the installed copy, not this checkout."""
  line = [l for l in _text(_outputs(nb, 'find_spec("jaxgan")')).splitlines() if l.startswith("jaxgan ")]
  assert line and Path(line[0].split(" from ")[-1]).is_relative_to(installed_jaxgan()), line


TINY_QUICKSTART = """
MODEL = "cyclegan"
WORKDIR = {workdir!r}
OVERRIDES = {overrides!r}
SCALE_TO_ACCELERATOR = False
TRY_PRETRAINED = False
REPO_URL = "unused: jaxgan is importable"
"""

TINY_CUSTOM_LOOP = """
SIZE = 32
NGF = 4
N_LAYERS_D = 1
BATCH = 2
STEPS = 4
N_TRAIN = 6
LOG_EVERY = 2
CHECKPOINT_EVERY = 2
CYCLEGAN_STEPS = 2
CYCLEGAN_NGF = 4
CYCLEGAN_NETG = "resnet_1blocks"
WORKDIR = {workdir!r}
REPO_URL = "unused: jaxgan is importable"
"""


def test_quickstart_notebook_runs(tmp_path):
  workdir = tmp_path / "run"
  parameters = TINY_QUICKSTART.format(workdir=str(workdir), overrides=TINY_CYCLEGAN_DEMO)
  nb = _execute("quickstart.ipynb", parameters, tmp_path)
  _assert_installed_copy(nb)
  assert _images(_outputs(nb, "sample_grid(entry)")) == 1                # sample grids
  assert _images(_outputs(nb, "read_scalars")) == 1                      # loss curves
  table = _text(_outputs(nb, "inference.evaluate"))
  assert "| A->B | model |" in table and "| B->A | oracle |" in table and "copy input" in table
  assert _images(_outputs(nb, "translate_picture(picture, state")) == 1  # the translated picture
  assert "skipped" in _text(_outputs(nb, "jaxgan pretrained"))
  assert (workdir / "eval.json").is_file() and (workdir / "upload" / "example.png").is_file()


def test_custom_loop_notebook_runs(tmp_path):
  workdir = tmp_path / "loop"
  nb = _execute("custom_loop.ipynb", TINY_CUSTOM_LOOP.format(workdir=str(workdir)), tmp_path)
  _assert_installed_copy(nb)
  assert "checkpoints: [2, 4]" in _text(_outputs(nb, "checkpoints.save"))
  assert "restored checkpoint translates identically: True" in _text(_outputs(nb, "translates identically"))
  assert _images(_outputs(nb, "G_L1 (x lambda_L1)")) == 1
  assert _images(_outputs(nb, "label map | translation | target")) == 1
  assert _images(_outputs(nb, "cyclegan.translate")) == 1
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "custom_loop.ipynb"])
def test_notebooks_are_committed_clean(name):
  """No outputs or execution counts in the committed files (scripts/make_notebooks.py writes them so)."""
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert code and all(not c.outputs and c.execution_count is None for c in code)
  assert "On Colab" in nb.cells[0].source                       # says how to open it there
  text = "\n".join(c.source for c in nb.cells)
  assert "github.com/" not in text and "git clone" not in text    # the project publishes no repository to clone
