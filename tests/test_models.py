"""Tests of jaxgan.models: parameter counts, shapes, input checks, init, norms, dropout, remat, dtype."""
from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jaxgan import models
from jaxgan.models import layers



def key(seed: int) -> jax.Array:
  # "rbg" keys: network init with the default threefry keys spends ~10 s compiling
  # one threefry kernel per parameter shape on this CPU; the layers under test are
  # the same either way (the init-statistics tests use default keys).
  return jax.random.key(seed, impl="rbg")


KEY = key(0)
RNGS = {"params": key(1), "dropout": key(2)}


def abstract_init(module, shape):
  return jax.eval_shape(lambda: module.init(RNGS, jnp.zeros(shape), train=False))


def init(module, x):
  """The real (jitted) ``module.init``."""
  return jax.jit(lambda rngs, x: module.init(rngs, x, train=False))(RNGS, x)


def np_init(module, x, seed=0):
  """Variables drawn by numpy with the documented default init, on the abstract tree.

  Much cheaper than ``module.init`` on this CPU (which compiles one random kernel
  per parameter shape); ``module.init`` itself is tested in the init tests.
  """
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(0.0, 0.02, leaf.shape), leaf.dtype)
    if name == "scale":
      return jnp.asarray(rng.normal(1.0, 0.02, leaf.shape), leaf.dtype)
    return (jnp.ones if name == "var" else jnp.zeros)(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract_init(module, x.shape))


def run(module, v, x, *, train, rng=None):
  """``module.apply``; ``train=True`` returns (y, new batch_stats or {})."""
  if not train:
    return module.apply(v, x, train=False)
  y, mut = module.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": KEY if rng is None else rng})
  return y, mut.get("batch_stats", {})


def rand(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


# ----------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("netG,norm,expected", [
    ("resnet_9blocks", "instance", 11_378_179),
    ("resnet_6blocks", "instance", 7_837_699),
    ("unet_256", "batch", 54_413_955),
    ("unet_128", "batch", 41_828_995),
])
def test_generator_param_counts(netG, norm, expected):
  size = models.generator_stride(netG) if netG.startswith("unet") else 64
  v = abstract_init(models.define_G(3, 3, 64, netG, norm=norm), (1, size, size, 3))
  assert models.count_params(v["params"]) == expected
  assert ("batch_stats" in v) == (norm == "batch")


@pytest.mark.parametrize("input_nc,norm,expected", [(3, "instance", 2_764_737), (6, "batch", 2_768_705)])
def test_basic_discriminator_param_counts(input_nc, norm, expected):
  v = abstract_init(models.define_D(input_nc, 64, "basic", norm=norm), (1, 64, 64, input_nc))
  assert models.count_params(v["params"]) == expected
  if norm == "batch":   # running statistics live in batch_stats, not params
    assert models.count_params(v["batch_stats"]) == 2 * (128 + 256 + 512)


def test_bias_rule_per_norm():
  """batch: no bias on the reference's bias=use_bias convs; instance and none keep it."""
  for norm, has_bias in (("batch", False), ("instance", True), ("none", True)):
    p = flat(abstract_init(models.define_G(3, 3, 4, "resnet_6blocks", norm=norm), (1, 16, 16, 3))["params"])
    assert ("down_0_conv/bias" in p) == has_bias and ("block_0/conv_0/bias" in p) == has_bias
    assert "head_conv/bias" in p                     # the output conv always has a bias
    assert ("stem_norm/scale" in p) == (norm == "batch")
  p = flat(abstract_init(models.define_G(3, 3, 4, "unet_32", norm="batch"), (1, 32, 32, 3))["params"])
  assert "level_0/up/conv/bias" in p and "level_0/down/conv/bias" not in p


