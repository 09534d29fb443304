"""What the data-parallel step sends between devices, and BatchNorm groups across devices.

The pytest process has one CPU device, so one subprocess runs this file as a
script with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and prints
one JSON line: the all-reduce bytes of the compiled 8-device CycleGAN,
pix2pix and CUT steps (:func:`jaxgan.parallel.jit_train_step`) against their parameters'
bytes (read off ``compiled.as_text()`` by ``scripts/bench/sharded.py``), and
BatchNorm with ``bn_group_size`` over 4 devices against separate computations
of each group. Nothing of the 8-device steps is executed, only compiled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
N_DEVICES = 8
BN_DEVICES = 4


def _comm(model_name: str) -> dict:
  """Compile the 8-device step of a tiny config; all-reduce figures of its partitioned program."""
  import jax
  from bench.sharded import collectives, param_bytes
  from helpers import tiny_cyclegan_config, tiny_pix2pix_config
  from jaxgan import config as config_lib, cut, cyclegan, parallel, pix2pix
  if model_name in ("cut", "fastcut"):   # G applied 5 times (CUT: fake, 4 encodes) or 3 (FastCUT), F 4 or 2
    model, c = cut, config_lib.get_base_config("cut")
    c.update(dict(netG="resnet_1blocks", nce_layers=(0, 4), no_antialias=True, no_antialias_up=True, ngf=4, ndf=4,
                  crop_size=32, load_size=32,
                  batch_size=N_DEVICES, num_patches=16, netF_nc=8, num_train_steps=100))
    if model_name == "fastcut":   # the authors' FastCUT presets
      c.update(dict(lambda_NCE=10.0, nce_idt=False, flip_equivariance=True))
  elif model_name == "cyclegan":   # each generator applied 3 times (identity on), each discriminator twice
    model, c = cyclegan, tiny_cyclegan_config(netG="resnet_1blocks", ngf=4, ndf=4, batch_size=N_DEVICES,
                                              pool_size=4, lambda_identity=0.5)
  else:   # batch norm over the global batch, D applied 3 times
    model, c = pix2pix, tiny_pix2pix_config(ngf=4, ndf=4, batch_size=N_DEVICES, no_dropout=True)
  size = int(c.crop_size)
  batch = {k: jax.ShapeDtypeStruct((N_DEVICES, size, size, 3), np.float32) for k in "AB"}
  state = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), c, {k: np.zeros(v.shape, v.dtype)
                                                                        for k, v in batch.items()}))
  mesh = parallel.make_mesh()
  rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
  bt = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=data), batch)
  text = parallel.jit_train_step(model.train_step, c, mesh).lower(st, bt).compile().as_text()
  comm = collectives(text)
  return {"allreduce_bytes": comm["allreduce_bytes"], "param_bytes": param_bytes(state),
          "all_reduces": comm["all-reduce"]}


def _bn_groups() -> dict:
  """BatchNorm groups of k images on 4 devices (1 image each) against each group computed alone."""
  import functools

  import jax
  import jax.numpy as jnp
  from helpers import smooth_images, tiny_pix2pix_config
  from jaxgan import nets, parallel
  rng = np.random.default_rng(0)
  x = smooth_images(rng, BN_DEVICES, 32, channels=6)
  # A PatchGAN with two BatchNorm layers (pix2pix's D): small to compile.
  base = tiny_pix2pix_config(netD="n_layers", n_layers_D=2, ndf=4, batch_size=BN_DEVICES)
  module = nets.build_discriminator(base, 6)
  params, stats = nets.init_network(module, jax.random.PRNGKey(1), x[:1])
  shape = jax.eval_shape(lambda: module.apply({"params": params, "batch_stats": stats}, x, train=False)).shape
  target = rng.standard_normal(shape).astype(np.float32)

  def step(state, batch, *, config):
    """Loss = mean over the batch of |D(x) - t|: gradients, outputs (gathered) and running statistics."""
    p, s = state
    d_mod = nets.build_discriminator(config, 6)

    def loss(p):
      out, new_s = nets.apply_train(d_mod, p, s, batch["x"], None)
      return jnp.mean(jnp.abs(out - batch["t"])), (out, new_s)

    (_, (out, new_s)), grads = jax.value_and_grad(loss, has_aux=True)(p)
    return (nets.cross_replica_mean(grads, config), new_s), parallel.gather_batch(out)

  def diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a),
                                                                                     jax.tree.leaves(b)))

  mesh = parallel.make_mesh(jax.devices()[:BN_DEVICES])
  rep, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  alone = jax.jit(functools.partial(step, config=base))   # one device, statistics over the batch it gets
  parts = {g: [jax.device_get(alone((params, stats), {"x": x[i:i + g], "t": target[i:i + g]}))
               for i in range(0, BN_DEVICES, g)] for g in (1, 2, BN_DEVICES)}
  out = {}
  for k in (1, 2, 0):
    cfg = base.copy_and_resolve_references()
    cfg.bn_group_size = k

    def sharded(state, batch, cfg=cfg):
      with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        return parallel.per_device_step(step, state, batch, config=cfg)

    fn = jax.jit(sharded, in_shardings=(rep, data), out_shardings=rep)
    (grads, new_stats), outputs = jax.device_get(fn((params, stats), {"x": x, "t": target}))
    # Each group of k alone (whole-batch statistics, the default), averaged over the groups.
    ref = parts[k or BN_DEVICES]
    ref_grads = jax.tree.map(lambda *t: np.mean(t, axis=0), *[p[0][0] for p in ref])
    ref_stats = jax.tree.map(lambda *t: np.mean(t, axis=0), *[p[0][1] for p in ref])
    scale = max(float(np.max(np.abs(v))) for v in jax.tree.leaves(ref_grads))
    out[str(k)] = {"outputs": diff(outputs, np.concatenate([p[1] for p in ref])),
                   "grads": diff(grads, ref_grads) / scale, "stats": diff(new_stats, ref_stats)}
  # What sets them apart: per-image and whole-batch statistics give different outputs.
  out["per_image_vs_whole"] = diff(np.concatenate([p[1] for p in parts[1]]), parts[BN_DEVICES][0][1])
  return out


def _translate_split() -> dict:
  """Standalone translate/evaluate on a state replicated over 8 devices: each device translates its share."""
  import jax
  from bench.common import xla_flops
  from helpers import smooth_images, tiny_pix2pix_config
  from jaxgan import inference, parallel, pix2pix
  c = tiny_pix2pix_config(ngf=4, ndf=4, batch_size=1)
  x = smooth_images(np.random.default_rng(0), 5, 32)
  ids = np.arange(10, 15, dtype=np.uint32)
  state = jax.device_put(pix2pix.init(jax.random.PRNGKey(0), c, {"A": x[:1], "B": x[:1]}), jax.devices()[0])
  everywhere = parallel.replicate(jax.device_get(state), parallel.make_mesh())   # as load_for_inference
  run = inference._translate_fn(pix2pix, c, "AtoB", False)  # pylint: disable=protected-access
  one, split = np.asarray(run(state, x, ids)), np.asarray(run(everywhere, x, ids))
  per_device = xla_flops(run.lower(everywhere, x, ids).compile())
  alone = xla_flops(run.lower(state, x, ids).compile())
  return {"diff": float(np.max(np.abs(one - split))), "shape": list(split.shape),
          "flops_per_device_over_one": per_device / alone}


def worker(parts=("bn", "translate", "cyclegan", "pix2pix", "cut")) -> dict:
  import time

  import jax
  assert jax.device_count() == N_DEVICES, jax.devices()
  out, seconds = {}, {}
  for part in parts:
    t0 = time.perf_counter()
    out[part] = {"bn": _bn_groups, "translate": _translate_split}.get(part, lambda p=part: _comm(p))()
    seconds[part] = round(time.perf_counter() - t0, 1)
  return {**out, "seconds": seconds}


@pytest.fixture(scope="module")
def report() -> dict:
  env = dict(os.environ)
  # The figures are read off the partitioned HLO, which LLVM's optimisation level does not change; at level 0
  # the worker's compiles take less time (the steps are compiled, only the small BatchNorm checks run).
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={N_DEVICES}"
                      " --xla_backend_optimization_level=0").strip()
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=900,
                        cwd=str(HERE.parent))
  if proc.returncode != 0:
    raise AssertionError(f"worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
  return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


# FastCUT takes the same per-device step as CUT (its figures: scripts/benchmark.py --sharded-flops --model fastcut).
@pytest.mark.parametrize("model_name", ["cyclegan", "pix2pix", "cut"])
def test_each_gradient_crosses_the_devices_once(report, model_name):
  """All-reduce bytes of the compiled 8-device step <= 1.1x the parameters' bytes.

  XLA's partitioner all-reduced each use of a weight's gradient on its own: CycleGAN (generators
  applied 3 times, discriminators twice) sent 2.7x its parameters' bytes, pix2pix 1.15x. CUT and FastCUT
  (one G applied several times, D twice, the patch head F on queries and keys) go through the same
  per-device step: one exchange of G's, D's and F's gradients.
  """
  r = report[model_name]
  assert r["param_bytes"] > 0 and r["allreduce_bytes"] >= r["param_bytes"], r   # every gradient is averaged
  assert r["allreduce_bytes"] <= 1.1 * r["param_bytes"], r


def test_batchnorm_groups_across_devices(report):
  """bn_group_size k on 4 devices (1 image each) = each group of k images computed alone, averaged.

  k = 1: the paper's batch-1 statistics at any device count (groups within a device); k = 2: groups
  spanning two devices (one gather of the per-channel sums); 0: the whole global batch (one all-reduce
  of the sums, about the running mean).
  """
  bn = report["bn"]
  assert bn["per_image_vs_whole"] > 1e-2, bn   # the groupings differ, so the comparisons below mean something
  for k in ("1", "2", "0"):
    assert bn[k]["outputs"] < 1e-5, (k, bn[k])
    assert bn[k]["grads"] < 1e-5, (k, bn[k])
    assert bn[k]["stats"] < 1e-5, (k, bn[k])


def test_translate_splits_the_batch_over_the_devices(report):
  """A state replicated over 8 devices (standalone translate/evaluate): the same images as on one device,
  and each device computes 1/8 of the batch (5 images padded to 8), not all of it."""
  r = report["translate"]
  assert r["shape"] == [5, 32, 32, 3] and r["diff"] < 1e-5, r
  assert r["flops_per_device_over_one"] < 0.5, r


def test_reference_test_mode_matches_training_with_groups_of_one():
  """With bn_group_size=1, translate (the reference's test mode: each image's own statistics) gives what
  the training forward gives on the whole batch; with whole-batch statistics it does not."""
  import jax
  from helpers import smooth_images, tiny_pix2pix_config
  from jaxgan import nets, pix2pix
  x = smooth_images(np.random.default_rng(0), 4, 32)
  c = tiny_pix2pix_config(ngf=4, ndf=4, batch_size=4, no_dropout=True)
  state = pix2pix.init(jax.random.PRNGKey(0), c, {"A": x, "B": x})
  test_mode = np.asarray(pix2pix.translate(state, x, config=c))   # each image alone, its own statistics
  outs = {}
  for k in (1, 0):
    G, _ = pix2pix.networks(tiny_pix2pix_config(ngf=4, ndf=4, batch_size=4, no_dropout=True, bn_group_size=k))
    trained = jax.jit(lambda p, s, x, G=G: nets.apply_train(G, p, s, x, None)[0])(
        state.params["G"], state.batch_stats["G"], x)
    outs[k] = float(np.max(np.abs(np.asarray(trained) - test_mode)))
  assert outs[1] < 1e-5, outs
  assert outs[0] > 1e-2, outs


def test_bn_group_size_must_divide_the_batch():
  from helpers import tiny_pix2pix_config
  from jaxgan import config as config_lib
  with pytest.raises(ValueError, match="bn_group_size"):
    config_lib.validate(tiny_pix2pix_config(batch_size=6, bn_group_size=4))
  config_lib.validate(tiny_pix2pix_config(batch_size=2, bn_group_size=4))   # a batch smaller than k: one group


if __name__ == "__main__":
  sys.path[:0] = [str(HERE.parent), str(HERE), str(HERE.parent / "scripts")]
  print(json.dumps(worker(*(sys.argv[1:2] and [sys.argv[1].split(",")]))), flush=True)
