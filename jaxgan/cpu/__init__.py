"""Everything jaxgan does only for XLA:CPU hosts, in one place; none of it runs on a GPU or TPU.

Each module says what it buys and on which processors:

* :mod:`jaxgan.cpu.fast_ops` -- equal-math forms of the convolutions, transposed convolutions,
  reflection pads and instance norm that XLA:CPU compiles slowly (1.1-2x per step on the 2-core AVX2 and
  AVX-512 EPYCs and the Sapphire Rapids Xeon measured in docs/benchmarks.md). The networks reach them
  through one seam: their ``forms`` field (:class:`jaxgan.models.forms.LayerForms`), threaded from the
  config's ``layer_forms``; with the plain forms (GPU/TPU, ONNX export) the networks are the reference math.
* :mod:`jaxgan.cpu.calibration` -- which of those forms win on this processor, measured once per processor,
  JAX version and layer shape, cached on disk; train decides a run's forms once and records them in the
  workdir, so resume, translate and evaluate use the same program whatever machine they meet.
* :mod:`jaxgan.cpu.host` -- process settings for a CPU host (malloc reuse of freed memory, XLA's copy
  insertion flag), applied by the ``jaxgan`` program before JAX starts; and the guard that frees compiled
  programs before XLA:CPU's code mappings reach the kernel's limit (any backend; it matters on CPU).
* :mod:`jaxgan.cpu.aot_cache` -- compiled steps saved whole, so a restart on a small CPU host skips tracing.

Nothing here is imported by ``import jaxgan``'s pure modules except ``fast_ops`` (through the layers' seam).
"""
