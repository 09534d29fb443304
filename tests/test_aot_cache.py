"""jaxgan.cpu.aot_cache: whole compiled programs saved by the jaxgan program, so a restart does not trace."""
from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import cli, parallel, train
from jaxgan.cpu import aot_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv(aot_cache.ENV, "1")
  aot_cache.set_directory(tmp_path)
  aot_cache._LOADED.clear()   # pylint: disable=protected-access
  yield tmp_path / aot_cache.SUBDIR
  aot_cache.set_directory(None)
  aot_cache._LOADED.clear()   # pylint: disable=protected-access


def _counting_jit(traces):
  def f(x, y):
    traces.append(1)
    return {"sum": x * 2.0 + y.sum() + 1.0}
  return jax.jit(f, donate_argnums=(0,))


def _args():
  return (jnp.ones((4, 4)), jnp.full((4, 4), 2.0))


def test_a_second_load_does_not_trace_and_gives_the_same_result(cache):
  traces = []
  first = aot_cache.compile_cached(_counting_jit(traces), _args(), name="toy", parts=("a",))
  out1 = first(*_args())["sum"]
  assert traces == [1] and len(list(cache.glob("toy-*.bin"))) == 1
  aot_cache._LOADED.clear()   # pylint: disable=protected-access  # as a new process
  again = []
  second = aot_cache.compile_cached(_counting_jit(again), _args(), name="toy", parts=("a",))
  np.testing.assert_array_equal(np.asarray(second(*_args())["sum"]), np.asarray(out1))
  assert again == []   # loaded, never traced
  x = jnp.ones((4, 4))
  second(x, jnp.ones((4, 4)))
  assert x.is_deleted()   # donation survives the round trip


def test_other_shapes_or_parts_are_other_programs(cache):
  traces = []
  aot_cache.compile_cached(_counting_jit(traces), _args(), name="toy", parts=("a",))
  aot_cache.compile_cached(_counting_jit(traces), (jnp.ones((2, 4)), jnp.ones((4, 4))), name="toy", parts=("a",))
  aot_cache.compile_cached(_counting_jit(traces), _args(), name="toy", parts=("b",))
  assert len(traces) == 3 and len(list(cache.glob("toy-*.bin"))) == 3


def test_a_broken_file_is_compiled_again_and_replaced(cache, caplog):
  aot_cache.compile_cached(_counting_jit([]), _args(), name="toy")
  (path,) = cache.glob("toy-*.bin")
  path.write_bytes(b"not a pickle")
  aot_cache._LOADED.clear()   # pylint: disable=protected-access
  traces = []
  with caplog.at_level(logging.WARNING, logger="jaxgan.cpu.aot_cache"):
    fn = aot_cache.compile_cached(_counting_jit(traces), _args(), name="toy")
  assert traces == [1] and "compiling it again" in caplog.text
  assert float(fn(*_args())["sum"][0, 0]) == 35.0
  assert path.read_bytes() != b"not a pickle"


def test_off_returns_the_jitted_function(cache, monkeypatch):
  monkeypatch.setenv(aot_cache.ENV, "0")
  jitted = _counting_jit([])
  assert aot_cache.compile_cached(jitted, _args(), name="toy") is jitted
  assert not cache.exists()


