"""The ``jaxgan`` sub-commands, one module each: ``NAME``, ``HELP``, ``add_parser(subparsers)``, ``run(args) -> int``.

Only this package and :mod:`jaxgan.cli` parse command lines; the library modules
they call never import from here.
"""
from __future__ import annotations

from jaxgan.commands import import_torch, pretrained

# In the order ``jaxgan --help`` lists them (after train, translate, evaluate).
COMMANDS = (import_torch, pretrained)

__all__ = ["COMMANDS"]