def test_generator_stride_and_names():
  assert models.generator_stride("resnet_9blocks") == 4
  assert models.generator_stride("resnet_6blocks") == 4
  assert models.generator_stride("unet_256") == 256
  assert models.generator_stride("unet_128") == 128
  assert models.generator_stride("unet_32") == 32
  for bad in ("unet_100", "unet_16", "resnet", "resnet_0blocks", "vgg", "unet_"):
    with pytest.raises(ValueError, match="netG"):
      models.define_G(3, 3, 8, bad)
  with pytest.raises(ValueError, match="norm"):
    models.define_G(3, 3, 8, "unet_32", norm="group")
  with pytest.raises(ValueError, match="init_type"):
    models.define_D(3, 8, "basic", init_type="uniform")
  with pytest.raises(ValueError, match="netD"):
    models.define_D(3, 8, "patch")


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("netG,shape,out_nc", [
    ("resnet_9blocks", (2, 12, 8, 1), 3),
    ("unet_32", (2, 32, 64, 1), 2),
    ("unet_64", (1, 64, 128, 4), 1),
])
def test_generator_output_shapes(netG, shape, out_nc):
  g = models.define_G(shape[-1], out_nc, 4, netG, norm="batch", use_dropout=True)
  x = rand(shape)
  v = np_init(g, x)
  y, _ = run(g, v, x, train=True)
  assert y.shape == shape[:3] + (out_nc,) and y.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(y))) <= 1.0           # tanh output
  assert run(g, v, x, train=False).shape == y.shape


@pytest.mark.parametrize("netG", ["unet_128", "unet_256"])
def test_large_unet_shapes_abstract(netG):
  s = models.generator_stride(netG)
  g = models.define_G(1, 2, 2, netG, use_dropout=True)
  v = abstract_init(g, (1, s, 2 * s, 1))
  y = jax.eval_shape(lambda v, x: g.apply(v, x, train=False), v, jnp.zeros((1, s, 2 * s, 1)))
  assert y.shape == (1, s, 2 * s, 2)


def _patch_size(h, n_layers):
  for _ in range(n_layers):
    h = (h + 2 - 4) // 2 + 1
  return h - 2            # then two stride-1 4x4 convs with padding 1: -1 each


@pytest.mark.parametrize("netD,n_layers,shape", [
    ("basic", 3, (2, 32, 48, 3)), ("n_layers", 2, (1, 32, 40, 1)), ("n_layers", 1, (1, 16, 16, 2)),
    ("pixel", 3, (2, 8, 12, 5)),
])
def test_discriminator_output_shapes(netD, n_layers, shape):
  d = models.define_D(shape[-1], 4, netD, n_layers_D=n_layers, norm="batch")
  x = rand(shape)
  y, _ = run(d, np_init(d, x), x, train=True)
  if netD == "pixel":
    assert y.shape == shape[:3] + (1,)
  else:
    assert y.shape == (shape[0], _patch_size(shape[1], n_layers), _patch_size(shape[2], n_layers), 1)
  assert y.dtype == jnp.float32
  assert not np.all((np.asarray(y) > 0) & (np.asarray(y) < 1))       # not squashed into (0, 1)


def test_patchgan_receptive_field_is_70():
  d = models.define_D(1, 2, "basic", norm="none")
  x = rand((1, 128, 128, 1))
  v = np_init(d, x)
  grad = jax.jit(jax.grad(lambda x: d.apply(v, x, train=False)[0, 6, 6, 0]))(x)
  rows, cols = np.nonzero(np.abs(np.asarray(grad[0, :, :, 0])) > 0)
  assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


@pytest.mark.parametrize("netG,shape,match", [
    ("unet_32", (32, 32, 3), "NHWC"),
    ("unet_32", (1, 32, 32, 1), "channels"),
    ("unet_32", (1, 16, 32, 3), "multiple of 32"),
    ("unet_32", (1, 32, 48, 3), "W=48"),
    ("resnet_6blocks", (1, 18, 16, 3), "H=18"),
    ("resnet_6blocks", (1, 4, 4, 3), "at least 8"),
])
def test_generator_rejects_bad_inputs(netG, shape, match):
  g = models.define_G(3, 3, 4, netG)
  with pytest.raises(ValueError, match=match) as e:
    jax.eval_shape(lambda: g.init(RNGS, jnp.zeros(shape), train=False))
  assert netG in str(e.value) and str(tuple(shape)) in str(e.value)


def test_discriminator_rejects_bad_inputs():
  d = models.define_D(6, 4, "basic")
  for shape, match in (((1, 32, 32, 3), "channels"), ((32, 32, 6), "NHWC"), ((1, 16, 16, 6), "at least 24")):
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(lambda s=shape: d.init(RNGS, jnp.zeros(s), train=False))


# ----------------------------------------------------------------------------- init

def _init_layer(layer, in_ch, seed=0):
  v = layer.init(jax.random.key(seed), jnp.zeros((1, 8, 8, in_ch)))
  return np.asarray(v["params"]["kernel"])


