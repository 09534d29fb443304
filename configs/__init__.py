"""jaxgan's recipes, one per file, each with ``get_config([ARG])`` -> ConfigDict.

This folder is installed as the package ``jaxgan.configs`` (setup.py maps it),
so ``jaxgan train --config NAME`` finds a recipe by its file name from any
folder, in an editable install or not; a path to a recipe file works as well.
"""
