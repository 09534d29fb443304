"""What every ``jaxgan`` command shares: the usage error and the command contract.

A command is a module of this package with ``NAME`` (the sub-command word),
``HELP`` (one line for ``jaxgan --help``), ``add_parser(subparsers)`` (adds its
argparse sub-parser) and ``run(args) -> int`` (the exit status). Commands that
take ``--config.KEY=VALUE`` overrides set ``TAKES_CONFIG_OVERRIDES = True`` and
receive them as ``args.config_overrides``. (The layer forms are not the CLI's
business: ``train`` decides them per layer shape of its step, after any job join,
and ``translate`` / ``evaluate`` read them from the workdir.) A command may define
``join(args)``, which the CLI calls before anything starts JAX's backend (``train``
joins a multi-process job there), and ``SAVES_ON_SIGNAL = True`` to keep the
SIGTERM/SIGINT handlers the CLI installs on its first line (else the defaults
are restored once the command line is read).
"""
from __future__ import annotations


class UsageError(Exception):
  """A bad command line or config value (exit status 2)."""