@pytest.mark.parametrize("transposed", [False, True])
def test_kernel_init_statistics(transposed):
  cls = layers.ConvTranspose2d if transposed else layers.Conv2d
  k, cin, cout, gain = 3, 192, 128, 0.05
  # torch counts fans on its own weight layout: Conv2d (out, in, k, k), ConvTranspose2d (in, out, k, k)
  fan_in = (cout if transposed else cin) * k * k
  fan_out = (cin if transposed else cout) * k * k
  expected = {"normal": gain, "xavier": gain * np.sqrt(2.0 / (fan_in + fan_out)), "kaiming": np.sqrt(2.0 / fan_in)}
  for init_type, std in expected.items():
    w = _init_layer(cls(cout, k, kernel_init=layers.kernel_init(init_type, gain, transposed=transposed)), cin)
    assert w.shape == (k, k, cin, cout)
    assert abs(w.mean()) < 0.02 * std
    assert w.std() == pytest.approx(std, rel=0.02), init_type
  w = _init_layer(cls(cout, k, kernel_init=layers.kernel_init("orthogonal", gain, transposed=transposed)), cin)
  m = w.reshape(k * k * cin, cout) if not transposed else np.moveaxis(w, 2, 3).reshape(k * k * cout, cin)
  np.testing.assert_allclose(m.T @ m, gain ** 2 * np.eye(m.shape[1]), atol=1e-5)


def test_network_init_biases_zero_and_bn_scale_near_one():
  g = models.define_G(3, 3, 16, "unet_32", norm="batch", init_gain=0.02)
  v = init(g, jnp.zeros((1, 32, 32, 3)))
  p = flat(v["params"])
  biases = [a for k, a in p.items() if k.endswith("bias")]
  scales = np.concatenate([np.asarray(a) for k, a in p.items() if k.endswith("norm/scale")])
  assert biases and all(float(jnp.max(jnp.abs(b))) == 0.0 for b in biases)
  assert abs(scales.mean() - 1.0) < 0.005 and scales.std() == pytest.approx(0.02, rel=0.2)
  assert all(a.dtype == jnp.float32 for a in p.values())
  stats = flat(v["batch_stats"])
  assert all(float(jnp.max(jnp.abs(a))) == 0.0 for k, a in stats.items() if k.endswith("mean"))
  assert all(np.all(np.asarray(a) == 1.0) for k, a in stats.items() if k.endswith("var"))


# ----------------------------------------------------------------------------- layers vs definitions

def _numpy_conv_transpose(x, w, s, p, op):
  """torch ConvTranspose2d by its definition: scatter x[i] * w into out[i*s + k - p]. w: (in, out, k, k)."""
  n, h, wd, _ = x.shape
  k = w.shape[-1]
  ho, wo = (h - 1) * s - 2 * p + k + op, (wd - 1) * s - 2 * p + k + op
  full = np.zeros((n, (h - 1) * s + k + op, (wd - 1) * s + k + op, w.shape[1]))
  for i in range(h):
    for j in range(wd):
      full[:, i * s:i * s + k, j * s:j * s + k] += np.einsum("nc,cokl->nklo", x[:, i, j], w)
  return full[:, p:p + ho, p:p + wo]


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0), (3, 1, 1, 0), (2, 2, 0, 0)])
def test_conv_transpose_matches_definition(k, s, p, op):
  x = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
  w_torch = np.random.default_rng(1).normal(size=(3, 4, k, k)).astype(np.float32)
  layer = layers.ConvTranspose2d(4, k, stride=s, padding=p, output_padding=op, use_bias=False)
  y = layer.apply({"params": {"kernel": jnp.asarray(w_torch.transpose(2, 3, 0, 1))}}, jnp.asarray(x))
  expected = _numpy_conv_transpose(x.astype(np.float64), w_torch.astype(np.float64), s, p, op)
  assert y.shape == expected.shape
  np.testing.assert_allclose(np.asarray(y), expected, atol=1e-4)


