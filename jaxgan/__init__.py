"""jaxgan: pix2pix and CycleGAN in JAX/Flax.

Public API: ``jaxgan.models`` (define_G / define_D), ``jaxgan.losses``,
``jaxgan.pool``, the objectives of the registry ``jaxgan.objectives``
(``jaxgan.pix2pix``, ``jaxgan.cyclegan``, ...: init / train_step / translate;
each registered one is imported here, so ``jaxgan.<name>`` works for all),
``jaxgan.parallel`` (data-parallel steps), ``jaxgan.config`` (the reference
hyper-parameters). I/O lives in ``jaxgan.data``,
``jaxgan.checkpoint``, ``jaxgan.train`` and ``jaxgan.cli``, process settings in
``jaxgan.cpu.host`` (imported on demand).
"""
__version__ = "0.1.0"

from jaxgan import config, losses, models, pool  # noqa: E402,F401
from jaxgan import objectives, parallel  # noqa: E402,F401

for _name in objectives.NAMES:   # jaxgan.pix2pix, jaxgan.cyclegan, ...: every registered objective
  objectives.get(_name)
del _name
