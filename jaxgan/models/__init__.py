"""Flax Linen networks of pix2pix/CycleGAN: ``define_G``, ``define_D`` and their building blocks.

Pure modules, no I/O. See ``generators.py`` / ``discriminators.py`` for the
parameter-tree naming and ``layers.py`` for the layer kinds (convs, transposed
conv kernel layout, norms, initialisation). ``forms.py`` is the one seam for
XLA:CPU: the networks' ``forms`` field picks the equal-math CPU forms of
``jaxgan.cpu.fast_ops`` per layer family (plain math on every other platform).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxgan.models import forms
from jaxgan.models.discriminators import (DISCRIMINATORS, NLayerDiscriminator, PixelDiscriminator,
                                          define_D)
from jaxgan.models.generators import (ResnetBlock, ResnetGenerator, UnetDown, UnetGenerator,
                                      UnetSkipConnectionBlock, UnetUp, define_G, generator_stride,
                                      parse_netG)
from jaxgan.models.forms import LayerForms
from jaxgan.models.layers import (INIT_TYPES, NORMS, BatchNorm, Conv2d, ConvTranspose2d, Identity,
                                  InstanceNorm, reflection_pad)


def count_params(params: Any) -> int:
  """Total number of scalars in a parameter pytree (arrays or ShapeDtypeStructs)."""
  return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params)))


__all__ = [
    "define_G", "define_D", "count_params", "generator_stride", "parse_netG",
    "ResnetGenerator", "ResnetBlock", "UnetGenerator", "UnetSkipConnectionBlock", "UnetDown", "UnetUp",
    "NLayerDiscriminator", "PixelDiscriminator",
    "Conv2d", "ConvTranspose2d", "BatchNorm", "InstanceNorm", "Identity", "reflection_pad",
    "INIT_TYPES", "NORMS", "DISCRIMINATORS", "forms", "LayerForms",
]
