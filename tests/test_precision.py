"""Numerics you can choose: ``config.matmul_precision`` reaches the lowered step, bf16 mode keeps its
heads and kernel gradients in float32, and the layer forms follow the platform a step is lowered for."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgan import checks, cyclegan, pix2pix
from jaxgan.models import discriminators, generators, layers
from tests.helpers import smooth_images, tiny_cyclegan_config, tiny_pix2pix_config


# Traced under this mesh, a program is compiled for GPU devices: the layers take the plain forms.
GPU_MESH = jax.sharding.AbstractMesh((1,), ("data",), abstract_device=jax.sharding.AbstractDevice(
    device_kind="NVIDIA H100", num_cores=None, platform="gpu"))


def _eqns(jaxpr):
  """Every equation of a (closed) jaxpr, sub-jaxprs (custom_vjp, pjit, remat) included."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        if hasattr(sub, "eqns") or hasattr(getattr(sub, "jaxpr", None), "eqns"):
          yield from _eqns(sub)


def _kernel_shapes(params) -> set[tuple[int, ...]]:
  return {tuple(v.shape) for p, v in jax.tree_util.tree_leaves_with_path(params)
          if "kernel" in jax.tree_util.keystr(p)}


@pytest.mark.parametrize("net", ["resnet_1blocks", "unet_32", "D"])
def test_bf16_heads_and_kernel_gradients_are_float32(net):
  """In bf16 mode the hidden convs run in bf16, but the head (the generator's last conv and tanh, the
  discriminator's logits conv) runs in float32, and every kernel gradient is a float32 conv result
  (plain forms, as on GPU/TPU), never a bf16 one converted afterwards."""
  if net == "D":
    module = discriminators.define_D(3, 8, "basic", norm="instance", dtype=jnp.bfloat16)
    head = "['conv_4']"
  else:
    module = generators.define_G(3, 3, 8, net, norm="instance" if "resnet" in net else "batch",
                                 dtype=jnp.bfloat16)
    head = "['head_conv']" if "resnet" in net else "['level_0']['up']['conv']"
  x = jnp.asarray(smooth_images(np.random.default_rng(0), 2, 32))
  v = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)   # shapes: all is traced
  with jax.sharding.use_abstract_mesh(GPU_MESH):     # the plain forms, as on GPU/TPU
    _, inter = jax.eval_shape(lambda v, x: module.apply(
        v, x, train=True, mutable=["batch_stats", "intermediates"],
        capture_intermediates=lambda m, _: isinstance(m, (layers.Conv2d, layers.ConvTranspose2d))), v, x)
    outs = {jax.tree_util.keystr(p): a.dtype for p, a in jax.tree_util.tree_leaves_with_path(inter["intermediates"])}
    heads = {k: d for k, d in outs.items() if k.startswith(head + "['__call__']")}
    assert heads and set(heads.values()) == {jnp.dtype(jnp.float32)}, heads
    assert jnp.dtype(jnp.bfloat16) in set(outs.values())          # the hidden layers are bf16
    if net != "D":
      jaxpr = jax.make_jaxpr(lambda v, x: module.apply(v, x, train=False))(v, x)
      tanh = [e for e in _eqns(jaxpr) if e.primitive.name == "tanh"]
      assert tanh and all(e.invars[0].aval.dtype == jnp.float32 for e in tanh)

    def loss(params, v, x):
      y, _ = module.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
      return jnp.sum(y.astype(jnp.float32) ** 2)
    eqns = list(_eqns(jax.make_jaxpr(jax.grad(loss))(v["params"], v, x)))
  shapes = _kernel_shapes(v["params"])
  by_shape = {}
  for e in eqns:
    if e.primitive.name == "conv_general_dilated" and tuple(e.outvars[0].aval.shape) in shapes:
      by_shape.setdefault(tuple(e.outvars[0].aval.shape), set()).add(e.outvars[0].aval.dtype)
  assert set(by_shape) == shapes                       # each kernel's gradient is one of these convs
  assert all(d == {jnp.dtype(jnp.float32)} for d in by_shape.values()), by_shape


def _precisions(text: str) -> set[str]:
  return set(re.findall(r"precision\s*<?\s*(DEFAULT|HIGHEST|HIGH)\b", text))


