"""jaxgan: pix2pix and CycleGAN in JAX/Flax.

Public API: ``jaxgan.models`` (define_G / define_D), ``jaxgan.losses``,
``jaxgan.pool``, ``jaxgan.pix2pix`` and ``jaxgan.cyclegan`` (init / train_step /
translate), ``jaxgan.parallel`` (data-parallel steps).
"""
__version__ = "0.1.0"
