"""The modes of ``scripts/benchmark.py``, one module each, and the helpers they share (:mod:`bench.common`).

Imported with ``scripts/`` on ``sys.path`` (``scripts/benchmark.py`` puts it there).
"""