def test_matmul_precision_reaches_the_lowered_step_and_translate():
  cfg = tiny_pix2pix_config(batch_size=1)
  rng = np.random.default_rng(0)
  batch = {"A": jnp.asarray(smooth_images(rng, 1)), "B": jnp.asarray(smooth_images(rng, 1))}
  state = jax.eval_shape(lambda: pix2pix.init(jax.random.PRNGKey(0), cfg, batch))
  found = {}
  for name in ("default", "highest"):
    c = cfg.copy_and_resolve_references()
    c.matmul_precision = name
    text = jax.jit(lambda s, b, c=c: pix2pix.train_step(s, b, config=c)).trace(state, batch).lower().as_text()
    found[name] = _precisions(text)
  assert "HIGHEST" not in found["default"]          # the default keeps today's program
  assert found["highest"] == {"HIGHEST"}              # every conv of the step, forward and backward

  c = tiny_cyclegan_config(matmul_precision="high")
  cstate = jax.eval_shape(lambda: cyclegan.init(jax.random.PRNGKey(0), c, batch))
  text = jax.jit(lambda s, x: cyclegan.translate(s, x, config=c)).trace(cstate, batch["A"]).lower().as_text()
  assert _precisions(text) == {"HIGH"}


def test_matmul_precision_rejects_unknown_values():
  with pytest.raises(ValueError, match="config.matmul_precision"):
    checks.validate_config(tiny_pix2pix_config(matmul_precision="fp32"), "pix2pix")


def test_step_traced_for_a_gpu_from_a_cpu_host_has_the_plain_forms():
  """The layer forms follow the devices a step is compiled for (the abstract mesh's device, as
  ``parallel.jit_train_step`` sets it), not the host: lowered for CUDA from this CPU host the step
  has the plain forms."""
  assert jax.default_backend() == "cpu"
  cfg = tiny_cyclegan_config(netG="resnet_1blocks", batch_size=1, pool_size=0, lambda_identity=0.0)
  rng = np.random.default_rng(0)
  batch = {"A": jnp.asarray(smooth_images(rng, 1)), "B": jnp.asarray(smooth_images(rng, 1))}
  state = jax.eval_shape(lambda: cyclegan.init(jax.random.PRNGKey(0), cfg, batch))
  step = jax.jit(lambda s, b: cyclegan.train_step(s, b, config=cfg))
  with jax.sharding.use_abstract_mesh(GPU_MESH):
    assert layers.target_platform() == "gpu"
    text = step.trace(state, batch).lower(lowering_platforms=("cuda",)).as_text()
  # Markers: the plain transposed convs (and strided convs' input gradients) dilate their input by
  # 2; the CPU forms never do, and compute the few-tap kernel gradients as matmuls (dot_general).
  dilated = lambda t: len(re.findall(r"lhs_dilate = \[2, 2\]", t))
  assert dilated(text) > 0 and "stablehlo.dot_general" not in text and "optimization_barrier" not in text
  host = step.trace(state, batch).lower().as_text()          # the same step for this CPU: the CPU forms
  assert dilated(host) == 0 and "stablehlo.dot_general" in host


def test_initial_weights_use_the_backend_independent_threefry():
  """Init draws with threefry2x32 (bits defined by JAX, the same on every backend), keyed by the seed;
  the state's key keeps its uint32[2] shape (checkpoints stay resumable)."""
  from jaxgan import nets
  G = generators.define_G(3, 3, 8, "resnet_1blocks", norm="instance")
  x = jnp.zeros((1, 32, 32, 3), jnp.float32)
  params, _ = nets.init_network(G, jax.random.PRNGKey(3), x)
  k_params, k_drop = jax.random.split(jax.random.key(3, impl="threefry2x32"))
  expected = jax.jit(lambda: G.init({"params": k_params, "dropout": k_drop}, x, train=False),
                     compiler_options=nets.init_compiler_options())()["params"]
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert nets.to_key(3).shape == (2,) and nets.to_key(3).dtype == jnp.uint32
  np.testing.assert_array_equal(nets.to_key(3), jax.random.PRNGKey(3))