def test_a_second_cli_start_loads_init_and_step_without_tracing(tmp_path, monkeypatch):
  """Two `jaxgan train` runs of the same config: the second traces neither init nor the step and
  trains identically."""
  monkeypatch.setenv(aot_cache.ENV, "1")
  monkeypatch.setenv("JAXGAN_CACHE_DIR", str(tmp_path / "cache"))
  traced = []
  real_jit_train_step = parallel.jit_train_step

  def counting(train_step, config, mesh, **kw):
    def step(state, batch, *, config):
      traced.append("step")
      return train_step(state, batch, config=config)
    return real_jit_train_step(step, config, mesh, **kw)

  monkeypatch.setattr(parallel, "jit_train_step", counting)
  args = ["train", "--config", "configs/pix2pix_demo.py", "--config.netG=unet_32", "--config.load_size=32",
          "--config.crop_size=32", "--config.ngf=8", "--config.ndf=8", "--config.num_train_steps=3",
          "--config.batch_size=2", "--config.eval_every_steps=0", "--config.sample_every_steps=0",
          "--config.demo_train_size=8", "--config.demo_test_size=2"]
  results = []
  real_loop = train._loop   # pylint: disable=protected-access

  def keep(*a, **k):
    results.append(real_loop(*a, **k))
    return results[-1]

  monkeypatch.setattr(train, "_loop", keep)
  try:
    assert cli.main(args + ["--workdir", str(tmp_path / "run1")]) == 0
    assert traced == ["step"]
    files = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (tmp_path / "cache" / aot_cache.SUBDIR).glob("*.bin"))
    assert files == ["pix2pix-init", "pix2pix-train"], files
    train._COMPILED.clear()   # pylint: disable=protected-access  # as a new process
    aot_cache._LOADED.clear()   # pylint: disable=protected-access
    traced.clear()
    assert cli.main(args + ["--workdir", str(tmp_path / "run2")]) == 0
    assert traced == []
    assert results[0].metrics == results[1].metrics
  finally:
    aot_cache.set_directory(None)
    aot_cache._LOADED.clear()   # pylint: disable=protected-access


_JAX_CACHE_THEN_AOT = r"""
import os, sys
import jax, jax.numpy as jnp
cache, mode = sys.argv[1], sys.argv[2]
jax.config.update("jax_compilation_cache_dir", cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from jaxgan.cpu import aot_cache

def f(x):   # slices, reflect padding and a broadcast: fusions that XLA:CPU compiles to separate functions
  y = jnp.pad(x, ((1, 1), (1, 1)), mode="reflect")
  return jnp.tanh(y[::2, ::2] * 2.0 + jnp.sin(y[1::2, 1::2])).sum() + jnp.broadcast_to(x[:1], x.shape).mean()

x = jnp.arange(64.0).reshape(8, 8)
fn = jax.jit(f)
if mode == "aot":
  aot_cache.set_directory(cache)
  fn = aot_cache.compile_cached(fn, (x,), name="toy", parts=())
print(repr(float(fn(x))))
"""


def test_a_program_from_jax_s_cache_is_not_saved_half_empty(tmp_path):
  # A program first compiled by a plain jit (JAX's cache has it; e.g. an older jaxgan source) and then
  # asked of the AOT cache: re-serialising the executable JAX's cache supplied loses code on XLA:CPU, and
  # the third start, loading that file, failed with "NOT_FOUND: Function ... not found".
  import subprocess
  import sys
  env = {**os.environ, aot_cache.ENV: "1"}
  outs = []
  for mode in ("plain", "aot", "aot"):
    proc = subprocess.run([sys.executable, "-c", _JAX_CACHE_THEN_AOT, str(tmp_path), mode], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs.append(proc.stdout.strip().splitlines()[-1])
  assert outs[0] == outs[1] == outs[2]
  assert not list((tmp_path / aot_cache.SUBDIR).glob("toy-*.bin"))   # never saved from JAX's copy


def test_the_folder_is_kept_under_its_size_limit_oldest_use_first(cache, monkeypatch):
  """Each source change keys new files; past JAXGAN_AOT_CACHE_MAX_MB the programs used longest ago go first,
  and a load counts as a use."""
  for part in ("a", "b", "c"):
    aot_cache.compile_cached(_counting_jit([]), _args(), name="toy", parts=(part,))
  files = sorted(cache.glob("toy-*.bin"), key=lambda p: p.stat().st_mtime)
  assert len(files) == 3
  for age, path in zip((300, 200, 100), files):          # a used 300 s ago, b 200 s, c 100 s
    os.utime(path, (path.stat().st_atime - age, path.stat().st_mtime - age))
  aot_cache._LOADED.clear()   # pylint: disable=protected-access  # as a new process: loading "a" uses it
  aot_cache.compile_cached(_counting_jit([]), _args(), name="toy", parts=("a",))
  size = files[0].stat().st_size
  monkeypatch.setenv(aot_cache.MAX_MB_ENV, str(2.5 * size / 2**20))   # room for two and a half programs
  aot_cache.compile_cached(_counting_jit([]), _args(), name="toy", parts=("d",))
  left = set(cache.glob("toy-*.bin"))
  assert files[0] in left and files[1] not in left and len(left) == 2, left   # "b" then "c" were oldest
  assert files[2] not in left
