"""jaxgan's data layer: demo / folder / TFDS sources, the reference preprocessing, one Grain pipeline.

Public API:

- :func:`create_pipeline` (config, split, ...) -> :class:`Pipeline` with
  ``num_examples``, ``steps_per_epoch``, ``paired``, ``dtypes`` and
  ``iterator()``, a checkpointable Grain iterator of batches ``{"A":
  [N,H,W,input_nc], "B": [N,H,W,output_nc]}`` of uint8 / uint16 pixels (the
  data's bit depth; float sources: float32 in [-1, 1]). The train steps take
  them as they are (made [-1, 1] on the device); for host floats use
  :func:`jaxgan.images.batch_to_float`.
- :func:`load_image` / :func:`save_image` and :data:`IMAGE_EXTENSIONS`.
- :class:`DataError`: every bad-input error (a ``ValueError``).

``config.dataset`` selects the source: ``demo:facades`` / ``demo:seasons``
(generated offline, :mod:`jaxgan.data.demo`), ``folder:<path>``
(:mod:`jaxgan.data.folder`), ``tfds:<name>[/<config>]``
(:mod:`jaxgan.data.tfds_source`). Each of those backends registers its opener
with :mod:`jaxgan.data.sources` when imported; this package imports them all.
"""
from jaxgan.data.image_io import IMAGE_EXTENSIONS, DataError, load_image, read_image, save_image
from jaxgan.data.pipeline import Pipeline, PipelineIterator, create_pipeline
from jaxgan.data.preprocess import PREPROCESS_MODES, generator_stride
from jaxgan.data import demo, folder, tfds_source  # noqa: F401  (the backends register with sources.open_split)

__all__ = [
    "create_pipeline", "Pipeline", "PipelineIterator", "load_image", "save_image", "read_image",
    "IMAGE_EXTENSIONS", "DataError", "PREPROCESS_MODES", "generator_stride",
]