def test_conv_and_pad_match_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, 9, 7, 3)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2))
  w = np.random.default_rng(1).normal(size=(5, 3, 4, 4)).astype(np.float32)
  y = layers.Conv2d(5, 4, stride=2, padding=1, use_bias=False).apply(
      {"params": {"kernel": jnp.asarray(w.transpose(2, 3, 1, 0))}}, jnp.asarray(x))
  yt = torch.nn.functional.conv2d(xt, torch.from_numpy(w), stride=2, padding=1)
  np.testing.assert_allclose(np.asarray(y), yt.numpy().transpose(0, 2, 3, 1), atol=1e-4)
  wt = np.random.default_rng(2).normal(size=(3, 5, 3, 3)).astype(np.float32)
  y = layers.ConvTranspose2d(5, 3, stride=2, padding=1, output_padding=1, use_bias=False).apply(
      {"params": {"kernel": jnp.asarray(wt.transpose(2, 3, 0, 1))}}, jnp.asarray(x))
  yt = torch.nn.functional.conv_transpose2d(xt, torch.from_numpy(wt), stride=2, padding=1, output_padding=1)
  np.testing.assert_allclose(np.asarray(y), yt.numpy().transpose(0, 2, 3, 1), atol=1e-4)
  padded = layers.reflection_pad(jnp.asarray(x), 3)
  np.testing.assert_array_equal(np.asarray(padded), torch.nn.ReflectionPad2d(3)(xt).numpy().transpose(0, 2, 3, 1))


# ----------------------------------------------------------------------------- norms

def test_batchnorm_running_stats_unbiased_and_eval():
  bn = layers.BatchNorm(scale_init=nn.initializers.ones)
  x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 3, 5, 6)).astype(np.float32)
  v = bn.init(KEY, jnp.zeros_like(x), train=False)
  stats = v["batch_stats"]
  running_mean, running_var = np.zeros(6), np.ones(6)
  for step in range(2):
    xs = x + step
    y, mut = bn.apply({"params": v["params"], "batch_stats": stats}, jnp.asarray(xs), train=True,
                      mutable=["batch_stats"])
    stats = mut["batch_stats"]
    flat_x = xs.reshape(-1, 6).astype(np.float64)
    running_mean = 0.9 * running_mean + 0.1 * flat_x.mean(0)
    running_var = 0.9 * running_var + 0.1 * flat_x.var(0, ddof=1)          # unbiased in the running average
    expected_y = (xs - flat_x.mean(0)) / np.sqrt(flat_x.var(0) + 1e-5)     # biased to normalise
    np.testing.assert_allclose(np.asarray(y), expected_y, atol=1e-4)
  np.testing.assert_allclose(np.asarray(stats["mean"]), running_mean, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(stats["var"]), running_var, rtol=1e-5)
  y_eval = bn.apply({"params": v["params"], "batch_stats": stats}, jnp.asarray(x), train=False)
  np.testing.assert_allclose(np.asarray(y_eval), (x - running_mean) / np.sqrt(running_var + 1e-5), atol=1e-4)


def test_batchnorm_matches_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(1.0, 2.0, size=(3, 4, 5, 2)).astype(np.float32)
  ref = torch.nn.BatchNorm2d(2)
  with torch.no_grad():
    ref.weight.copy_(torch.tensor([1.5, 0.5]))
    ref.bias.copy_(torch.tensor([0.1, -0.2]))
  bn = layers.BatchNorm()
  params = {"scale": jnp.array([1.5, 0.5]), "bias": jnp.array([0.1, -0.2])}
  stats = bn.init(KEY, jnp.asarray(x), train=False)["batch_stats"]
  y, mut = bn.apply({"params": params, "batch_stats": stats}, jnp.asarray(x), train=True, mutable=["batch_stats"])
  yt = ref.train()(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(y), yt, atol=1e-5)
  np.testing.assert_allclose(np.asarray(mut["batch_stats"]["mean"]), ref.running_mean.numpy(), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(mut["batch_stats"]["var"]), ref.running_var.numpy(), rtol=1e-5)
  y_eval = bn.apply({"params": params, "batch_stats": mut["batch_stats"]}, jnp.asarray(x), train=False)
  yt_eval = ref.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(np.asarray(y_eval), yt_eval, atol=1e-5)


def test_batchnorm_axis_name_gives_global_batch_statistics():
  bn = layers.BatchNorm(axis_name="devices")
  x = rand((4, 3, 3, 2)) * 3 + 1
  v = bn.init(KEY, x, train=False)

  def step(xs, module=bn):
    return module.apply(v, xs, train=True, mutable=["batch_stats"])

  y_global, mut_global = step(x, layers.BatchNorm())
  y_split, mut_split = jax.vmap(step, axis_name="devices")(x.reshape(2, 2, 3, 3, 2))
  np.testing.assert_allclose(np.asarray(y_split).reshape(x.shape), np.asarray(y_global), atol=1e-5)
  for name in ("mean", "var"):
    np.testing.assert_allclose(np.asarray(mut_split["batch_stats"][name][1]),
                               np.asarray(mut_global["batch_stats"][name]), rtol=1e-5)
  y_local, _ = jax.vmap(lambda xs: layers.BatchNorm().apply(v, xs, train=True, mutable=["batch_stats"]))(
      x.reshape(2, 2, 3, 3, 2))
  assert not np.allclose(np.asarray(y_local).reshape(x.shape), np.asarray(y_global), atol=1e-3)


