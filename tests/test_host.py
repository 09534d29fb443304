"""``jaxgan.cpu.host``: the process-wide CPU settings, and that only the program applies them."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxgan import cli
from jaxgan.cpu import host

ROOT = Path(__file__).resolve().parents[1]

# Allocates, touches and frees a 64 MiB block three times (as XLA:CPU does with a
# step's temporary buffers) and prints the page faults of the last round.
_FAULTS = textwrap.dedent("""
    import ctypes, resource, sys
    if sys.argv[1] == "tuned":
        from jaxgan.cpu import host
        assert host.keep_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(faults)
""")


def _last_round_faults(mode: str) -> int:
  out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, check=True)
  return int(out.stdout.split()[-1])


@pytest.mark.skipif(host._glibc() is None, reason="glibc malloc only")  # pylint: disable=protected-access
def test_keep_freed_memory_reuses_freed_blocks():
  """Without the setting every round maps fresh pages (one fault per 4 KiB page, fewer
  with transparent huge pages); with it the third round reuses the first one's pages."""
  plain, tuned = _last_round_faults("plain"), _last_round_faults("tuned")
  print(f"[faults] 64 MiB malloc/touch/free, third round: default {plain}, tuned {tuned}")
  assert plain >= 32, "the default allocator did not map fresh pages: the test would prove nothing"
  assert tuned <= max(plain // 20, 4), (plain, tuned)


def test_add_xla_cpu_flags_appends_once_and_respects_the_user():
  env: dict[str, str] = {}
  assert host.add_xla_cpu_flags(env) == list(host.XLA_CPU_FLAGS)
  assert env["XLA_FLAGS"] == " ".join(host.XLA_CPU_FLAGS)
  assert host.add_xla_cpu_flags(env) == [] and env["XLA_FLAGS"] == " ".join(host.XLA_CPU_FLAGS)
  mine = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_cpu_copy_insertion_use_region_analysis=false"}
  assert host.add_xla_cpu_flags(mine) == []
  assert mine["XLA_FLAGS"].endswith("region_analysis=false")      # the user's choice wins
  other = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  host.add_xla_cpu_flags(other)
  assert other["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", *host.XLA_CPU_FLAGS]


def test_configure_can_be_turned_off(monkeypatch):
  monkeypatch.setenv("JAXGAN_HOST_TUNING", "0")
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  monkeypatch.setattr(host, "keep_freed_memory", lambda: pytest.fail("malloc setting applied"))
  assert host.configure() == {"keep_freed_memory": False, "xla_flags": [], "backend": "cpu"}
  assert host.os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


def test_only_the_program_entry_applies_the_settings(monkeypatch):
  calls = []
  monkeypatch.setattr(host, "configure", lambda: calls.append(1) or {})
  assert cli.main(["--help"]) == 0          # called from code: the process is left alone
  assert calls == []
  monkeypatch.setattr(sys, "argv", ["jaxgan", "--help"])
  assert cli.main() == 0                    # run as the program
  assert calls == [1]


def test_expected_backend_reads_env_and_plugins():
  assert host.expected_backend({"JAX_PLATFORMS": "cpu"}, plugins=["cuda12"]) == "cpu"   # the user's choice wins
  assert host.expected_backend({"JAX_PLATFORMS": "cuda,cpu"}, plugins=[]) == "gpu"
  assert host.expected_backend({"JAX_PLATFORMS": "tpu"}, plugins=[]) == "tpu"
  assert host.expected_backend({}, plugins=["cuda12"]) == "gpu"
  assert host.expected_backend({}, plugins=["libtpu"]) == "tpu"
  assert host.expected_backend({}, plugins=[]) == "cpu"


def test_configure_leaves_gpu_and_tpu_hosts_alone(monkeypatch):
  """An accelerator host gets neither setting: freed host memory must go back to the OS there."""
  monkeypatch.delenv("JAXGAN_HOST_TUNING", raising=False)
  monkeypatch.setattr(host, "keep_freed_memory", lambda: pytest.fail("malloc setting applied on a GPU host"))
  env = {"JAX_PLATFORMS": "cuda", "XLA_FLAGS": ""}
  assert host.configure(env) == {"keep_freed_memory": False, "xla_flags": [], "backend": "gpu"}
  assert env["XLA_FLAGS"] == ""
  monkeypatch.setattr(host, "expected_backend", lambda environ=None: "tpu")
  assert host.configure({})["keep_freed_memory"] is False


def test_entry_points_free_compiled_programs_near_the_mapping_limit(tmp_path, monkeypatch):
  """XLA:CPU maps each compiled program's code separately; at vm.max_map_count its next compile segfaults
  (this suite's process once reached it). Past MAPPING_PRESSURE of the limit, train and the inference entry
  points drop the compiled programs first: a program compiled earlier in the process is gone from JAX's cache,
  and the mappings of the run's programs are returned."""
  import jax
  import jax.numpy as jnp

  from jaxgan import inference, train
  from tests.test_train import tiny_config
  assert host.memory_mappings() is not None, "this Linux test needs /proc"
  earlier = jax.jit(lambda x: x * 2 + 1)
  earlier(jnp.ones(3))
  assert earlier._cache_size() == 1     # pylint: disable=protected-access
  assert not host.relieve_mapping_pressure(fraction=1.0) and earlier._cache_size() == 1
  config = tiny_config("pix2pix_demo", num_train_steps=2, checkpoint_every_steps=2)
  monkeypatch.setattr(host, "MAPPING_PRESSURE", 0.0)     # as if the process were past half the limit
  train.train_and_evaluate(config, tmp_path)
  assert earlier._cache_size() == 0     # pylint: disable=protected-access
  held = host.memory_mappings()[0]       # now with the run's programs (init, step, evaluation)
  state, _, step = inference.load_for_inference(tmp_path)
  assert step == 2 and state is not None
  assert host.memory_mappings()[0] < held - 500, (held, host.memory_mappings())
