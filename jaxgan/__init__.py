"""jaxgan: pix2pix and CycleGAN in JAX/Flax.

Public API: ``jaxgan.models`` (define_G / define_D), ``jaxgan.losses``,
``jaxgan.pool``, ``jaxgan.pix2pix`` and ``jaxgan.cyclegan`` (init / train_step /
translate), ``jaxgan.parallel`` (data-parallel steps), ``jaxgan.config``
(the reference hyper-parameters). I/O lives in ``jaxgan.data``,
``jaxgan.checkpoint``, ``jaxgan.train`` and ``jaxgan.cli``, process settings in
``jaxgan.host`` (imported on demand).
"""
__version__ = "0.1.0"

from jaxgan import config, losses, models, pool  # noqa: E402,F401
from jaxgan import cyclegan, parallel, pix2pix  # noqa: E402,F401