def test_instance_norm_per_image_per_channel():
  x = np.random.default_rng(0).normal(size=(3, 6, 5, 4)).astype(np.float32) * np.arange(1, 5) + np.arange(4)
  x[1] *= 10.0
  y = np.asarray(layers.InstanceNorm().apply({}, jnp.asarray(x)))
  expected = (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(y, expected, atol=1e-4)
  np.testing.assert_allclose(y.mean((1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var((1, 2)), 1.0, atol=1e-3)
  assert layers.InstanceNorm().init(KEY, jnp.asarray(x)) == {}     # no affine params, no running stats


def test_batchnorm_train_false_uses_running_stats_in_network():
  g = models.define_G(3, 3, 4, "unet_32", norm="batch")
  x = rand((2, 32, 32, 3))
  v = np_init(g, x)
  y0 = run(g, v, x, train=False)
  _, stats = run(g, v, x, train=True)
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), v["batch_stats"], stats)
  assert all(jax.tree_util.tree_leaves(changed))                   # every running stat moved
  y1 = run(g, {"params": v["params"], "batch_stats": stats}, x, train=False)
  assert not np.allclose(np.asarray(y0), np.asarray(y1))


# ----------------------------------------------------------------------------- dropout

def test_unet_dropout_placement():
  """Dropout only in the num_downs - 5 intermediate ngf*8 levels (levels 4 .. num_downs-2)."""
  seen = []

  def spy(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout):
      seen.append(context.module.scope.path)
    return next_fun(*args, **kwargs)

  g = models.define_G(3, 3, 2, "unet_128", use_dropout=True)
  with nn.intercept_methods(spy):
    abstract_init(g, (1, 128, 128, 3))
  levels = sorted(max(int(p.split("_")[1]) for p in path if p.startswith("level_")) for path in seen)
  assert levels == [4, 5]


@pytest.mark.parametrize("netG,size", [("unet_64", 64), ("resnet_1blocks", 8)])
def test_dropout_train_vs_eval(netG, size):
  g = models.define_G(3, 3, 4, netG, norm="instance", use_dropout=True)
  x = rand((1, size, size, 3))
  v = np_init(g, x)
  a, b, a2 = (run(g, v, x, train=True, rng=key(k))[0] for k in (10, 11, 10))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))
  e1, e2 = run(g, v, x, train=False), run(g, v, x, train=False)
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
  no_drop = models.define_G(3, 3, 4, netG, norm="instance", use_dropout=False)
  np.testing.assert_allclose(np.asarray(e1), np.asarray(run(no_drop, v, x, train=False)), atol=1e-6)


# ----------------------------------------------------------------------------- remat and dtype

@pytest.mark.parametrize("netG,size,dropout", [("unet_32", 32, False), ("resnet_1blocks", 8, True)])
def test_remat_same_outputs_and_gradients(netG, size, dropout):
  x = rand((2, size, size, 3))
  nets = [models.define_G(3, 3, 4, netG, norm="batch", use_dropout=dropout, remat=r) for r in (False, True)]
  v = np_init(nets[0], x)
  assert jax.tree_util.tree_structure(v) == jax.tree_util.tree_structure(abstract_init(nets[1], x.shape))

  def loss(params, g):
    y, mut = g.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                     mutable=["batch_stats"], rngs={"dropout": KEY})
    return jnp.mean(jnp.square(y - 0.5)), (y, mut)

  step = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
  (_, (y0, s0)), g0 = step(v["params"], nets[0])
  (_, (y1, s1)), g1 = step(v["params"], nets[1])
  np.testing.assert_allclose(np.asarray(y0), np.asarray(y1), atol=1e-6)
  close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-7)
  jax.tree_util.tree_map(lambda a, b: close(np.asarray(a), np.asarray(b)), s0, s1)
  jax.tree_util.tree_map(lambda a, b: close(np.asarray(a), np.asarray(b)), g0, g1)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree_util.tree_leaves(g0))   # gradients reach every param


