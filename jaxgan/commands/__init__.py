"""The ``jaxgan`` sub-commands, one module each (see :mod:`jaxgan.commands.base` for the contract).

Only this package and :mod:`jaxgan.cli` parse command lines; the library
modules they call (``train``, ``inference``, ``data``, ``interop``, ``fid``)
never import from here.
"""
from __future__ import annotations

from jaxgan.commands import evaluate, export, fid, import_torch, prepare, pretrained, train, translate
from jaxgan.commands.base import UsageError

# In the order ``jaxgan --help`` lists them.
COMMANDS = (train, translate, evaluate, fid, prepare, import_torch, pretrained, export)

__all__ = ["COMMANDS", "UsageError"]