@pytest.mark.parametrize("kind", ["unet_32", "resnet_1blocks", "basic"])
def test_bfloat16_close_to_float32_params_float32(kind):
  size = 32 if kind in ("unet_32", "basic") else 8
  x = rand((2, size, size, 3))
  if kind in ("basic", "pixel"):
    m32, m16 = (models.define_D(3, 8, kind, norm="batch", dtype=dt) for dt in (jnp.float32, jnp.bfloat16))
  else:
    m32, m16 = (models.define_G(3, 3, 8, kind, norm="batch", dtype=dt) for dt in (jnp.float32, jnp.bfloat16))
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(abstract_init(m16, x.shape)))
  v = np_init(m32, x)
  y32, _ = run(m32, v, x, train=True)
  y16, s16 = run(m16, v, x, train=True)
  assert y16.dtype == jnp.float32
  assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(s16))
  scale = float(jnp.std(y32)) + 1e-6
  err = jnp.abs(y16 - y32)
  assert float(jnp.max(err)) < 0.1 * scale + 0.02 and float(jnp.mean(err)) < 0.02 * scale + 0.005
  assert float(jnp.max(err)) > 0                                  # really computed in bfloat16


# ----------------------------------------------------------------------------- fast_ops switch

def test_layer_forms_are_an_explicit_field_of_the_networks():
  # The forms are a value of the network (default: the CPU forms that won everywhere), read back from
  # its string; on a CPU target the hook follows it, other platforms always get the plain math.
  default = models.define_G(3, 3, 8, "resnet_1blocks", norm="instance")
  assert default.forms == models.forms.DEFAULT and layers.cpu_form(default.forms, "conv")
  plain = models.define_G(3, 3, 8, "resnet_1blocks", forms="plain")
  assert plain.forms == models.forms.PLAIN and not layers.cpu_form(plain.forms, "pad")
  forms = models.LayerForms.parse("pad=plain;conv_wgrad@66x66x256:3x3>256:s1p0=fast")
  assert not forms.use_fast("pad") and forms.use_fast("conv") and not forms.use_fast("conv_wgrad")
  assert forms.use_fast("conv_wgrad", "66x66x256:3x3>256:s1p0")
  assert models.LayerForms.parse(forms.spec()) == forms and hash(forms) == hash(models.LayerForms.parse(forms.spec()))
  with pytest.raises(ValueError, match="layer_forms"):
    models.LayerForms.parse("conv=quick")


@pytest.mark.parametrize("kind,norm,size", [
    ("resnet_2blocks", "instance", 16),   # reflection pads, 7x7 stem/head, stride-2 and transposed 3x3
    ("unet_32", "batch", 32),             # 4x4 stride-2 convs and transposed convs down to 1x1
    ("basic", "batch", 32),               # PatchGAN: strided and stride-1 padded 4x4 convs, 512 -> 1
    ("pixel", "none", 16),                # 1x1 convs
])
def test_fast_and_plain_layers_give_the_same_network(kind, norm, size):
  """The plain forms (used on GPU/TPU) and fast_ops (CPU) are the same network: outputs,
  BatchNorm statistics and gradients of every parameter and of the input agree."""
  if kind in ("basic", "pixel"):
    module = models.define_D(3, 16, kind, norm=norm)
  else:
    module = models.define_G(3, 3, 16, kind, norm=norm)
  x = rand((2, size, size, 3), seed=3)
  v = np_init(module, x, seed=4)

  def loss(params, x):
    y, stats = run(module, {**v, "params": params}, x, train=True)
    return jnp.sum(jnp.sin(3.0 * y)), (y, stats)

  results = {}
  base = module
  for fast in (True, False):
    module = base.clone(forms=models.LayerForms.parse("fast" if fast else "plain"))   # fast: taps too
    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    results[fast] = grad(v["params"], x)
  (gp_f, gx_f), (y_f, s_f) = results[True]
  (gp_p, gx_p), (y_p, s_p) = results[False]
  np.testing.assert_allclose(y_f, y_p, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gx_f, gx_p, rtol=1e-4, atol=1e-5)
  for name, (a, b) in {k: (flat(s_f)[k], flat(s_p)[k]) for k in flat(s_p)}.items():
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
  gf, gp = flat(gp_f), flat(gp_p)
  assert gf.keys() == gp.keys()
  # One scale for the whole tree: conv biases in front of instance norm have a true
  # gradient of zero, so their per-leaf values are rounding noise of either form.
  scale = max(float(jnp.max(jnp.abs(g))) for g in gp.values())
  assert scale > 0
  for name in gp:
    np.testing.assert_allclose(gf[name] / scale, gp[name] / scale, rtol=0, atol=1e-5, err_msg=name)
